"""The object behind the ``tcav`` fixture: settings, libraries, one shared cache, a record.

A session turns what a test names (a concept by name, a target by class name,
inputs left out) into data, runs the engine on it, and remembers every check
for the terminal summary.  All tests of a run share one :class:`MemoryStore`,
so a concept, a set of random counterparts, a model and its layers are
computed once however many tests use them: the store keys on content
fingerprints, so sharing is safe even when tests build their models separately.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pytest_tcav.config import TCAVConfig
from pytest_tcav.engine.activations import Target, concept_activations, model_device
from pytest_tcav.engine.batches import take
from pytest_tcav.engine.conditional_null import (
    PseudoNull,
    example_keys,
    layers_from_results,
    resolve_null_test,
)
from pytest_tcav.engine.examples import Concept, ConceptLike, as_concept, sample_random_sets
from pytest_tcav.engine.fingerprints import model_fingerprint
from pytest_tcav.engine.layers import LayerPoint
from pytest_tcav.engine.outputs import Output
from pytest_tcav.engine.relative import against_list
from pytest_tcav.engine.results import TCAVResult
from pytest_tcav.engine.spec import (
    CheckData,
    CheckSpec,
    EngineKnobs,
    TargetLike,
    member_request,
    settle,
    settle_knobs,
    settled,
)
from pytest_tcav.engine.statistics import required_random_sets
from pytest_tcav.engine.tcav import TCAV
from pytest_tcav.engine.text_examples import Tokenizer, is_text_list, is_text_path, text_concept
from pytest_tcav.errors import ConceptDataError, ConfigurationError, TargetError, without_library_frames
from pytest_tcav.session.lazy import LazyCallable
from pytest_tcav.session.library import ConceptLibrary, InputLibrary, is_plain_name
from pytest_tcav.session.pseudo_null import (
    NullIdentity,
    draws,
    identity_settings,
    library_fingerprint,
    merged,
    now,
    pseudo_concepts,
    spare_data,
)
from pytest_tcav.session.pseudo_null import load as load_pseudo_null
from pytest_tcav.session.pseudo_null import save as save_pseudo_null
from pytest_tcav.session.torch_threads import apply_threads
from pytest_tcav.storage.memory import MemoryStore


class TCAVSession:
    """Configured engine factory, concept and input libraries, and the run's shared cache.

    Usually obtained through the session-scoped ``tcav`` fixture; outside pytest
    ``TCAVSession()`` gives one with default settings.
    """

    def __init__(self, config: TCAVConfig | None = None, *, store: MemoryStore | None = None,
                 nodeid: Callable[[], str | None] = lambda: None,
                 test_path: Callable[[], Path | None] = lambda: None) -> None:
        self.config = apply_threads(config if config is not None else TCAVConfig())  # torch's, before any work
        #: Shared by every engine of the session; by default backed by the disk cache of ``tcav_cache_dir``
        #: (unless ``tcav_cache = off``, or outside pytest, where ``cache_dir`` is unset).
        self.store = store if store is not None else default_store(self.config)
        #: The run's concept checks (``pytest_tcav.checks.records.CheckRecord``: the session stores, not reads them).
        self.records: list[Any] = []
        self.loaded_models: dict[str, Any] = {}  # YAML tests' models by loader and arguments: each loaded once
        #: The baseline files the stability checks of this session used: path -> (test id, what was checked),
        #: so that a second check of one file in a run (two results, one file) is refused.
        self.baseline_uses: dict[str, tuple[str | None, str]] = {}
        self._nodeid = nodeid
        #: Pseudo-concepts' nulls measured or read in this session, by identity (session/pseudo_null.py).
        self._pseudo_nulls: dict[str, PseudoNull] = {}
        self._test_path = test_path  # the running test's file: baselines live next to it
        transform = LazyCallable(self.config.transform, self.config.load_transform) if self.config.transform else None
        self.transform = transform
        #: ``tcav_tokenizer``, imported on first use: what text becomes model inputs with when a call gives none.
        self.tokenizer: Tokenizer | None = (LazyCallable(self.config.tokenizer, self.config.load_tokenizer)
                                           if self.config.tokenizer else None)
        sources = self.config.sources
        self.concepts = ConceptLibrary(self.config.concepts, transform,
                                       origin=sources.get("tcav_concepts", "tcav_concepts"),
                                       on_bad_image=self.config.on_bad_image, tokenizer=self.tokenizer)
        self.inputs = InputLibrary(self.config.inputs, transform, classes=self.config.classes,
                                   origin=sources.get("tcav_inputs", "tcav_inputs"),
                                   on_bad_image=self.config.on_bad_image, tokenizer=self.tokenizer)

    # -- what model fixtures use -------------------------------------------------------

    @property
    def device(self) -> torch.device:
        """Where model fixtures should put the model: ``tcav_device``, else CUDA if present, else CPU."""
        if self.config.device is not None:
            return self._configured_device()
        return default_device()

    def _configured_device(self) -> torch.device:
        try:
            return torch.device(str(self.config.device))
        except (RuntimeError, ValueError) as exc:
            raise ConfigurationError(f"{self.config.source('tcav_device')}: {exc}") from None

    def engine(self, model: nn.Module, *, method: str | None = None, n_steps: int | None = None,
               seed: int | None = None, batch_size: int | None = None, layer_point: str | None = None,
               layer_call: int | None = None, pooling: str | None = None,
               forward_kwargs: Mapping[str, Any] | None = None, output: Output = None,
               tokenizer: Tokenizer | None = None) -> TCAV:
        """A :class:`TCAV` engine with the run's settings and cache (knobs override settings).

        ``layer_point``, ``layer_call`` and ``pooling`` default to ``tcav_layer_point``,
        ``tcav_layer_call`` and ``tcav_pooling``; ``forward_kwargs`` (fixed keyword arguments of every
        call of the model) and ``output`` (what a class index reads of a
        structured output) have no ini key: they are Python values.

        Engines are cheap; what is expensive lives in the shared store, so a new
        engine per call does not recompute anything and holds no model alive.
        """
        knobs = EngineKnobs(method=method, n_steps=n_steps, seed=seed, batch_size=batch_size,
                            layer_point=layer_point, layer_call=layer_call, pooling=pooling,
                            forward_kwargs=forward_kwargs, output=output, tokenizer=tokenizer)
        return self._engine(model, settle_knobs(knobs, self.config))

    def _engine(self, model: nn.Module, knobs: EngineKnobs) -> TCAV:
        """An engine with settled knobs, this session's device, cache, transform and tokenizer."""
        cfg = self.config
        device = None
        if cfg.device is not None:
            device = self._configured_device()
            actual = model_device(model)
            if actual.type != device.type or (device.index is not None and actual.index != device.index):
                raise ConfigurationError(
                    f"the model is on {actual} but {cfg.source('tcav_device')} asks for {device}; "
                    "put the model there in its fixture: model.to(tcav.device)"
                )
        _layer_point(settled(knobs.layer_point, "layer_point"))
        return TCAV.from_knobs(model, knobs, device=device, alpha=cfg.alpha,
                               correction=cfg.correction,  # type: ignore[arg-type]
                               transform=self.transform, store=self.store, tokenizer=self.tokenizer)

    # -- testing -----------------------------------------------------------------------

    def score(
        self,
        model: nn.Module,
        concept: ConceptLike,
        *,
        target: TargetLike,
        layers: Sequence[str] | str,
        inputs: ConceptLike | None = None,
        direction: str = "positive",
        alpha: float | None = None,
        random_sets: int | Sequence[ConceptLike] | None = None,
        random_pool: ConceptLike | None = None,
        method: str | None = None,
        n_steps: int | None = None,
        seed: int | None = None,
        batch_size: int | None = None,
        layer_point: str | None = None,
        layer_call: int | None = None,
        pooling: str | None = None,
        forward_kwargs: Mapping[str, Any] | None = None,
        output: Output = None,
        tokenizer: Tokenizer | None = None,
        against: ConceptLike | Sequence[ConceptLike] | None = None,
        margin: float | None = None,
        min_cav_accuracy: float | None = None,
        null: str | None = None,
    ) -> TCAVResult:
        """Test a concept and return the result, without asserting anything.

        ``concept`` may be a concept-library name; ``target`` a class name from
        ``tcav_classes``; ``inputs``, when left out, come from the input library.
        ``against`` (concept names or data, one or a list) makes it relative TCAV:
        ``random_sets`` (default ``tcav_random_sets``) is then its number of repetitions.
        Text (a list of strings, ``.txt`` files) goes through ``tokenizer``, else
        ``tcav_tokenizer``.  ``null="pseudo"`` (``tcav_null``) judges it against pseudo-concepts
        tested on the same random sets (measured once from the library's spare random data, stored).

        An error shows as an assertion's does: a mistake in the call (a
        :class:`~pytest_tcav.errors.TCAVError`) points at the caller's line, an
        exception from inside the model at the model's frames, without the
        library's frames between them.
        """
        __tracebackhide__ = True  # pytest: the caller's line is the last one shown
        spec = CheckSpec(
            concept=concept, target=target, layers=layers, inputs=inputs, direction=direction, against=against,
            margin=margin, random_sets=random_sets, random_pool=random_pool, alpha=alpha,
            min_cav_accuracy=min_cav_accuracy, null=null,
            engine=EngineKnobs(method=method, n_steps=n_steps, seed=seed, batch_size=batch_size,
                               layer_point=layer_point, layer_call=layer_call, pooling=pooling,
                               forward_kwargs=forward_kwargs,
                               output=output, tokenizer=tokenizer),
        )
        try:
            return self.measure(model, settle(spec, self.config))
        except Exception as exc:  # any: from the model too, shown as the checks show it
            raise without_library_frames(exc)  # noqa: B904  (the user's frames, not the engine's)

    def measure(self, model: nn.Module, spec: CheckSpec) -> TCAVResult:
        """Measure a settled request (:func:`~pytest_tcav.engine.spec.settle`): its names resolved to
        data here, then the engine; no verdict (the checks judge the result)."""
        engine = self._engine(model, spec.engine)
        tokenizer = spec.engine.tokenizer
        index = self.resolve_target(spec.target)
        others: list[ConceptLike] | None = None
        sets: int | list[ConceptLike]
        if spec.against is not None:
            others = [self.resolve_concept(value, tokenizer=tokenizer) for value in against_list(spec.against)]
            sets, pool = self._repetitions(spec.random_sets, spec.random_pool), None
        else:
            sets, pool = self.resolve_random_sets(spec.random_sets, spec.random_pool,
                                                  kind=self.concept_kind(spec.concept), tokenizer=tokenizer)
        concept = self.resolve_concept(spec.concept, tokenizer=tokenizer)
        with index_in_range(model, concept, index if spec.inputs is None else None, self.transform,
                            spec.engine.forward_kwargs):
            # a missing folder: is it the index?
            input_set = self.resolve_inputs(spec.inputs, spec.target, tokenizer=tokenizer)
        pseudo = None
        if spec.null == "pseudo" and spec.against is None:
            size = len(engine.example_set(concept, concept if isinstance(concept, str) else None))
            pseudo = self.pseudo_null(model, spec, size=size, count=self.pseudo_count(spec))
        result = engine.run(spec, CheckData(concept=concept, target=index, inputs=input_set, random_sets=sets,
                                            random_pool=pool, against=others, pseudo_null=pseudo))
        if isinstance(spec.target, str):
            # People named the class; failure messages and reports should too.
            result = dataclasses.replace(result, target=f"{spec.target} ({result.target})")
        return result

    def pseudo_null(self, model: nn.Module, spec: CheckSpec, *, size: int, count: int | None = None,
                    on_done: Callable[[int], None] | None = None) -> PseudoNull:
        """The pseudo-concepts' null of a settled request (``null="pseudo"``; :mod:`.pseudo_null`).

        Read from this session's memory or the disk cache when it was measured for the same target,
        settings, concept size, ``count`` (K, default ``tcav_pseudo_concepts``), random sets, model and
        inputs; else its missing layers are measured here (each pseudo-concept tested as the request's
        concept under the ``random`` null) and stored.  ``on_done(k)`` follows the pseudo-concepts measured.
        """
        if spec.against is not None:
            raise ConfigurationError("null='pseudo' judges a concept against pseudo-concepts tested on the random "
                                     "sets; a relative test (against=) has none: its null is its concepts' "
                                     "relabelings")
        if spec.random_pool is not None or not (spec.random_sets is None or isinstance(spec.random_sets, int)):
            raise ConfigurationError(
                "null='pseudo' draws its pseudo-concepts from the concept library's spare random data (what the "
                "random sets in use leave over); a check with its own random_sets=[...] or random_pool= has no "
                "such data: leave random_sets to a count (tcav_random_sets) and random_pool out (in a YAML "
                "file: remove random_sets: and random_pool:), or judge this check with null='random' (YAML "
                "null: random), or give the pseudo-concepts yourself: TCAV(...).test(..., pseudo_concepts=[...])")
        count = self.config.pseudo_concepts if count is None else count
        engine = self._engine(model, spec.engine)
        tokenizer = spec.engine.tokenizer
        kind = self.concept_kind(spec.concept)
        sets = self.random_set_concepts(size, spec.random_sets, spec.random_pool, kind=kind, tokenizer=tokenizer)
        target = self.resolve_target(spec.target)
        key = getattr(target, "key", None) if callable(target) else str(int(target))
        if not isinstance(key, str):
            raise ConfigurationError("null='pseudo' keeps its measurement per target: name a class index, a class "
                                     "name or pytest_tcav.next_token(...), not a plain callable")
        inputs = engine.example_set(self.resolve_inputs(spec.inputs, spec.target, tokenizer=tokenizer), "inputs",
                                    role="input")
        identity = NullIdentity(key, identity_settings(spec, len(sets)), size, count, library_fingerprint(sets),
                                model_fingerprint(model), inputs.fingerprint)
        cache_dir = self.config.cache_dir
        found = self._pseudo_nulls.get(identity.key())
        if found is None and cache_dir is not None and self.config.cache in ("read", "readwrite"):
            found = load_pseudo_null(cache_dir, identity)
        missing = [name for name in spec.layer_names if found is None or name not in found.layers]
        if missing:
            spare = spare_data(self.concepts, size, count, in_use=len(sets), seed=self.config.seed, kind=kind,
                               tokenizer=tokenizer)
            if spare.texts is not None:  # each tokenized on its own, as a text concept is
                members = [self._text([spare.texts[i] for i in pick], tokenizer, f"pseudo_{k}", "concept")
                           for k, pick in enumerate(draws(len(spare), count, size, self.config.seed))]
            else:
                assert spare.examples is not None
                members = pseudo_concepts(spare.examples, count, size, self.config.seed)
            results = []
            for k, member in enumerate(members):
                results.append(self.measure(model, member_request(spec, member, missing)))
                if on_done is not None:
                    on_done(k + 1)
            new = PseudoNull(layers_from_results(results), tuple(m.fingerprint for m in members), identity.key(),
                             now(), spare.source, member_digests=tuple(example_keys(m) for m in members))
            found = merged(found, new)
            if cache_dir is not None and self.config.cache in ("write", "readwrite"):
                save_pseudo_null(cache_dir, identity, found)
        assert found is not None
        self._pseudo_nulls[identity.key()] = found
        return found

    def pseudo_count(self, spec: CheckSpec) -> int:
        """K for a settled request: ``tcav_pseudo_concepts``, or more when its exact rank test needs more
        to reach alpha (``m / (K + 1) < alpha`` for ``m`` layers under Holm, twice for ``either``)."""
        test = resolve_null_test(spec.null_test, "pseudo")
        if test != "rank":
            return self.config.pseudo_concepts
        needed = required_random_sets(settled(spec.alpha, "alpha"), len(spec.layer_names),
                                      settled(spec.correction, "correction"),  # type: ignore[arg-type]
                                      test, settled(spec.direction, "direction"))  # type: ignore[arg-type]
        return max(self.config.pseudo_concepts, needed)

    def random_set_concepts(self, size: int, random_sets: int | Sequence[ConceptLike] | None = None,
                            random_pool: ConceptLike | None = None, *, kind: str | None = None,
                            tokenizer: Tokenizer | None = None) -> list[Concept]:
        """The random sets a concept of ``size`` examples (of ``kind``) is compared with, drawn as the engine
        draws them."""
        sets, pool = self.resolve_random_sets(random_sets, random_pool, kind=kind, tokenizer=tokenizer)
        if pool is not None:
            assert isinstance(sets, int)
            pool_set = as_concept(pool, name="random_pool", transform=self.transform, role="random pool")
            return sample_random_sets(pool_set, sets, size, self.config.seed)
        assert not isinstance(sets, int)
        return [as_concept(s, name=f"random[{k}]", transform=self.transform, role="random")
                for k, s in enumerate(sets)]

    def current_nodeid(self) -> str | None:
        """The id of the running test (None outside a test)."""
        return self._nodeid()

    def current_test_path(self) -> Path | None:
        """The file of the running test, Python or YAML (None outside a test)."""
        return self._test_path()

    def record(self, entry: Any) -> None:
        """Remember one concept check (a dataclass record) for the run's summary: its test id and order set here."""
        self.records.append(dataclasses.replace(entry, nodeid=self._nodeid(), seq=len(self.records)))

    # -- naming -> data ------------------------------------------------------------------

    def resolve_target(self, target: TargetLike) -> Target:
        if isinstance(target, bool):
            raise ConfigurationError(f"target must be a class index, a class name or a callable, got {target!r}")
        if isinstance(target, str):
            return self.config.class_index(target)
        return target

    def _missing_folder(self, role: str, path: Path) -> ConceptDataError:
        """A named folder that is not there: say where relative paths start, the usual surprise."""
        what = "file" if path.suffix.lower() == ".txt" else "folder"
        return ConceptDataError(f"{role} {what} {str(path)!r} does not exist; check the path (a relative "
                                f"path starts at the project root, {str(self.config.root)!r})")

    def _path(self, value: str | os.PathLike[str]) -> Path:
        path = Path(value)
        return path if path.is_absolute() else self.config.root / path

    def _text(self, texts: Sequence[str], tokenizer: Tokenizer | None, name: str, role: str) -> Concept:
        return text_concept(texts, tokenizer if tokenizer is not None else self.tokenizer, name=name, role=role)

    def concept_kind(self, concept: ConceptLike) -> str | None:
        """``"text"`` or ``"image"`` when the concept says which (a name, a path, strings); None for data.

        A library that holds both kinds compares a concept with random sets of its own kind.
        """
        if is_text_list(concept) or isinstance(concept, Concept) and concept.texts is not None:
            return "text"
        if isinstance(concept, str) and concept in self.concepts:
            return self.concepts.kind_of(concept)
        if isinstance(concept, (str, os.PathLike)):
            path = self._path(concept)
            if path.exists():
                return "text" if is_text_path(path) else "image"
        return None

    def resolve_concept(self, concept: ConceptLike, *, tokenizer: Tokenizer | None = None) -> ConceptLike:
        """A library name becomes its entry; a relative path is taken from the project root; strings are text."""
        if is_text_list(concept):
            return self._text(concept, tokenizer, "text", "concept")  # type: ignore[arg-type]
        if isinstance(concept, str) and concept in self.concepts:
            return self.concepts.concept(concept, tokenizer=tokenizer)
        if isinstance(concept, (str, os.PathLike)):
            path = self._path(concept)
            if path.is_dir() or is_text_path(path):
                return self.concepts.load(path, tokenizer=tokenizer)
            if isinstance(concept, str) and is_plain_name(concept):
                return self.concepts.concept(concept)  # raises, listing the library's concepts
            raise self._missing_folder("concept", path)
        return concept

    def resolve_random_sets(
        self, random_sets: int | Sequence[ConceptLike] | None, random_pool: ConceptLike | None, *,
        kind: str | None = None, tokenizer: Tokenizer | None = None,
    ) -> tuple[int | list[ConceptLike], ConceptLike | None]:
        """Explicit sets, or a count with the pool the engine draws them from.

        ``kind`` (the concept's, ``"text"`` or ``"image"``) picks the library's
        random sets of that kind; None takes whatever random sets it has.
        """
        if random_sets is None:
            random_sets = self.config.random_sets
        if isinstance(random_sets, bool):
            raise ConfigurationError("random_sets must be a count or a list of sets")
        if isinstance(random_sets, int):
            if random_pool is not None:
                return random_sets, self._random_data(random_pool, tokenizer, "random pool")
            if not self.concepts.configured:
                raise ConfigurationError(
                    f"random_sets={random_sets} needs random counterparts: configure tcav_concepts "
                    "(with random_* folders or a 'random' pool folder), or pass random_pool=... "
                    "or random_sets=[...]"
                )
            sets, pool = self.concepts.random_sets(random_sets, kind=kind, tokenizer=tokenizer)
            if pool is not None:
                return random_sets, pool
            return list(sets), None
        if isinstance(random_sets, (str, os.PathLike, torch.Tensor, Concept)):
            raise ConfigurationError(
                "random_sets must be a count or a list of sets; for one pool to draw sets from, "
                "pass random_pool=..."
            )
        return [self._random_data(value, tokenizer) for value in random_sets], None

    def _repetitions(self, random_sets: int | Sequence[ConceptLike] | None, random_pool: ConceptLike | None) -> int:
        """A relative test's N: a count, never sets, since its null comes from relabelings."""
        if random_pool is not None or not (random_sets is None or isinstance(random_sets, int)) \
                or isinstance(random_sets, bool):
            raise ConfigurationError(
                "a relative test (against=...) draws its null from relabelings of the concepts, not from random "
                "sets: give random_sets as a count (its number of repetitions) or leave it to tcav_random_sets, "
                "and no random_pool"
            )
        return self.config.random_sets if random_sets is None else random_sets

    def _random_data(self, value: ConceptLike, tokenizer: Tokenizer | None = None,
                     role: str = "random") -> ConceptLike:
        if is_text_list(value):
            return self._text(value, tokenizer, role, role)  # type: ignore[arg-type]
        if isinstance(value, str) and value in self.concepts:
            return self.concepts.random_set(value, tokenizer=tokenizer)
        if isinstance(value, (str, os.PathLike)):
            path = self._path(value)
            if not (path.is_dir() or is_text_path(path)):
                raise self._missing_folder("random", path)
            return self.concepts.load(path, tokenizer=tokenizer)
        return value

    def resolve_inputs(self, inputs: ConceptLike | None, target: TargetLike, *,
                       tokenizer: Tokenizer | None = None) -> ConceptLike:
        """Given inputs, a named input set, or (when left out) the target's input folder or ``.txt`` file."""
        if inputs is None:
            if callable(target) and not isinstance(target, (int, str)):
                raise ConfigurationError("inputs=... is needed when the target is a callable")
            return self.inputs.for_target(target, tokenizer=tokenizer)
        if is_text_list(inputs):
            return self._text(inputs, tokenizer, "inputs", "input")  # type: ignore[arg-type]
        if isinstance(inputs, str) and inputs in self.inputs:
            return self.inputs.named(inputs, tokenizer=tokenizer)
        if isinstance(inputs, (str, os.PathLike)):
            path = self._path(inputs)
            if path.is_dir() or is_text_path(path):
                return self.inputs.load(path, tokenizer=tokenizer)
            if isinstance(inputs, str) and is_plain_name(inputs):
                return self.inputs.named(inputs)  # raises, listing the input sets
            raise self._missing_folder("input", path)
        return inputs

    def cache_stats(self) -> dict[str, Any]:
        """What the session's store computed and reused, and its disk cache's counts (plain JSON)."""
        backend = self.store.backend
        disk = getattr(backend, "stats", None)
        return {
            "dir": str(getattr(backend, "root")) if hasattr(backend, "root") else None,  # noqa: B009
            "mode": getattr(backend, "mode", "off"),
            "computed": dict(self.store.computed),
            "reused": dict(self.store.reused),
            "disk": disk.as_dict() if disk is not None else None,
        }

    def __repr__(self) -> str:
        return (f"TCAVSession(concepts={self.concepts!r}, inputs={self.inputs!r}, "
                f"checks={len(self.records)}, cached={sum(self.store.computed.values())})")


def _layer_point(value: str) -> LayerPoint:
    if value not in ("output", "input"):
        raise ConfigurationError(f"layer_point must be 'output' or 'input', got {value!r}")
    return value  # type: ignore[return-value]


def default_store(config: TCAVConfig) -> MemoryStore:
    """A memory store in front of the disk cache the configuration names (none when off or unset)."""
    if config.cache_dir is None or config.cache == "off":
        return MemoryStore()
    from pytest_tcav.storage.disk import DiskStore

    return MemoryStore(backend=DiskStore(config.cache_dir, mode=config.cache,  # type: ignore[arg-type]
                                         max_bytes=config.cache_size, lock=config.cache_lock),
                       max_bytes=config.memory_cache)


def default_device() -> torch.device:
    """The device without ``tcav_device``: CUDA when present, else the CPU.

    Under pytest-xdist with several GPUs, worker ``gwK`` gets ``cuda:(K mod count)``
    so that the workers spread over the GPUs instead of all sharing the first.
    """
    if not torch.cuda.is_available():
        return torch.device("cpu")
    count = torch.cuda.device_count()
    match = re.fullmatch(r"gw(\d+)", os.environ.get("PYTEST_XDIST_WORKER", ""))
    if match is not None and count > 1:
        return torch.device("cuda", int(match.group(1)) % count)
    return torch.device("cuda")


# -- a class index checked against the model --------------------------------------------------------------
# Without ``inputs=``, a class index's inputs come from its folder in the input library.  When that folder is
# missing because the index is wrong (``target=7`` for a model with two classes), saying that folder ``7`` is
# missing sends the user looking for data; the index is the error.


@contextmanager
def index_in_range(model: nn.Module, concept: ConceptLike, target: Target | None, transform: Any = None,
                   forward_kwargs: Mapping[str, Any] | None = None) -> Iterator[None]:
    """Around finding a target's inputs: a :class:`ConceptDataError` there becomes the out-of-range
    target's :class:`TargetError` when the model has no class ``target`` (``None``: inputs were given)."""
    try:
        yield
    except ConceptDataError:
        error = target_out_of_range(model, concept, target, transform, forward_kwargs)
        if error is not None:
            raise error from None
        raise


def target_out_of_range(model: nn.Module, concept: ConceptLike, target: Target | None, transform: Any = None,
                        forward_kwargs: Mapping[str, Any] | None = None) -> TargetError | None:
    """The error for a class index the model does not have, found by running it on one concept example.

    ``None`` when the index is in range, or when the model's output tells nothing (an output that
    is not one ``(batch, classes)`` tensor, or a probe that fails): the caller keeps the error it had.
    """
    if target is None or callable(target) or isinstance(target, bool):
        return None
    try:
        example = take(as_concept(concept, transform=transform, name="probe").examples, slice(0, 1))
        output = concept_activations(model, {"output": model}, example, batch_size=1,
                                     forward_kwargs=forward_kwargs)["output"]
        outputs = int(output.shape[1])
    except Exception:  # noqa: BLE001 - the probe only refines an error already being raised
        return None
    if 0 <= int(target) < outputs:
        return None
    return TargetError(f"target {int(target)} is out of range for a model with {outputs} outputs (valid: "
                       f"0..{outputs - 1}); check the class index, or name the class through tcav_classes")
