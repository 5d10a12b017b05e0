"""The TCAV engine: from a model, a concept, random sets and inputs to a tested result.

Data flows one way: example sets become activations (:mod:`.activations`),
pairs of activation sets become CAVs (:mod:`.cav`, :mod:`.trainers`), CAVs and
target gradients become scores and a p-value (:mod:`.statistics`).  Every
intermediate value is fetched from a store under a content key
(:mod:`.fingerprints`), so work shared between concepts, tests and runs
(activations of the random sets, the random-vs-random CAVs, the input
gradients) is done once.  Arguments and data are checked first
(:mod:`.validate`); what follows assumes them valid.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from pytest_tcav.engine import batches, evidence, work_units
from pytest_tcav.engine.activations import (
    Method,
    Target,
    eval_mode,
    model_device,
)
from pytest_tcav.engine.cav import CAV, CAVTrainer
from pytest_tcav.engine.conditional_null import (
    PseudoLayer,
    PseudoNull,
    check_null,
    example_keys,
    layers_from_results,
    require_pseudo_null,
    resolve_null_test,
)
from pytest_tcav.engine.examples import Concept, ConceptLike, Transform, as_concept, sample_random_sets, warm_hashes
from pytest_tcav.engine.fingerprints import model_fingerprint
from pytest_tcav.engine.layer_verdicts import check_margin, judge_layers
from pytest_tcav.engine.layers import LayerPoint, reached_layers, resolve_layers
from pytest_tcav.engine.outputs import Output, check_output_and_target
from pytest_tcav.engine.preconditions import (
    check_direction,
    check_engine_arguments,
    check_sets,
)
from pytest_tcav.engine.relative import relative_test
from pytest_tcav.engine.results import ExampleIds, LayerResult, TCAVResult
from pytest_tcav.engine.spec import CheckData, CheckSpec, EngineKnobs, member_request, settled
from pytest_tcav.engine.statistics import (
    Correction,
    Direction,
    NullTest,
    PairScores,
    check_test_feasible,
    compare_to_null,
    leave_one_out_null,
    pair_scores,
)
from pytest_tcav.engine.text_examples import Tokenizer, labelled, prepare, text_labels
from pytest_tcav.engine.trainers import make_trainer
from pytest_tcav.errors import ConfigurationError, InsufficientDataError
from pytest_tcav.storage.memory import MemoryStore, flushed


def describe_target(target: Target) -> str:
    if callable(target):
        return getattr(target, "__qualname__", repr(target))
    return str(int(target))


def example_ids(concept: Concept, randoms: Sequence[Concept], inputs: Concept) -> ExampleIds:
    """What the test's examples are called, set by set (engine/results.py, ExampleIds)."""
    return ExampleIds(inputs=inputs.example_ids(), concept=concept.example_ids(),
                      random=[r.example_ids() for r in randoms], random_sets=[r.name for r in randoms],
                      input_texts=list(inputs.texts or ()), concept_texts=list(concept.texts or ()),
                      random_texts=[list(r.texts or ()) for r in randoms] if all(r.texts for r in randoms) else [])


def with_evidence(result: LayerResult, scores: PairScores, cavs: Sequence[CAV], concept: Concept,
                  randoms: Sequence[Concept], placed: tuple[evidence.Misplaced, list[evidence.Misplaced]]
                  ) -> LayerResult:
    """A layer's result with its per-example evidence (engine/evidence.py): no number of the test changes."""
    direction, width = evidence.cav_direction(cavs)
    return dataclasses.replace(
        result,
        input_shares=[float(v) for v in scores.input_share] if scores.input_share is not None else [],
        input_cosines=[float(v) for v in scores.input_cosine] if scores.input_cosine is not None else [],
        # None where no CAV held the example out (not NaN: results compare equal when their numbers do)
        concept_outlier_scores=[None if v != v else float(v) for v in placed[0].scores],
        suspects=evidence.suspects(concept, randoms, *placed, cav_accuracy=result.cav_accuracy),
        cav_direction=direction, cav_features=width,
    )


class TCAV:
    """Test concepts on one model.

    Parameters that change numbers (``method``, ``n_steps``, ``layer_point``,
    ``layer_call``, ``pooling``, ``forward_kwargs``, ``output``, ``trainer``, ``seed``) are
    fixed per engine; the statistical choices
    (``alpha``, ``direction``, ``correction``, ``null_test``) have defaults here
    and can be overridden per call, since they only change the last step.

    The model is put in eval mode while it runs and left as it was found.
    ``tokenizer`` turns text sets (a list of strings, a ``.txt`` file, a folder
    of them) into examples, as :mod:`pytest_tcav.engine.text_examples` describes.
    ``layer_call=N`` studies the N-th call (from 0) of a layer's module that runs
    more than once per forward pass; None refuses such a module.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        method: Method = "gradient",
        n_steps: int = 5,
        layer_point: LayerPoint = "output",
        trainer: CAVTrainer | str | None = None,
        seed: int = 0,
        batch_size: int = 64,
        device: torch.device | str | None = None,
        alpha: float = 0.05,
        correction: Correction = "holm",
        null_test: NullTest | None = None,
        null: str = "random",
        transform: Transform | None = None,
        store: MemoryStore | None = None,
        tokenizer: Tokenizer | None = None,
        pooling: str = "flatten",
        forward_kwargs: Mapping[str, Any] | None = None,
        output: Output = None,
        layer_call: int | None = None,
    ) -> None:
        forward_kwargs = dict(forward_kwargs) if isinstance(forward_kwargs, Mapping) else forward_kwargs
        check_engine_arguments(model, method, correction, batch_size, n_steps, pooling, forward_kwargs, output,
                               layer_call)
        self.model = model
        self.method = method
        self.n_steps = n_steps
        self.layer_point = layer_point
        self.layer_call = layer_call
        self.pooling = pooling
        self.forward_kwargs: dict[str, Any] | None = forward_kwargs or None
        self.output = output
        self.trainer = make_trainer(trainer)
        self.seed = int(seed)
        self.batch_size = batch_size
        self.device = torch.device(device) if device is not None else None
        self.alpha = alpha
        self.correction = correction
        self.null_test = null_test
        check_null(null)
        self.null = null
        self.transform = transform
        #: Text sets (lists of strings, .txt files and folders) become examples through it (engine/text_examples.py).
        self.tokenizer = tokenizer
        self.store: MemoryStore = store if store is not None else MemoryStore()

    @classmethod
    def from_knobs(
        cls,
        model: nn.Module,
        knobs: EngineKnobs,
        *,
        device: torch.device | str | None = None,
        alpha: float = 0.05,
        correction: Correction = "holm",
        transform: Transform | None = None,
        store: MemoryStore | None = None,
        tokenizer: Tokenizer | None = None,
    ) -> TCAV:
        """An engine with a settled request's knobs (:func:`~pytest_tcav.engine.spec.settle`).

        The other arguments are what the caller holds, not what a check asks for: the
        device, the run's alpha and correction, the transform, the store, and the tokenizer
        that text takes when ``knobs.tokenizer`` is unset.
        """
        return cls(
            model,
            method=settled(knobs.method, "method"),  # type: ignore[arg-type]
            n_steps=settled(knobs.n_steps, "n_steps"),
            seed=settled(knobs.seed, "seed"),
            batch_size=settled(knobs.batch_size, "batch_size"),
            layer_point=settled(knobs.layer_point, "layer_point"),  # type: ignore[arg-type]
            pooling=settled(knobs.pooling, "pooling"),
            layer_call=knobs.layer_call,
            forward_kwargs=knobs.forward_kwargs,
            output=knobs.output,
            device=device,
            alpha=alpha,
            correction=correction,
            transform=transform,
            store=store,
            tokenizer=knobs.tokenizer if knobs.tokenizer is not None else tokenizer,
        )

    # -- public API -----------------------------------------------------------------

    def test(
        self,
        concept: ConceptLike,
        *,
        target: Target,
        inputs: ConceptLike,
        layers: Sequence[str] | str,
        random_sets: Sequence[ConceptLike] | int = 10,
        random_pool: ConceptLike | None = None,
        direction: Direction = "positive",
        alpha: float | None = None,
        correction: Correction | None = None,
        null_test: NullTest | None = None,
        against: ConceptLike | Sequence[ConceptLike] | None = None,
        margin: float | None = None,
        min_cav_accuracy: float | None = None,
        null: str | None = None,
        pseudo_concepts: Sequence[ConceptLike] | PseudoNull | None = None,
    ) -> TCAVResult:
        """Test whether ``concept`` matters for ``target`` on each layer.

        ``random_sets`` is a list of explicit random sets, or a count of sets to
        draw (seeded) from ``random_pool``, each the size of the concept set.
        With ``against`` (a concept or a list of them), the test is relative
        TCAV instead: whether ``concept`` raises the target more than the others
        (their union) do; ``random_sets`` is then the count N of its repetitions
        (:mod:`pytest_tcav.engine.relative`).
        ``margin`` (in units of the random sets' spread) adds the equivalence test
        of "the effect is below the margin"; a layer whose concept CAVs do no
        better than chance (or, with ``min_cav_accuracy``, score below it on
        average) gets the verdict ``inconclusive`` (docs/statistics.md).
        ``null="pseudo"`` judges the concept against ``pseudo_concepts`` instead of
        the random sets' spread: random sets the tests do not use, each tested here
        against the same random sets first (or their :class:`PseudoNull`, measured
        before); :mod:`pytest_tcav.engine.conditional_null` says why.
        """
        spec = CheckSpec(concept=concept, target=target, layers=layers, inputs=inputs, direction=direction,
                         against=against, margin=margin, random_sets=random_sets, random_pool=random_pool,
                         alpha=alpha, min_cav_accuracy=min_cav_accuracy, correction=correction, null_test=null_test,
                         null=null)
        pseudo: PseudoNull | None = None
        if isinstance(pseudo_concepts, PseudoNull):
            pseudo = pseudo_concepts
        elif pseudo_concepts is not None and against is None:
            pseudo = self.pseudo_null(spec, target, inputs, random_sets, random_pool, pseudo_concepts)
        return self.run(spec, CheckData(concept=concept, target=target, inputs=inputs, random_sets=random_sets,
                                        random_pool=random_pool, against=against, pseudo_null=pseudo))

    def pseudo_null(self, spec: CheckSpec, target: Target, inputs: ConceptLike,
                    random_sets: Sequence[ConceptLike] | int, random_pool: ConceptLike | None,
                    pseudo_concepts: Sequence[ConceptLike]) -> PseudoNull:
        """Each pseudo-concept tested as the concept of ``spec`` (under the ``random`` null), kept as a null."""
        if isinstance(pseudo_concepts, (str, bytes)) or not isinstance(pseudo_concepts, Sequence):
            raise ConfigurationError("pseudo_concepts must be a list of example sets (random data the tests do not "
                                     f"use, each of the concept's size), got {type(pseudo_concepts).__name__}")
        sets = [self.example_set(p, f"pseudo_{k}") for k, p in enumerate(pseudo_concepts)]
        results = [self.run(member_request(spec, p),
                            CheckData(concept=p, target=target, inputs=inputs, random_sets=random_sets,
                                      random_pool=random_pool)) for p in sets]
        return PseudoNull(layers_from_results(results), tuple(s.fingerprint for s in sets),
                          member_digests=tuple(example_keys(s) for s in sets),
                          source="pseudo-concepts given to TCAV.test")

    def run(self, spec: CheckSpec, data: CheckData) -> TCAVResult:
        """:meth:`test` on a request and its data: the layers and statistical choices from ``spec``
        (unset ones: this engine's), the sets and the target from ``data``."""
        direction: Direction = spec.direction  # type: ignore[assignment]  # checked below
        margin, min_cav_accuracy = spec.margin, spec.min_cav_accuracy
        concept, target, inputs, random_sets, random_pool = (data.concept, data.target, data.inputs,
                                                             data.random_sets, data.random_pool)
        alpha = self.alpha if spec.alpha is None else spec.alpha
        correction: Correction = self.correction if spec.correction is None else spec.correction  # type: ignore[assignment]
        null = self.null if spec.null is None else spec.null
        check_null(null)
        null_test = resolve_null_test(spec.null_test or self.null_test, null)
        check_direction(direction)
        check_output_and_target(target, self.output)
        check_margin(margin, min_cav_accuracy)
        if data.against is not None:  # relative TCAV: its own module; no random sets
            if margin is not None:
                raise ConfigurationError("margin= needs random sets for its unit; a relative test (against=) has none")
            if null == "pseudo":
                raise ConfigurationError("null='pseudo' judges a concept against pseudo-concepts tested on the random "
                                         "sets; a relative test (against=) has no random sets: its null is its "
                                         "concepts' relabelings")

            return relative_test(self, concept, data.against, target=target, target_name=describe_target(target),
                                 inputs=inputs, layers=spec.layers, repetitions=random_sets, random_pool=random_pool,
                                 direction=direction, alpha=alpha, correction=correction, null_test=null_test)
        layers = spec.layers
        layer_names = [layers] if isinstance(layers, str) else list(layers)
        modules = resolve_layers(self.model, layer_names, self.layer_point,
                                 reached=lambda: self._reached_layers(inputs))
        concept_set = self.example_set(concept, concept if isinstance(concept, str) else None)
        input_set = self.example_set(inputs, "inputs", role="input")
        randoms = [self._canonical(r) for r in self._random_sets(random_sets, random_pool, concept_set)]
        pseudo = None
        if null == "pseudo":
            pseudo = require_pseudo_null(data.pseudo_null, layer_names).excluding(concept_set)
            try:
                check_test_feasible(alpha, pseudo.k, len(layer_names), correction, null_test, what="pseudo-concept",
                                    direction=direction)
            except InsufficientDataError as exc:
                if not pseudo.excluded:
                    raise
                raise InsufficientDataError(
                    f"the concept shares examples with {pseudo.excluded} of the {pseudo.k + pseudo.excluded} "
                    f"pseudo-concepts (it holds random data they are drawn from), and a concept is never judged "
                    f"against itself: {exc}. Test it with null='random', or keep concept examples out of the "
                    "spare random data") from None
            check_test_feasible(alpha, len(randoms), len(layer_names), correction, "t")
        else:
            check_test_feasible(alpha, len(randoms), len(layer_names), correction, null_test, direction=direction)
        warm_hashes([concept_set, *randoms, input_set])
        check_sets(concept_set, randoms, input_set, self.pooling)

        model_fp = model_fingerprint(self.model)
        with eval_mode(self.model), flushed(self.store):
            per_layer = work_units.TestWork(self, model_fp, modules, [concept_set, *randoms], input_set, target).run()
            placed = self._placements(model_fp, modules, layer_names, concept_set, randoms, per_layer)

        raw = [self._layer_statistics(per_layer[name], len(randoms), direction, null_test,
                                      None if pseudo is None else pseudo.layer(name)) for name in layer_names]
        layer_results = judge_layers(layer_names, raw, [per_layer[n].concept_cavs for n in layer_names],
                                     direction=direction, alpha=alpha, correction=correction, margin=margin,
                                     min_cav_accuracy=min_cav_accuracy, conditional=pseudo is not None)
        layer_results = [with_evidence(r, raw_k[0]["concept"], per_layer[r.layer].concept_cavs, concept_set, randoms,
                                       placed[r.layer]) for r, raw_k in zip(layer_results, raw)]
        return TCAVResult(
            concept=concept_set.name,
            target=describe_target(target),
            direction=direction,
            alpha=float(alpha),
            correction=correction,
            null_test=null_test,
            method=self.method_label,
            n_random=len(randoms),
            n_concept_examples=len(concept_set),
            n_inputs=len(input_set),
            seed=self.seed,
            layers=layer_results,
            model_fingerprint=model_fp,
            concept_fingerprint=concept_set.fingerprint,
            margin=None if margin is None else float(margin),
            min_cav_accuracy=None if min_cav_accuracy is None else float(min_cav_accuracy),
            examples=example_ids(concept_set, randoms, input_set),
            null=null,
            null_source=None if pseudo is None else pseudo.describe(),
        )

    def _placements(self, model_fp: str, modules: dict[str, nn.Module], layer_names: list[str], concept: Concept,
                    randoms: list[Concept], per_layer: dict[str, work_units.LayerData]):
        """Where the concept's CAVs put each held-out example (engine/evidence.py), from the sets' activations."""
        def fetch(k: int) -> dict[str, torch.Tensor]:
            return work_units.fetch_activations(self, model_fp, modules, [concept, *randoms][k], layer_names)

        return evidence.placements(fetch, layer_names, concept, randoms,
                                   {name: per_layer[name].concept_cavs for name in layer_names}, self.trainer,
                                   self.seed)

    # -- data ------------------------------------------------------------------------

    @property
    def method_label(self) -> str:
        """The method as results name it: integrated gradients with their number of steps."""
        return self.method if self.method == "gradient" else f"{self.method}(n_steps={self.n_steps})"

    def example_set(self, value: ConceptLike, name: str | None, *, role: str = "concept") -> Concept:
        """One example set as the engine computes on it: text tokenized, data made a Concept, padding trimmed.

        A :class:`Concept` (what the session's libraries load) is already examples: it is not converted again.
        """
        if isinstance(value, Concept):
            return self._canonical(value)
        return self._canonical(self._as_concept(value, name, role))

    def _as_concept(self, value: ConceptLike, name: str | None, role: str) -> Concept:
        """Data as a :class:`Concept`: text tokenized and labelled with its lines' ids and sentences."""
        prepared = prepare(value, self.tokenizer, role=role)
        concept = as_concept(prepared, name=name, transform=self.transform, role=role)
        if prepared is not value:  # text
            concept = labelled(concept, *text_labels(value, role=role))  # type: ignore[arg-type]  # text
        return concept

    def _canonical(self, s: Concept) -> Concept:
        """Under a pooling that ignores padding, a set without its all-padding positions (one content, one key)."""
        if self.pooling == "flatten":
            return s
        trimmed = batches.trim_padding(s.examples)
        return s if trimmed is s.examples else Concept(s.name, trimmed, source=s.source, ids=s.ids, texts=s.texts)

    def _reached_layers(self, inputs: ConceptLike) -> list[str]:
        """The layers a forward pass on two of the inputs runs (to suggest only those for an unknown name)."""
        from pytest_tcav.engine.layers import named_layers

        try:
            sample = as_concept(inputs, name="inputs", transform=self.transform, role="input")
            batch = batches.to(batches.take(sample.examples, slice(0, 2)),
                                 self.device or model_device(self.model))
            with eval_mode(self.model):
                return reached_layers(self.model, lambda: batches.call(self.model, batch, self.forward_kwargs))
        except Exception:  # the inputs or the model fail: the test's own checks say why; suggest from all names
            return list(named_layers(self.model))

    def _random_sets(
        self, random_sets: Sequence[ConceptLike] | int, pool: ConceptLike | None, concept: Concept
    ) -> list[Concept]:
        if isinstance(random_sets, bool):
            raise ConfigurationError("random_sets must be a count or a list of sets")
        if isinstance(random_sets, (int, np.integer)):
            if pool is None:
                raise ConfigurationError(
                    f"random_sets={int(random_sets)} asks to draw random sets, but no random pool "
                    "was given; pass random_pool=... or a list of random sets"
                )
            pool_set = self._as_concept(pool, "random_pool", "random pool")  # each drawn set is trimmed later
            return sample_random_sets(pool_set, int(random_sets), len(concept), self.seed)
        sets = []
        for k, value in enumerate(random_sets):
            label = value if isinstance(value, str) else f"random[{k}]"
            sets.append(self.example_set(value, str(label), role="random"))
        return sets

    # -- computation -----------------------------------------------------------------

    def _settings(self) -> dict[str, Any]:
        return work_units.settings(self)

    def _persist(self) -> bool:
        return work_units.persist(self)

    def _activations(self, model_fp: str, modules: dict[str, nn.Module],
                     sets: list[Concept]) -> dict[str, list[torch.Tensor]]:
        return work_units.activations(self, model_fp, modules, sets)

    def _gradients(self, model_fp: str, modules: dict[str, nn.Module], inputs: Concept,
                   target: Target) -> dict[str, torch.Tensor]:
        return work_units.gradients(self, model_fp, modules, inputs, target)

    @staticmethod
    def _layer_statistics(data: work_units.LayerData, n: int, direction: Direction, null_test: NullTest,
                          pseudo: PseudoLayer | None = None):
        concept_scores = pair_scores(data.gradients, torch.stack([c.weights for c in data.concept_cavs]))
        if pseudo is None:
            null = leave_one_out_null(data.pairwise)
            null_scores = data.pair_signs.sum(1) / max(n - 1, 1)
            # each random set's mean held-out CAV accuracy against the others: "chance" for the CAV gate
            null_accuracies = data.accuracy.sum(1) / max(n - 1, 1)
        else:  # the pseudo-concepts in the random sets' place: their statistics, scores and CAV accuracies
            null = np.asarray(pseudo.statistics, dtype=np.float64)
            null_scores = np.asarray(pseudo.scores, dtype=np.float64)
            null_accuracies = np.asarray(pseudo.accuracies, dtype=np.float64)
        concept_stat = float(np.mean(concept_scores.cosine))
        outcome = compare_to_null(concept_stat, null, direction, null_test)
        return ({"concept": concept_scores, "null_scores": null_scores, "null_accuracies": null_accuracies},
                outcome, null, concept_stat)
