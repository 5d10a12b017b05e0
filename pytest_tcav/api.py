"""The assertions a concept test calls: ``assert_concept_significant`` and its siblings.

Each builds the check's request (:class:`~pytest_tcav.engine.spec.CheckSpec`) from
its arguments, settles it with the configuration of the session that is current now
(the pytest run's, or a default one outside pytest; see
:mod:`pytest_tcav.session.registry`), and hands both to :mod:`pytest_tcav.checks`, so
that a test can import and call them without asking for a fixture.  Every frame
hides itself from the traceback, so a failure shows the user's line on top.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pytest_tcav.checks.significance import check_concept
from pytest_tcav.checks.stability import StabilityResult, check_stable
from pytest_tcav.engine.spec import DEFAULT_TOLERANCE, CheckSpec, EngineKnobs, Require, StabilitySpec, settle
from pytest_tcav.session.registry import current_session

if TYPE_CHECKING:
    from torch import nn

    from pytest_tcav.engine.examples import ConceptLike
    from pytest_tcav.engine.outputs import Output
    from pytest_tcav.engine.results import TCAVResult
    from pytest_tcav.engine.spec import TargetLike
    from pytest_tcav.engine.text_examples import Tokenizer

__all__ = ["assert_concept_insignificant", "assert_concept_significant", "assert_concept_stable"]


def assert_concept_significant(
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
    tokenizer: Tokenizer | None = None,
    require: Require = "all",
    score: tuple[float, float] | None = None,
    against: ConceptLike | Sequence[ConceptLike] | None = None,
    forward_kwargs: Mapping[str, Any] | None = None,
    output: Output = None,
    layer_point: str | None = None,
    layer_call: int | None = None,
    pooling: str | None = None,
    null: str | None = None,
) -> TCAVResult:
    """Assert that ``model`` relies on ``concept`` for ``target`` in ``direction``.

    Passes when the concept is significant on every layer of ``layers``
    (``require="any"``: on at least one), with its TCAV score inside
    ``score=(low, high)`` on those layers when a range is given.  With
    ``against=`` (a concept or a list of concepts) the check is relative TCAV:
    that ``concept`` raises the target more than the others (their union) do,
    ``random_sets`` then counting its repetitions (docs/statistics.md).  Returns the
    :class:`~pytest_tcav.TCAVResult` so a test can check more.  Knobs left as
    ``None`` take the run's configuration (``tcav_alpha``, ``tcav_random_sets``,
    ``tcav_layer_point``, ``tcav_pooling``, ``tcav_tokenizer`` for ``tokenizer``...).  ``forward_kwargs`` are fixed
    keyword arguments of every call of the model; ``output`` (a key or a
    callable) picks the tensor a class-index target reads from a structured
    output (docs/models-and-inputs.md); ``layer_call=N`` studies the N-th call of a layer's
    module that runs more than once per forward pass (``tcav_layer_call``; none: refused).
    ``null="pseudo"`` (``tcav_null``) judges the concept against pseudo-concepts tested on the
    same random sets instead of the random sets' own spread: calibrated for this library
    (docs/statistics.md, "The conditional null").
    """
    __tracebackhide__ = True
    session = current_session()
    spec = CheckSpec(
        concept=concept, target=target, layers=layers, inputs=inputs, expectation="significant",
        direction=direction, require=require, score=score, against=against, random_sets=random_sets,
        random_pool=random_pool, alpha=alpha, null=null,
        engine=EngineKnobs(method=method, n_steps=n_steps, seed=seed, batch_size=batch_size, layer_point=layer_point,
                           layer_call=layer_call, pooling=pooling, forward_kwargs=forward_kwargs, output=output,
                           tokenizer=tokenizer),
    )
    return check_concept(session, model, settle(spec, session.config))


def assert_concept_insignificant(
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
    tokenizer: Tokenizer | None = None,
    require: Require = "all",
    score: tuple[float, float] | None = None,
    against: ConceptLike | Sequence[ConceptLike] | None = None,
    forward_kwargs: Mapping[str, Any] | None = None,
    output: Output = None,
    layer_point: str | None = None,
    layer_call: int | None = None,
    pooling: str | None = None,
    null: str | None = None,
    margin: float | None = None,
) -> TCAVResult:
    """Assert that ``model`` does not rely on ``concept`` for ``target`` (a shortcut or fairness check).

    Passes when the concept is not significant on any layer of ``layers``
    (``require="any"``: not significant on at least one), with its TCAV score
    inside ``score=(low, high)`` when a range is given.  ``direction`` defaults
    to ``"positive"``, as for :func:`assert_concept_significant`: with the same
    arguments, exactly one of the two passes (inconclusive layers and score
    ranges aside).  ``margin=m`` (or ini ``tcav_margin``) asks for more: the
    data must show the effect below ``m`` random-set spreads (an equivalence
    test, two-sided for ``"either"``).  A layer whose CAVs cannot tell the
    concept from random images fails either way: it shows nothing.
    With ``against=`` it asserts that ``concept`` and the others (their union)
    are not shown to move the target differently (relative TCAV).  ``null="pseudo"``
    (``tcav_null``): judged against pseudo-concepts on the same library, effects and margins
    then in units of their spread.
    """
    __tracebackhide__ = True
    session = current_session()
    spec = CheckSpec(
        concept=concept, target=target, layers=layers, inputs=inputs, expectation="insignificant",
        direction=direction, require=require, score=score, against=against, margin=margin, random_sets=random_sets,
        random_pool=random_pool, alpha=alpha, null=null,
        engine=EngineKnobs(method=method, n_steps=n_steps, seed=seed, batch_size=batch_size, layer_point=layer_point,
                           layer_call=layer_call, pooling=pooling, forward_kwargs=forward_kwargs, output=output,
                           tokenizer=tokenizer),
    )
    return check_concept(session, model, settle(spec, session.config))


def assert_concept_stable(
    model: nn.Module,
    concept: ConceptLike,
    *,
    target: TargetLike,
    layers: Sequence[str] | str,
    baseline: str,
    tolerance: float = DEFAULT_TOLERANCE,
    statistic_tolerance: float = 0.0,
    inputs: ConceptLike | None = None,
    direction: str = "either",
    alpha: float | None = None,
    random_sets: int | Sequence[ConceptLike] | None = None,
    random_pool: ConceptLike | None = None,
    method: str | None = None,
    n_steps: int | None = None,
    seed: int | None = None,
    batch_size: int | None = None,
    tokenizer: Tokenizer | None = None,
    baseline_dir: str | os.PathLike[str] | None = None,
    forward_kwargs: Mapping[str, Any] | None = None,
    output: Output = None,
    layer_point: str | None = None,
    layer_call: int | None = None,
    pooling: str | None = None,
) -> StabilityResult:
    """Assert that ``model`` relies on ``concept`` for ``target`` as it did when ``baseline`` was recorded.

    Measures the concept on ``layers`` and compares each layer with the
    baseline file ``tcav_baselines/<baseline>.yaml`` next to the test file
    (``baseline_dir=`` to put it elsewhere): it fails when a layer's TCAV
    score moved by more than ``tolerance``, or when the distribution of the
    statistic over the random sets shifted significantly (Welch t-test at
    ``alpha``, corrected over the layers; see :func:`compare`).  A missing
    baseline fails; ``pytest --tcav-update-baselines`` writes it.  Returns a
    :class:`StabilityResult` (``.result`` is this run's ``TCAVResult``).
    """
    __tracebackhide__ = True
    session = current_session()
    spec = CheckSpec(
        concept=concept, target=target, layers=layers, inputs=inputs, expectation="stable", direction=direction,
        random_sets=random_sets, random_pool=random_pool, alpha=alpha,
        engine=EngineKnobs(method=method, n_steps=n_steps, seed=seed, batch_size=batch_size, layer_point=layer_point,
                           layer_call=layer_call, pooling=pooling, forward_kwargs=forward_kwargs, output=output,
                           tokenizer=tokenizer),
        stability=StabilitySpec(baseline=baseline, tolerance=tolerance, statistic_tolerance=statistic_tolerance,
                                baseline_dir=baseline_dir),
    )
    return check_stable(session, model, settle(spec, session.config))
