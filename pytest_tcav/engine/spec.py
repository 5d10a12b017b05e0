"""One concept check, asked for: :class:`CheckSpec`, the request every layer passes down unchanged.

A check's arguments are written out once, here, with their defaults.  The public
entry points (the assertions in :mod:`pytest_tcav.api`, ``TCAVSession.score`` and
``TCAVSession.engine``, YAML items, ``pytest-tcav score`` and ``calibrate``) keep
their documented keyword signatures, build one :class:`CheckSpec` from them, and
fill what the call left unset from the run's configuration in :func:`settle`, the
one place where ``tcav_*`` ini keys and ``--tcav-*`` options meet the knobs.  Below
them the spec travels as it is: the checks read their expectation, the session
resolves its names to data (:class:`CheckData`), the engine reads its knobs.

Why it lives in the engine: the engine is the lowest layer that receives it, and a
type may only be imported downwards (docs/architecture.md); the check-level fields
(``expectation``, ``require``, ``score``, :class:`StabilitySpec`) ride along so that
one object describes a check from the test's line to the record, and the engine
simply does not read them.  The knobs that make an engine (:class:`EngineKnobs`:
fixed per ``TCAV`` object, they change the numbers and enter the cache keys) are a
nested part, since ``TCAVSession.engine`` takes only them.

The module imports nothing heavy at run time (the types below are annotations), so
the YAML parser can build specs while collecting without loading torch.

Where a new knob goes: a field here (in :class:`EngineKnobs` if it is fixed per
engine), a line in :func:`settle` if it has an ini key (and the key in
``config.OPTIONS`` / ``TCAVConfig``), the parameter in each public signature that
takes it (``tests/engine/test_spec.py`` fails until they agree), and the code that
reads it.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar

if TYPE_CHECKING:
    import torch

    from pytest_tcav.config import TCAVConfig
    from pytest_tcav.engine.conditional_null import PseudoNull
    from pytest_tcav.engine.examples import ConceptLike
    from pytest_tcav.engine.outputs import Output, Target
    from pytest_tcav.engine.text_examples import Tokenizer

#: A target as a test names it: a class index, a class name (``tcav_classes``), or a callable of the output.
TargetLike = int | str | Callable[[Any], "torch.Tensor"]
#: What a check expects: "score" checks only the TCAV score range, whatever the significance (YAML tests'
#: ``score: [low, high]``); "stable" compares with a baseline.  None: measure without expecting anything.
Expectation = Literal["significant", "insignificant", "score", "stable"]
Require = Literal["all", "any"]

#: Default absolute tolerance of a stability check on the TCAV score (a fraction of inputs, in [0, 1]).
DEFAULT_TOLERANCE = 0.1

T = TypeVar("T")


@dataclass(frozen=True)
class EngineKnobs:
    """How the engine runs the model and trains CAVs: fixed per engine; None takes the run's configuration.

    ``forward_kwargs`` and ``output`` have no ini key (they are Python values); ``tokenizer``
    left unset takes the session's ``tcav_tokenizer``.
    """

    method: str | None = None
    n_steps: int | None = None
    seed: int | None = None
    batch_size: int | None = None
    layer_point: str | None = None
    #: Which call (from 0) of a layer's module run several times per forward pass is studied (None: refused).
    layer_call: int | None = None
    pooling: str | None = None
    forward_kwargs: Mapping[str, Any] | None = None
    output: Output = None
    tokenizer: Tokenizer | None = None


@dataclass(frozen=True)
class StabilitySpec:
    """What a stability check compares with: the baseline file and the tolerances of the comparison."""

    baseline: str
    tolerance: float = DEFAULT_TOLERANCE
    statistic_tolerance: float = 0.0
    #: Where the baseline file lives (relative to the project root); None: ``tcav_baselines/`` next to the test.
    baseline_dir: str | os.PathLike[str] | None = None


@dataclass(frozen=True)
class CheckSpec:
    """Everything one check asks for.  Knobs left as None take the run's configuration (:func:`settle`)."""

    concept: ConceptLike
    target: TargetLike
    layers: Sequence[str] | str
    #: None: the target's folder (or ``.txt`` file) in the input library.
    inputs: ConceptLike | None = None
    #: None: a measurement without a verdict (``tcav.score``, ``pytest-tcav score``, calibration).
    expectation: Expectation | None = None
    #: None: "either" for a stability check, else "positive" (each assertion is the other's negation).
    direction: str | None = None
    require: Require = "all"
    #: The TCAV score's expected range, ``(low, high)``.
    score: tuple[float, float] | None = None
    #: Relative TCAV: the concept (or concepts, their union) to compare with instead of random sets.
    against: ConceptLike | Sequence[ConceptLike] | None = None
    #: The equivalence margin of an insignificance check, in random-set spreads (None there: ``tcav_margin``).
    margin: float | None = None
    #: A count of random sets (from the library, or drawn from ``random_pool``), or the sets themselves.
    random_sets: int | Sequence[ConceptLike] | None = None
    random_pool: ConceptLike | None = None
    alpha: float | None = None
    min_cav_accuracy: float | None = None
    #: The correction over the layers (None: ``tcav_correction``); the engine API's per-call override.
    correction: str | None = None
    #: The test against the null: "t" or "rank" (None: the engine's, else "t" against the random sets and
    #: "rank" against pseudo-concepts: engine/conditional_null.py).
    null_test: str | None = None
    #: What the concept is judged against: "random" (the random sets' spread) or "pseudo" (pseudo-concepts
    #: tested on the same library: engine/conditional_null.py).  None: ``tcav_null``.
    null: str | None = None
    engine: EngineKnobs = EngineKnobs()
    #: A stability check's baseline and tolerances (``expectation="stable"``).
    stability: StabilitySpec | None = None

    @property
    def layer_names(self) -> list[str]:
        return [self.layers] if isinstance(self.layers, str) else list(self.layers)


@dataclass(frozen=True)
class CheckData:
    """A request's names resolved to data by the session: what the engine computes on."""

    concept: ConceptLike
    target: Target
    inputs: ConceptLike
    #: Explicit random sets, or a count to draw from ``random_pool``; a relative test's repetitions.
    random_sets: int | Sequence[ConceptLike]
    random_pool: ConceptLike | None = None
    against: ConceptLike | Sequence[ConceptLike] | None = None
    #: The pseudo-concepts' statistics a ``null="pseudo"`` request is judged against.
    pseudo_null: PseudoNull | None = None


def settle_knobs(knobs: EngineKnobs, config: TCAVConfig) -> EngineKnobs:
    """The engine part of :func:`settle` (``TCAVSession.engine`` takes only these knobs)."""
    return dataclasses.replace(
        knobs,
        method=config.method if knobs.method is None else knobs.method,
        n_steps=config.n_steps if knobs.n_steps is None else knobs.n_steps,
        seed=config.seed if knobs.seed is None else knobs.seed,
        batch_size=config.batch_size if knobs.batch_size is None else knobs.batch_size,
        layer_point=config.layer_point if knobs.layer_point is None else knobs.layer_point,
        pooling=config.pooling if knobs.pooling is None else knobs.pooling,
        layer_call=config.layer_call if knobs.layer_call is None else knobs.layer_call,
    )


def settle(spec: CheckSpec, config: TCAVConfig) -> CheckSpec:
    """The request with every unset knob taken from the run's configuration: the one place they merge.

    ``tokenizer`` stays unset (the session's ``tcav_tokenizer`` is an object it loads, not a value
    of the configuration), and so do ``null_test`` (no ini key) and, outside insignificance checks,
    ``margin`` (``tcav_margin`` is the margin of those checks only).  A relative check (``against=``)
    takes ``null`` from its own call only: its null is its concepts' relabelings, and ``tcav_null``
    speaks of the random library; so does a stability check, which compares with its baseline.
    """
    direction = spec.direction
    if direction is None:
        direction = "either" if spec.expectation == "stable" else "positive"
    margin = spec.margin
    if margin is None and spec.expectation == "insignificant":
        margin = config.margin
    return dataclasses.replace(
        spec,
        direction=direction,
        margin=margin,
        random_sets=config.random_sets if spec.random_sets is None else spec.random_sets,
        alpha=config.alpha if spec.alpha is None else spec.alpha,
        min_cav_accuracy=config.min_cav_accuracy if spec.min_cav_accuracy is None else spec.min_cav_accuracy,
        correction=config.correction if spec.correction is None else spec.correction,
        null=spec.null if spec.null is not None else
        ("random" if spec.against is not None or spec.expectation == "stable" else config.null),
        engine=settle_knobs(spec.engine, config),
    )


def member_request(spec: CheckSpec, concept: ConceptLike, layers: Sequence[str] | None = None) -> CheckSpec:
    """A pseudo-concept's request: the check's own, its concept replaced, measured under the ``random`` null
    with its t-test (the statistics depend on neither) and with no verdict (no expectation, margin, score
    range or baseline)."""
    return dataclasses.replace(spec, concept=concept, layers=spec.layers if layers is None else list(layers),
                               null="random", null_test="t", expectation=None, margin=None, score=None,
                               stability=None)


def settled(value: T | None, name: str) -> T:
    """A knob :func:`settle` has filled; None here means a spec that skipped it (a bug, not a user error)."""
    if value is None:
        raise TypeError(f"{name} is unset: settle(spec, config) fills it before the spec goes down")
    return value
