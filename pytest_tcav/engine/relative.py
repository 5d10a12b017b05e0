"""Relative TCAV: does concept C raise the target more than concept D (or than the union of D1..Dk)?

The statistic is the absolute test's, the mean cosine between target gradients
and a CAV, with the CAV trained to separate C from D instead of from random
images.  The null hypothesis is that C and D are exchangeable for the target:
that the split of C ∪ D into "C" and "D" carries nothing the CAV and the
gradients could tell apart.  Under it the given split is one random relabeling
of the pooled examples among all those with the same set sizes, so CAVs
trained on random relabelings (permutations of C ∪ D into sets of C's and D's
sizes) give draws of the statistic from the very distribution the observed one
comes from.  The observed statistic averages N CAVs of C against D that differ
only in their seed (held-out split and SGD order); each of the N null values is
one CAV of one relabeling.  Averaging over seeds leaves the observed value's
mean unchanged and shrinks its variance, so the prediction-interval test of
:func:`~pytest_tcav.engine.statistics.compare_to_null` stays at or below alpha
(docs/statistics.md, "Relative TCAV", derives this; benchmarks/relative_calibration.py
measures it).

With several concepts to compare against, the negative set is their union,
as the TCAV paper defines relative CAVs (the released tensorflow/tcav code
used a single other concept; its PR #111 fixed that).

Everything is computed from the sets' activations (indexed, never re-run
through the model) and every CAV is fetched from the store under a content
key, so relative CAVs are cached like the absolute ones and are the same bits
whatever else was computed before.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from pytest_tcav.engine.activations import eval_mode
from pytest_tcav.engine.cav import CAV
from pytest_tcav.engine.examples import Concept, ConceptLike, warm_hashes
from pytest_tcav.engine.fingerprints import make_key, model_fingerprint, pair_seed
from pytest_tcav.engine.layer_verdicts import measured_fields
from pytest_tcav.engine.layers import resolve_layers
from pytest_tcav.engine.preconditions import check_sets
from pytest_tcav.engine.results import LayerResult, TCAVResult
from pytest_tcav.engine.statistics import (
    Correction,
    Direction,
    NullTest,
    adjust_p_values,
    check_test_feasible,
    compare_to_null,
    pair_scores,
)
from pytest_tcav.errors import ConceptDataError, ConfigurationError
from pytest_tcav.storage.memory import flushed

if TYPE_CHECKING:
    from pytest_tcav.engine.activations import Target


def against_list(against: ConceptLike | Sequence[ConceptLike]) -> list[ConceptLike]:
    """One concept or a list of them, as a list; an empty list is an error, not an absolute test."""
    values: list[ConceptLike] = list(against) if isinstance(against, (list, tuple)) else [against]  # type: ignore[list-item]
    if not values:
        raise ConfigurationError("against= needs at least one concept to compare with (or leave it out)")
    return values


@dataclass(frozen=True)
class Labeling:
    """One split of the pooled examples ``[C, D1, ..., Dk]`` into a positive and a negative group."""

    positive: torch.Tensor  # row indices into the pooled activations
    negative: torch.Tensor


def observed_labeling(n_concept: int, n_against: int) -> Labeling:
    return Labeling(torch.arange(n_concept), torch.arange(n_concept, n_concept + n_against))


def permuted_labelings(n_concept: int, n_against: int, count: int, seed: int) -> list[Labeling]:
    """``count`` random relabelings of the pool into sets of the concept's and the others' sizes.

    Drawn from one generator seeded by ``seed`` (itself derived from the sets'
    contents), so the same sets give the same relabelings in every process.
    """
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        order = torch.as_tensor(rng.permutation(n_concept + n_against), dtype=torch.int64)
        out.append(Labeling(order[:n_concept].sort().values, order[n_concept:].sort().values))
    return out


def _check_disjoint(concept: Concept, others: list[Concept]) -> None:
    """A relative test needs every example on one side only: a shared one is both C and D."""
    seen = [(concept, concept.example_digests)]
    for other in others:
        digests = other.example_digests
        for earlier, earlier_digests in seen:
            shared = len(digests & earlier_digests)
            if shared:
                raise ConceptDataError(
                    f"{earlier.name!r} and {other.name!r} share {shared} example(s); a relative test puts "
                    f"{concept.name!r} on one side and the concepts it is compared against on the other, so "
                    "each example must belong to one set only: remove the shared examples from one of them"
                )
        seen.append((other, digests))


def relative_test(
    engine: Any,
    concept: ConceptLike,
    against: ConceptLike | Sequence[ConceptLike],
    *,
    target: Target,
    target_name: str,
    inputs: ConceptLike,
    layers: Sequence[str] | str,
    repetitions: Any,
    random_pool: Any = None,
    direction: Direction,
    alpha: float,
    correction: Correction,
    null_test: NullTest,
) -> TCAVResult:
    """Test whether ``concept`` raises ``target`` more than ``against`` does, on each layer.

    ``engine`` is the :class:`~pytest_tcav.engine.tcav.TCAV` that calls it (typed ``Any``, as in
    :mod:`.work_units`, so that this module does not import the one that imports it).
    ``repetitions`` is N: the number of seeded CAVs of the concept against the
    others (averaged into the statistic) and of relabelings (the null).
    """
    layer_names = [layers] if isinstance(layers, str) else list(layers)
    modules = resolve_layers(engine.model, layer_names, engine.layer_point,
                             reached=lambda: engine._reached_layers(inputs))
    concept_set = engine.example_set(concept, concept if isinstance(concept, str) else None)
    others = [engine.example_set(value, value if isinstance(value, str) else f"against[{k}]")
              for k, value in enumerate(against_list(against))]
    input_set = engine.example_set(inputs, "inputs", role="input")
    if isinstance(repetitions, bool) or not isinstance(repetitions, (int, np.integer)) or random_pool is not None:
        raise ConfigurationError(
            "a relative test (against=...) draws its null from relabelings of the concepts, not from "
            "random sets: give random_sets as a count (the number of repetitions) and no random_pool"
        )
    if repetitions < 1:
        raise ConfigurationError(f"a relative test needs a positive number of repetitions, got {repetitions!r}")
    check_test_feasible(alpha, int(repetitions), len(layer_names), correction, null_test, direction=direction)
    warm_hashes([concept_set, *others, input_set])
    _check_disjoint(concept_set, others)
    check_sets(concept_set, others, input_set, engine.pooling)
    names = [s.name for s in others]
    # The union's order is its contents' order, so that ["a", "b"] and ["b", "a"] give the same numbers.
    others = sorted(others, key=lambda s: s.fingerprint)

    model_fp = model_fingerprint(engine.model)
    with eval_mode(engine.model), flushed(engine.store):
        per_layer = _compute(engine, model_fp, modules, concept_set, others, input_set, target, int(repetitions))

    raw = []
    for name in layer_names:
        observed, relabeled = per_layer[name]
        obs_scores = pair_scores(observed.gradients, torch.stack([c.weights for c in observed.cavs]))
        null_scores = pair_scores(relabeled.gradients, torch.stack([c.weights for c in relabeled.cavs]))
        statistic = float(np.mean(obs_scores.cosine))
        raw.append((observed, obs_scores, null_scores, statistic,
                    compare_to_null(statistic, null_scores.cosine, direction, null_test)))
    corrected = adjust_p_values([r[4].p_value for r in raw], correction)
    results = []
    for name, (observed, obs, nul, statistic, outcome), p_corr in zip(layer_names, raw, corrected):
        accuracies = [c.accuracy for c in observed.cavs]
        results.append(LayerResult(**measured_fields(name, obs, statistic, nul.cosine, nul.sign_count, accuracies,
                                                     outcome, p_corr, alpha)))
    return TCAVResult(
        concept=concept_set.name,
        target=target_name,
        direction=direction,
        alpha=float(alpha),
        correction=correction,
        null_test=null_test,
        method=engine.method_label,
        n_random=int(repetitions),
        n_concept_examples=len(concept_set),
        n_inputs=len(input_set),
        seed=engine.seed,
        layers=results,
        model_fingerprint=model_fp,
        concept_fingerprint=concept_set.fingerprint,
        against=names,
    )


@dataclass(frozen=True)
class _Side:
    gradients: torch.Tensor
    cavs: list[CAV]


def _compute(engine: Any, model_fp: str, modules: dict[str, Any], concept: Concept, others: list[Concept],
             inputs: Concept, target: Target, n: int) -> dict[str, tuple[_Side, _Side]]:
    """Per layer: the N seeded CAVs of the concept against the others, and the N relabelings' CAVs."""
    sets = [concept, *others]
    grads = engine._gradients(model_fp, modules, inputs, target)
    n_concept = len(concept)
    n_against = sum(len(s) for s in others)
    union = ",".join(s.fingerprint for s in others)
    labelings = [observed_labeling(n_concept, n_against)] * n + permuted_labelings(
        n_concept, n_against, n, pair_seed(engine.seed, f"relative-permutations:{concept.fingerprint}", union))
    roles = [("repetition", r) for r in range(n)] + [("permutation", k) for k in range(n)]
    seeds = [pair_seed(engine.seed, concept.fingerprint, f"{union}:{role}:{k}") for role, k in roles]
    loaded: dict[str, dict[str, list[torch.Tensor]]] = {}

    def activations(layer: str) -> torch.Tensor:
        if not loaded:
            loaded["acts"] = engine._activations(model_fp, modules, sets)
        return torch.cat(loaded["acts"][layer])

    out = {}
    for name in modules:
        keys = [
            make_key("cav", {"model": model_fp, "layer": name, "relative": role, "index": k,
                             "positive": concept.fingerprint, "negative": [s.fingerprint for s in others],
                             "trainer": engine.trainer.settings(), "seed": engine.seed, **engine._settings()})
            for role, k in roles
        ]
        position = {key: k for k, key in enumerate(keys)}

        def train_missing(todo: list[str], name: str = name,
                          position: dict[str, int] = position) -> dict[str, dict[str, torch.Tensor]]:
            features = activations(name)
            index = [position[key] for key in todo]
            groups = [g for k in index for g in (labelings[k].positive, labelings[k].negative)]
            pairs = [(2 * j, 2 * j + 1) for j in range(len(index))]
            cavs = engine.trainer.train_many(features, groups, pairs, [seeds[k] for k in index])
            return {key: {"weights": cav.weights,
                          "intercept": torch.tensor(cav.intercept, dtype=torch.float64),
                          "accuracy": torch.tensor(cav.accuracy, dtype=torch.float64)}
                    for key, cav in zip(todo, cavs)}

        values = engine.store.fetch_many("cav", keys, train_missing)
        cavs = [CAV(values[key]["weights"], float(values[key]["intercept"]), float(values[key]["accuracy"]))
                for key in keys]
        out[name] = (_Side(grads[name], cavs[:n]), _Side(grads[name], cavs[n:]))
    return out
