"""The work of one test: gradients, activations and CAVs fetched from the store, in units others can share.

A test needs the inputs' gradients at each layer, and per layer the CAVs of
the concept against each random set and of the random sets against each
other; the activations of the sets are needed only for the CAVs not yet in
the store.  That work is cut into units, each one store request under its
own locks: the gradients, one set's activations (all layers from one pass),
and groups of CAVs (a tile of random pairs, or the concept against a tile of
random sets).  :func:`~pytest_tcav.engine.schedule.run_units` runs them so
that pytest-xdist workers sharing random sets split the units between them
instead of waiting on each other's locks.

Memory does not grow with the number of random sets beyond one group: the
activations are not held by the test (the store keeps them within its bound,
the disk cache holds the rest), CAVs are trained from activations loaded a
tile at a time (:mod:`.block_gram`), and a group's random CAVs are reduced to
their scores against the gradients as soon as they are fetched.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from pytest_tcav.engine.activations import Target, concept_activations, model_device, target_gradients
from pytest_tcav.engine.cav import CAV
from pytest_tcav.engine.examples import Concept
from pytest_tcav.engine.fingerprints import make_key, pair_seed, target_key, target_shared, value_key
from pytest_tcav.engine.freed_memory import free_heap_bytes, release_freed_memory
from pytest_tcav.engine.preconditions import check_gradient_width, check_widths, running_on
from pytest_tcav.engine.schedule import run_units
from pytest_tcav.engine.statistics import pair_scores_each

#: A pair's canonical (first, second) sets, whether that flips the pair asked for, and the CAV's key.
CAVKey = tuple[int, int, bool, str]

#: Activations held at once while a group of CAVs is trained (two tiles of sets).
TRAINING_BUDGET = 256 * 2**20
#: Random sets per tile of a CAV group (at most this squared random pairs' CAVs held at once: 100 MB at a
#: layer of 100,000 features). Sizing groups by the layer's width instead (128 MB of CAV weights) ran no
#: faster on the ResNet-18 grid of benchmarks/sweep.py and, its weights built in two halves, peaked 470 MiB
#: higher at 50 x 50 images (3371 against 2903 MiB).
MAX_TILE_SETS = 16
#: Free heap bytes above which memory is given back between two sets' forward passes (see :class:`_PassTrims`).
BETWEEN_PASSES_TRIM_ABOVE = 256 * 2**20


class _PassTrims:
    """After each forward pass of a check: give freed memory back only when it piles up.

    The heap's free blocks after a pass are the next pass's working memory: trimming them makes the
    next pass fault every page in again, which slowed its convolutions and batch norms (trimming the
    0.4-0.7 GB a GoogLeNet pass at 224 px frees, after each of a 10 x 20 check's passes, cost 1.5 s of
    its 8 s; on a ResNet-18 at 224 px, 1 s of a 20 x 30 check).  So a trim between passes runs only when
    the free blocks exceed both ``BETWEEN_PASSES_TRIM_ABOVE`` and twice what the first pass left free
    (one pass's working memory, measured); the CAVs' memory is given back before they are trained.
    """

    def __init__(self) -> None:
        self._working: int | None = None

    def __call__(self) -> None:
        free = free_heap_bytes()
        if free is None:  # not glibc, or no mallinfo2: the plain bound
            release_freed_memory(above=BETWEEN_PASSES_TRIM_ABOVE)
            return
        if self._working is None:
            self._working = free
        release_freed_memory(above=max(BETWEEN_PASSES_TRIM_ABOVE, 2 * self._working))


@dataclass
class LayerData:
    """What the statistics need of one layer: the concept's CAVs and the random pairs' scores.

    ``pairwise[i, j]`` is the mean cosine of random set i's CAV against set j
    (antisymmetric), ``pair_signs[i, j]`` its share of positive products,
    ``accuracy[i, j]`` the CAV's held-out accuracy (symmetric).
    """

    gradients: torch.Tensor
    concept_cavs: list[CAV]
    pairwise: np.ndarray
    pair_signs: np.ndarray
    accuracy: np.ndarray
    n_random_cavs: int = 0


def settings(engine: Any) -> dict[str, Any]:
    """What every activation, gradient and CAV depends on besides model, layer and data.

    Settings at their defaults stay out of the key, so values computed
    before these settings existed are found again.
    """
    out: dict[str, Any] = {"point": engine.layer_point}
    if engine.pooling != "flatten":
        out["pooling"] = engine.pooling
    if engine.layer_call is not None:
        out["call"] = engine.layer_call
    if engine.forward_kwargs:
        out["forward_kwargs"] = value_key(engine.forward_kwargs)[0]
    return out


def persist(engine: Any) -> bool:
    """Whether values may go to the disk cache: settings keyed by identity mean nothing elsewhere."""
    return value_key(engine.forward_kwargs)[1]


def activation_key(engine: Any, model_fp: str, layer: str, s: Concept) -> str:
    return make_key("activations", {"model": model_fp, "layer": layer, "set": s.fingerprint, **settings(engine)})


def fetch_activations(engine: Any, model_fp: str, modules: dict[str, nn.Module], s: Concept,
                      layers: list[str], *, wait: bool = True) -> dict[str, torch.Tensor]:
    """One set's activations at ``layers``; the missing ones come from one pass that stops after the deepest.

    The layers are fetched together, so concurrent workers lock them together
    and never run the same set's pass twice.
    """
    keys = {name: activation_key(engine, model_fp, name, s) for name in layers}

    def compute_missing(todo: list[str]) -> dict[str, dict[str, torch.Tensor]]:
        wanted = set(todo)
        missing = {name: modules[name] for name in layers if keys[name] in wanted}
        with running_on(engine.model, s):
            acts = concept_activations(engine.model, missing, s.examples, point=engine.layer_point,
                                       batch_size=engine.batch_size, device=engine.device or model_device(engine.model),
                                       pooling=engine.pooling, forward_kwargs=engine.forward_kwargs,
                                       call=engine.layer_call)
        return {keys[name]: {"activations": acts[name]} for name in missing}

    values = engine.store.fetch_many("activations", list(keys.values()), compute_missing, persist=persist(engine),
                                     wait=wait)
    return {name: values[keys[name]]["activations"] for name in layers}


def activations(engine: Any, model_fp: str, modules: dict[str, nn.Module],
                sets: list[Concept]) -> dict[str, list[torch.Tensor]]:
    """Activations of every set at every layer, all held (for relative TCAV's pooled relabelings)."""
    out: dict[str, list[torch.Tensor]] = {name: [] for name in modules}
    for s in sets:
        for name, value in fetch_activations(engine, model_fp, modules, s, list(modules)).items():
            out[name].append(value)
    for name in modules:
        check_widths(name, out[name], sets, engine.pooling)
    return out


def gradients(engine: Any, model_fp: str, modules: dict[str, nn.Module], inputs: Concept, target: Target, *,
              wait: bool = True) -> dict[str, torch.Tensor]:
    """The inputs' target gradients at every layer, from one forward/backward for the missing ones."""
    grad_settings = {"method": engine.method, "n_steps": engine.n_steps if engine.method != "gradient" else None,
                     **settings(engine)}
    if engine.output is not None:
        grad_settings["output"] = value_key(engine.output)[0]
    keys = {
        name: make_key("gradients", {"model": model_fp, "layer": name, "inputs": inputs.fingerprint,
                                     "target": target_key(target), **grad_settings})
        for name in modules
    }

    def compute_missing(todo: list[str]) -> dict[str, dict[str, torch.Tensor]]:
        wanted = set(todo)
        missing = {name: module for name, module in modules.items() if keys[name] in wanted}
        with running_on(engine.model, inputs):
            grads = target_gradients(engine.model, missing, inputs.examples, target, method=engine.method,
                                     n_steps=engine.n_steps, point=engine.layer_point,
                                     batch_size=engine.batch_size, device=engine.device or model_device(engine.model),
                                     pooling=engine.pooling, forward_kwargs=engine.forward_kwargs,
                                     output=engine.output, call=engine.layer_call)
        return {keys[name]: {"gradients": grads[name]} for name in missing}

    # A callable target is keyed by identity, which means nothing in another process: its gradients stay in memory
    # (a next_token target is keyed by its content: target_shared).
    values = engine.store.fetch_many("gradients", list(keys.values()), compute_missing,
                                     persist=target_shared(target) and persist(engine) and value_key(engine.output)[1],
                                     wait=wait)
    return {name: values[keys[name]]["gradients"] for name in modules}


def cav_key(engine: Any, model_fp: str, layer: str, sets: list[Concept], a: int, b: int,
            tile_fingerprints: dict[int, list[str]] | None = None) -> CAVKey:
    """A (positive, negative) pair's canonical order, whether it is flipped, and its key.

    Each CAV is stored in the canonical orientation of its two fingerprints,
    so (a, b) and (b, a) share one training and are exact opposites.  With
    ``tile_fingerprints`` (per set, the fingerprints of its tile's sets: the
    trainer's :meth:`~pytest_tcav.engine.cav.CAVTrainer.gram_tiles`) the key
    names the sets of the two sets' tiles, on which the CAV's last bits depend.
    """
    flip = sets[a].fingerprint > sets[b].fingerprint
    first, second = (b, a) if flip else (a, b)
    parts = {"model": model_fp, "layer": layer, "positive": sets[first].fingerprint,
             "negative": sets[second].fingerprint, "trainer": engine.trainer.settings(), "seed": engine.seed,
             **settings(engine)}
    if tile_fingerprints is not None:
        parts["tiles"] = [tile_fingerprints[first], tile_fingerprints[second]]
    return first, second, flip, make_key("cav", parts)


def cav_groups(n: int, shared: bool) -> list[list[tuple[int, int]]]:
    """The pairs of one layer (sets: 0 the concept, 1..n the random sets) in groups, the same in every worker.

    The concept's pairs are one group: no other worker tests this concept.
    The random pairs are cut by tiles of random sets (the pairs between two
    tiles, or within one): at most ``MAX_TILE_SETS`` squared pairs, so that a
    group's CAVs stay small in memory, and, when other processes may share
    the work (``shared``), at least six groups they can split.  Each group
    is one batched SGD, so alone the groups are as large as that allows.
    """
    size = max(1, min(MAX_TILE_SETS, math.ceil(n / 3) if shared else n))
    tiles = [list(range(1 + k, 1 + min(n, k + size))) for k in range(0, n, size)]
    groups = [[(0, j) for j in range(1, n + 1)]]
    for t, rows in enumerate(tiles):
        for cols in tiles[t:]:
            pairs = [(i, j) for i in rows for j in cols if i < j]
            if pairs:
                groups.append(pairs)
    return groups


def sharing_work() -> bool:
    """Whether other processes may compute the same values now: pytest-xdist workers (or a wish to share).

    ``TCAV_SHARED_WORK=1`` says so for other schedulers (several processes on one
    cache); it changes how work is grouped, never a number.
    """
    return bool(os.environ.get("PYTEST_XDIST_WORKER") or os.environ.get("TCAV_SHARED_WORK") == "1")


@dataclass
class TestWork:
    """One test's units of work and what they produce (see the module's docstring)."""

    engine: Any
    model_fp: str
    modules: dict[str, nn.Module]
    sets: list[Concept]  # the concept, then the random sets
    inputs: Concept
    target: Target
    grads: dict[str, torch.Tensor] = field(default_factory=dict)
    layers: dict[str, LayerData] = field(default_factory=dict)
    _widths: dict[str, dict[int, int]] = field(default_factory=dict)
    #: per layer: what the trainer keeps between the layer's groups (Gram blocks), and the groups still to run
    _blocks: dict[str, dict[Any, Any]] = field(default_factory=dict)
    _remaining: dict[str, int] = field(default_factory=dict)
    #: the trainer's tiles of sets (``CAVTrainer.gram_tiles``), named in the CAV keys
    _tiles: list[list[int]] | None = None
    #: activation bytes the current group's training loaded (what the trim after it may give back)
    _loaded_bytes: int = 0

    def run(self) -> dict[str, LayerData]:
        n = len(self.sets) - 1
        groups = cav_groups(n, sharing_work())
        self._tiles = self.engine.trainer.gram_tiles([len(s) for s in self.sets])
        tile_fps = None if self._tiles is None else {
            s: [self.sets[t].fingerprint for t in tile] for tile in self._tiles for s in tile}
        keys = {name: [[cav_key(self.engine, self.model_fp, name, self.sets, a, b, tile_fps) for a, b in group]
                       for group in groups] for name in self.modules}
        for name in self.modules:
            self._remaining[name] = len(groups)
            self.layers[name] = LayerData(torch.empty(0), [], np.zeros((n, n)), np.zeros((n, n)), np.zeros((n, n)))
            self.layers[name].concept_cavs = [None] * n  # type: ignore[list-item]  # filled by the groups
        run_units([self._gradients_unit, *self._activation_units(keys)], after=_PassTrims())
        release_freed_memory()
        run_units([self._group_unit(name, group) for name in self.modules for group in keys[name]],
                  after=self._release_loaded)
        return self.layers

    def _release_loaded(self) -> None:
        """After a group of CAVs: give back what its training loaded, when that was worth a look."""
        freed, self._loaded_bytes = self._loaded_bytes, 0
        release_freed_memory(freed=freed)

    # -- units ---------------------------------------------------------------------------

    def _gradients_unit(self, wait: bool) -> None:
        self.grads = gradients(self.engine, self.model_fp, self.modules, self.inputs, self.target, wait=wait)

    def _activation_units(self, keys: dict[str, list[list[CAVKey]]]) -> list[Callable[[bool], None]]:
        """A unit per set whose activations a missing CAV needs (none when the store has every CAV)."""
        store = self.engine.store
        needed: dict[int, list[str]] = {}
        for name, groups in keys.items():
            for group in groups:
                for first, second, _flip, key in group:
                    if store.exists("cav", key):
                        continue
                    for s in (first, second):
                        if name not in needed.setdefault(s, []) and not store.exists(
                                "activations", activation_key(self.engine, self.model_fp, name, self.sets[s])):
                            needed[s].append(name)

        def unit(s: int, layers: list[str]) -> Callable[[bool], None]:
            def fetch(wait: bool) -> None:
                fetch_activations(self.engine, self.model_fp, self.modules, self.sets[s], layers, wait=wait)
            return fetch

        return [unit(s, [n for n in self.modules if n in layers]) for s, layers in sorted(needed.items()) if layers]

    def _group_unit(self, name: str, group: list[CAVKey]) -> Callable[[bool], None]:
        def fetch(wait: bool) -> None:
            pair_of = {key: (first, second) for first, second, _flip, key in group}

            def train(todo: list[str]) -> dict[str, dict[str, torch.Tensor]]:
                return self._train(name, [pair_of[k] for k in todo], todo, wait)

            values = self.engine.store.fetch_many("cav", list(pair_of), train, persist=persist(self.engine),
                                                  wait=wait)
            cavs = [CAV(values[key]["weights"], float(values[key]["intercept"]), float(values[key]["accuracy"]))
                    for *_, key in group]
            self._record(name, group, cavs)
            self._remaining[name] -= 1
            if not self._remaining[name]:
                self._blocks.pop(name, None)  # the layer is done
        return fetch

    # -- training and scores ----------------------------------------------------------------

    def _train(self, name: str, pairs: list[tuple[int, int]], keys: list[str],
               wait: bool) -> dict[str, dict[str, torch.Tensor]]:
        def load(a: int) -> torch.Tensor:
            acts = fetch_activations(self.engine, self.model_fp, self.modules, self.sets[a], [name], wait=wait)[name]
            self._check_width(name, a, int(acts.shape[1]))
            self._loaded_bytes += acts.nbytes
            return acts

        seeds = [pair_seed(self.engine.seed, self.sets[f].fingerprint, self.sets[s].fingerprint) for f, s in pairs]
        tiled = {} if self._tiles is None else {"gram_tiles_of": self._tiles}
        cavs = self.engine.trainer.train_sets(load, [len(s) for s in self.sets], pairs, seeds,
                                              budget_bytes=TRAINING_BUDGET, blocks=self._blocks.setdefault(name, {}),
                                              **tiled)
        return {key: {"weights": cav.weights, "intercept": torch.tensor(cav.intercept, dtype=torch.float64),
                      "accuracy": torch.tensor(cav.accuracy, dtype=torch.float64)}
                for key, cav in zip(keys, cavs)}

    def _check_width(self, name: str, a: int, width: int) -> None:
        """One feature width per layer across sets (the first set seen is the reference)."""
        seen = self._widths.setdefault(name, {})
        seen.setdefault(a, width)
        ref = 0 if 0 in seen else next(iter(seen))
        if seen[ref] != width:
            check_widths(name, [torch.empty(0, seen[ref]), torch.empty(0, width)], [self.sets[ref], self.sets[a]],
                         self.engine.pooling)

    def _record(self, name: str, group: list[CAVKey], cavs: list[CAV]) -> None:
        """Keep the concept's CAVs; reduce random pairs' CAVs to their scores at once.

        ``cavs`` are in their stored (canonical) orientation.  The concept's
        are turned to point towards the concept; a random pair's is scored as
        stored and its scores are entered for both orders: the opposite CAV's
        scores are these negated (cosines) or swapped (signs), bit for bit,
        without negating a layer-wide vector per CAV.
        """
        layer = self.layers[name]
        grads = self.grads[name]
        check_gradient_width(name, grads, int(cavs[0].weights.shape[0]), self.engine.pooling)
        layer.gradients = grads
        randoms: list[tuple[int, int, CAV]] = []
        for (first, second, flip, _key), cav in zip(group, cavs):
            if first == 0 or second == 0:
                layer.concept_cavs[max(first, second) - 1] = cav.flipped() if flip else cav
            else:
                randoms.append((first - 1, second - 1, cav))
        if not randoms:
            return
        scores = pair_scores_each(grads, [cav.weights for *_, cav in randoms])
        backward = scores.negative_count
        assert backward is not None  # pair_scores_each always counts them
        for k, (i, j, cav) in enumerate(randoms):
            layer.pairwise[i, j] = scores.cosine[k]
            layer.pairwise[j, i] = -scores.cosine[k]
            layer.pair_signs[i, j] = scores.sign_count[k]
            layer.pair_signs[j, i] = backward[k]
            layer.accuracy[i, j] = layer.accuracy[j, i] = cav.accuracy
        layer.n_random_cavs += len(randoms)
