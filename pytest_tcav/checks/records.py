"""The record of a concept check: the one place that gives it its shape.

A record (:class:`CheckRecord`) is what a check hands to ``TCAVSession.record``
and what every report reads: the terminal summary, ``--tcav-json``, the HTML
and markdown reports, the JUnit properties, the baseline account.  Its parts
are typed: the per-layer results (the engine's
:class:`~pytest_tcav.engine.results.LayerResult`), the settings
(:class:`Settings`), a stability check's baseline account
(:class:`StabilityAccount`, :class:`ComparedLayer`, the before/after sides as
:class:`SideLayer`) and the calibration (:class:`~pytest_tcav.checks.calibration.LayerRate`).

A record crosses from pytest-xdist workers as plain JSON types
(:meth:`CheckRecord.to_dict`, :meth:`CheckRecord.from_dict`; the payload
carries :data:`RECORD_VERSION`), and ``to_dict`` is also what the JSON report
copies, field by field: its keys come in the order the report has always
written them (docs/reports.md documents the fields).  A stored report's check
read back (``pytest-tcav report``, ``pytest-tcav diff``) becomes a record again,
old reports included: fields they lack take their defaults, keys this version
does not know are kept in :attr:`CheckRecord.extra`.

Every record of a check goes through the same steps: what the test asked
(:func:`check_record`), what was measured (:func:`with_result`), and how it
ended (:func:`finished`, or :func:`failed_to_run` when it raised first).  A stability check adds
its baseline (:func:`stability_info`, :func:`with_comparison`, :func:`with_sides`).
``pytest-tcav score`` records what it scored with :func:`scored`.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

from pytest_tcav.checks.calibration import LayerRate
from pytest_tcav.engine.results import ExampleIds, LayerResult, describe_null, null_kind

if TYPE_CHECKING:
    from pytest_tcav.checks.baseline_file import Baseline
    from pytest_tcav.engine.results import TCAVResult

#: The version of a record's plain form (:meth:`CheckRecord.to_dict`), sent with the records of a
#: pytest-xdist worker.  It changes when a field is removed or changes meaning.
RECORD_VERSION = 1
#: The outcome of a ``pytest-tcav score`` record: measured, nothing expected.
SCORED = "scored"


def describe(value: Any) -> str:
    """How a record names a concept or target before it is resolved: the name the test gave."""
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    name = getattr(value, "name", None)
    if isinstance(name, str):
        return name
    return _data_label(value) or str(getattr(value, "__qualname__", type(value).__name__))


def _data_label(value: Any) -> str | None:
    """Data given in the test gets the name the engine gives it (``tensor``, ``mapping``...), so a check
    that raised before a result is listed under the same name as one that did not."""
    bases = {cls.__name__ for cls in type(value).__mro__}
    if "Tensor" in bases:
        return "tensor"
    if "DataLoader" in bases:
        return "dataloader"
    if "Dataset" in bases:
        return "dataset"
    if isinstance(value, Mapping):
        return "mapping"
    if isinstance(value, (list, tuple)) and value:
        return "text" if all(isinstance(v, str) for v in value) else "tensors"
    return None


# -- plain values back ------------------------------------------------------------------------

_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def _num(value: Any) -> Any:
    """A number of a stored report back as a float: the JSON report writes non-finite ones as strings."""
    if isinstance(value, str) and value in _NON_FINITE:
        return _NON_FINITE[value]
    return value


def _nums(values: Any) -> Any:
    return [_num(v) for v in values] if isinstance(values, list) else values


def _without_none(data: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in data.items() if value is not None}


# -- the parts of a record --------------------------------------------------------------------

_LAYER_FIELDS = {f.name: f for f in dataclasses.fields(LayerResult)}


def layer_result(data: Mapping[str, Any]) -> LayerResult:
    """A per-layer result as a record holds it, from its plain form: the numbers exactly as stored.

    No number is derived (unlike :class:`LayerResult`'s constructor, which
    computes what an old baseline lacks): a record read back shows what was
    written.  A number an older record lacks is NaN, a list empty; its verdict
    is its significance, as the constructor has it.
    """
    values: dict[str, Any] = {}
    for name, spec in _LAYER_FIELDS.items():
        if name in data:
            value = data[name]
            values[name] = _nums(value) if isinstance(value, list) else _num(value)
        elif spec.default is not dataclasses.MISSING:
            values[name] = spec.default
        elif spec.default_factory is not dataclasses.MISSING:
            values[name] = spec.default_factory()
        else:
            values[name] = {"layer": "?", "significant": False}.get(name, math.nan)
    if not values["verdict"]:
        values["verdict"] = "significant" if values["significant"] else "not significant"
    result = object.__new__(LayerResult)
    for name, value in values.items():
        object.__setattr__(result, name, value)
    return result


def _rate(data: Mapping[str, Any]) -> LayerRate:
    return LayerRate(layer=data["layer"], significant=data["significant"], total=data["total"],
                     alpha=_num(data["alpha"]), low=_num(data["low"]), high=_num(data["high"]))


def _rate_dict(rate: LayerRate) -> dict[str, Any]:
    return {"layer": rate.layer, "significant": rate.significant, "total": rate.total, "alpha": rate.alpha,
            "low": rate.low, "high": rate.high}


@dataclass
class Settings:
    """How a check's numbers were measured (``None``: not in the record)."""

    method: str | None = None
    seed: int | None = None
    n_random: int | None = None
    n_concept_examples: int | None = None
    n_inputs: int | None = None
    correction: str | None = None
    null_test: str | None = None
    #: What the verdict was judged against: "random", "pseudo" or "relabelings" (None: a record of before).
    null: str | None = None
    #: That null in words: "10 random sets", "K = 40 pseudo-concepts (calibration ..., measured ...)", or
    #: "10 relabelings of the examples of 'a' and 'b'".
    null_source: str | None = None
    #: settings of a stored report that this version does not know, kept as they were
    other: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        known = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "other"}
        return {**_without_none(known), **self.other}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Settings:
        names = {f.name for f in dataclasses.fields(cls)} - {"other"}
        return cls(**{k: v for k, v in data.items() if k in names},
                   other={k: v for k, v in data.items() if k not in names})

    def items(self) -> list[tuple[str, Any]]:
        """The settings that are set, in the record's order (what the HTML report lists)."""
        return list(self.to_dict().items())


@dataclass(frozen=True)
class ComparedLayer:
    """One layer of a stability check: the baseline (before) and this run (after), and whether it moved."""

    layer: str
    score_before: float | None = None
    score_after: float | None = None
    statistic_before: float | None = None
    statistic_after: float | None = None
    significant_before: bool | None = None
    significant_after: bool | None = None
    p_value: float | None = None  # Welch's test of the per-random-set statistics
    p_corrected: float | None = None
    score_moved: bool | None = None
    statistic_moved: bool | None = None
    moved: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The comparison's numbers (those it has), in their order."""
        return _without_none(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ComparedLayer:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: _num(v) for k, v in data.items() if k in names})


@dataclass
class StabilityAccount:
    """A stability check's baseline: which file, what was done with it, and how the layers compare.

    Filled in as the check goes: ``path`` and ``baseline`` once the name is
    checked, ``action`` (``checked``, ``created``, ``updated``, ``unchanged``,
    ``missing`` or ``error``) at the end, ``layers`` and ``moved`` once compared,
    ``obtained`` when the values of a failing check were written.
    ``tolerance`` and ``statistic_tolerance`` are as the test gave them until checked.
    """

    baseline: str
    path: str | None = None
    action: str = "error"
    tolerance: Any = None
    statistic_tolerance: Any = None
    model_changed: bool | None = None
    layers: list[ComparedLayer] = field(default_factory=list)
    moved: list[str] | None = None
    obtained: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {"baseline": self.baseline, "path": self.path, "action": self.action, "tolerance": self.tolerance,
               "statistic_tolerance": self.statistic_tolerance, "model_changed": self.model_changed,
               "layers": [c.to_dict() for c in self.layers]}
        if self.moved is not None:
            out["moved"] = list(self.moved)
        if self.obtained is not None:
            out["obtained"] = self.obtained
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StabilityAccount:
        layers = data.get("layers")
        compared = [ComparedLayer.from_dict(c) for c in layers if isinstance(c, Mapping)] \
            if isinstance(layers, list) else []
        moved = data.get("moved")
        return cls(baseline=str(data.get("baseline")), path=data.get("path"), action=data.get("action") or "error",
                   tolerance=_num(data.get("tolerance")), statistic_tolerance=_num(data.get("statistic_tolerance")),
                   model_changed=data.get("model_changed"), layers=compared,
                   moved=[str(m) for m in moved] if isinstance(moved, list) else None, obtained=data.get("obtained"))


@dataclass(frozen=True)
class SideLayer:
    """One layer's numbers on one side of a stability check (the baseline's, or this run's)."""

    score: float | None = None
    statistic: float | None = None
    p_value: float | None = None
    p_corrected: float | None = None
    cav_accuracy: float | None = None
    significant: bool | None = None
    concept_scores: list[float] | None = None
    concept_statistics: list[float] | None = None

    def to_dict(self) -> dict[str, Any]:
        return _without_none(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SideLayer:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: _nums(v) if isinstance(v, list) else _num(v) for k, v in data.items() if k in names})


def sides(value: Any) -> dict[str, SideLayer]:
    """A stability record's ``before`` or ``after`` as layer -> numbers, whatever shape it was stored in.

    Accepted: a dictionary mapping layer names to numbers (a score) or to
    dictionaries (what the checks write), a list of per-layer dictionaries with
    a ``layer`` key (like ``results``), or a dictionary with such a list under
    ``results`` or ``layers``.
    """
    if isinstance(value, Mapping):
        for key in ("results", "layers"):
            if isinstance(value.get(key), list):
                return sides(value[key])
        out: dict[str, SideLayer] = {}
        for layer, numbers in value.items():
            if isinstance(numbers, Mapping):
                out[str(layer)] = SideLayer.from_dict(numbers)
            elif isinstance(_num(numbers), (int, float)) and not isinstance(numbers, bool):
                out[str(layer)] = SideLayer(score=_num(numbers))
        return out
    if isinstance(value, list):
        return {str(item.get("layer", k)): SideLayer.from_dict(item) for k, item in enumerate(value)
                if isinstance(item, Mapping)}
    return {}


# -- the record -------------------------------------------------------------------------------


@dataclass
class CheckRecord:
    """One concept check, as the summary, the reports, JUnit and the pytest-xdist payload carry it.

    ``None`` marks a part the check never reached: ``settings`` (with
    ``alpha``, ``margin``, the fingerprints) until something was measured,
    ``outcome`` until it ended, ``stability`` for a check without a baseline.
    """

    concept: str
    target: str
    layers: list[str]
    expectation: str | None
    direction: str | None
    require: str | None = "all"
    score_range: list[float] | None = None
    #: the pytest node id of the test that made the check (None outside a test), and the order of the
    #: check in its process; set by ``TCAVSession.record``
    nodeid: str | None = None
    seq: int = 0
    #: relative TCAV: what the concept was tested against (None for the test against random sets)
    against: list[str] | None = None
    #: an insignificance check that could not have found an effect of the size asked about: why
    power_warning: str | None = None
    alpha: float | None = None
    margin: float | None = None
    results: list[LayerResult] = field(default_factory=list)
    model_fingerprint: str | None = None
    concept_fingerprint: str | None = None
    settings: Settings | None = None
    #: the random library's measured false-positive rate per layer, when one was looked up
    calibration: list[LayerRate] | None = None
    stability: StabilityAccount | None = None
    before: dict[str, SideLayer] | None = None
    after: dict[str, SideLayer] | None = None
    #: ``passed``, ``failed``, ``error`` (raised before its verdict) or ``scored`` (pytest-tcav score)
    outcome: str | None = None
    #: the exception's type name when the check raised (``TypeError``, ``ConceptDataError``)
    error: str | None = None
    message: str | None = None
    #: a check that failed inside a test marked as an expected failure
    xfail: bool = False
    #: a check that failed (or raised) inside a test that passed: the test caught its failure itself
    #: (``pytest.raises``, a ``try``); ``outcome`` stays what the check found
    caught: bool = False
    #: keys of a stored record that this version does not know, kept as they were
    extra: dict[str, Any] = field(default_factory=dict)
    #: what the examples are called (inputs, concept, random sets), for the per-example numbers of ``results``
    examples: ExampleIds | None = None

    @property
    def measured(self) -> bool:
        return self.settings is not None

    def to_dict(self) -> dict[str, Any]:
        """The record as plain data, in the order of the JSON report's fields (which copies it)."""
        out: dict[str, Any] = {
            "nodeid": self.nodeid, "seq": self.seq, "concept": self.concept, "target": self.target,
            "layers": list(self.layers), "expectation": self.expectation, "direction": self.direction,
            "require": self.require, "score_range": self.score_range,
        }
        results = [dataclasses.asdict(r) for r in self.results]
        measured = self._measured()
        if self.outcome == SCORED:  # pytest-tcav score's own layout: no margin, what it was tested against last
            out.update(alpha=self.alpha, results=results, **measured)
            out.update(outcome=self.outcome, message=self.message)
            if self.against is not None:
                out["against"] = list(self.against)
            return self._closed(out, results)
        if self.stability is not None:  # a stability check: its account comes with its (empty) results
            out.update(results=results, stability=self.stability.to_dict())
            if self.measured:
                out.update(alpha=self.alpha, margin=self.margin, **measured)
        if self.against is not None:
            out["against"] = list(self.against)
        if self.power_warning is not None:
            out["power_warning"] = self.power_warning
        if self.stability is None and self.measured:
            out.update(alpha=self.alpha, margin=self.margin, results=results, **measured)
        if self.calibration is not None:
            out["calibration"] = [_rate_dict(rate) for rate in self.calibration]
        if self.before is not None:
            out["before"] = {layer: side.to_dict() for layer, side in self.before.items()}
        if self.after is not None:
            out["after"] = {layer: side.to_dict() for layer, side in self.after.items()}
        if self.outcome is not None or self.message is not None:
            out["outcome"] = self.outcome
            if self.outcome == "error" or self.error is not None:
                out["error"] = self.error
            out["message"] = self.message
        return self._closed(out, results)

    def _measured(self) -> dict[str, Any]:
        if self.settings is None:
            return {}
        return {"model_fingerprint": self.model_fingerprint, "concept_fingerprint": self.concept_fingerprint,
                "settings": self.settings.to_dict()}

    def _closed(self, out: dict[str, Any], results: list[dict[str, Any]]) -> dict[str, Any]:
        out.setdefault("results", results)  # a check that raised before it measured anything: after its error
        if self.examples is not None:
            out["examples"] = dataclasses.asdict(self.examples)
        for key, value in self.extra.items():
            out.setdefault(key, value)
        if self.xfail:
            out["xfail"] = True
        if self.caught:
            out["caught"] = True
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CheckRecord:
        """A record from its plain form: a pytest-xdist worker's, or a stored report's check (see :func:`stored`)."""
        settings = data.get("settings")
        stability = data.get("stability")
        calibration = data.get("calibration")
        against = data.get("against")
        score_range = data.get("score_range")
        return cls(
            concept=str(data.get("concept", "?")), target=str(data.get("target", "?")),
            layers=[str(layer) for layer in data.get("layers") or []], expectation=data.get("expectation"),
            direction=data.get("direction"), require=data.get("require"),
            score_range=_nums(score_range) if isinstance(score_range, list) else score_range,
            nodeid=data.get("nodeid"), seq=int(data.get("seq") or 0),
            against=[str(a) for a in against] if isinstance(against, list) else None,
            power_warning=data.get("power_warning"), alpha=_num(data.get("alpha")), margin=_num(data.get("margin")),
            results=[layer_result(r) for r in data.get("results") or [] if isinstance(r, Mapping)],
            model_fingerprint=data.get("model_fingerprint"), concept_fingerprint=data.get("concept_fingerprint"),
            settings=Settings.from_dict(settings) if isinstance(settings, Mapping) else None,
            calibration=[_rate(r) for r in calibration if isinstance(r, Mapping)]
            if isinstance(calibration, list) else None,
            stability=StabilityAccount.from_dict(stability) if isinstance(stability, Mapping) else None,
            before=sides(data["before"]) if "before" in data else None,
            after=sides(data["after"]) if "after" in data else None,
            outcome=data.get("outcome"), error=data.get("error"), message=data.get("message"),
            xfail=bool(data.get("xfail")), caught=bool(data.get("caught")),
            extra={k: v for k, v in data.items() if k not in _KNOWN},
            examples=ExampleIds.from_dict(data["examples"]) if isinstance(data.get("examples"), Mapping) else None,
        )


_KNOWN = {f.name for f in dataclasses.fields(CheckRecord)} - {"extra"}


def payload(records: Iterable[CheckRecord]) -> dict[str, Any]:
    """What a pytest-xdist worker sends of its records: plain JSON types, with the version of their form."""
    return {"version": RECORD_VERSION, "records": [record.to_dict() for record in records]}


def from_payload(data: Mapping[str, Any]) -> list[CheckRecord]:
    """A worker's records back (:func:`payload`); a worker of another version is an error, said plainly."""
    version = data.get("version")
    if version != RECORD_VERSION:
        raise ValueError(f"a pytest-xdist worker sent check records of version {version!r}; this pytest-tcav "
                         f"reads version {RECORD_VERSION} (are the workers running another pytest-tcav?)")
    return [CheckRecord.from_dict(record) for record in data.get("records") or []]


# -- building a record, step by step ----------------------------------------------------------


def check_record(concept: Any, target: Any, layers: list[str], expectation: str | None, direction: str,
                 require: str | None = "all", score_range: list[float] | None = None) -> CheckRecord:
    """The first fields of every record: what the test asked, before anything is measured."""
    return CheckRecord(concept=describe(concept), target=describe(target), layers=layers, expectation=expectation,
                       direction=direction, require=require, score_range=score_range)


def null_words(record: CheckRecord) -> tuple[str, str]:
    """What a check's null is made of, as a plural and as one of them: random sets, pseudo-concepts, or a
    relative check's relabelings of its concepts (never "random sets" there)."""
    kind = record.settings.null if record.settings is not None else None
    if record.against or kind == "relabelings":
        return "relabelings", "relabeling"
    if kind == "pseudo":
        return "pseudo-concepts", "pseudo-concept"
    return "random sets", "random set"


def _settings(result: TCAVResult) -> Settings:
    return Settings(method=result.method, seed=result.seed, n_random=result.n_random,
                    n_concept_examples=result.n_concept_examples, n_inputs=result.n_inputs,
                    correction=result.correction, null_test=result.null_test, null=null_kind(result),
                    null_source=describe_null(result))


def _layers(result: TCAVResult) -> list[LayerResult]:
    """The result's layers, copied: a record holds all a report may show (per-random-set numbers too)."""
    return [layer_result(dataclasses.asdict(layer)) for layer in result.layers]


def with_result(record: CheckRecord, result: TCAVResult) -> CheckRecord:
    """``record`` with what was measured; the concept and target now by their resolved names."""
    return replace(record, concept=result.concept, target=result.target, alpha=result.alpha, margin=result.margin,
                   results=_layers(result), model_fingerprint=result.model_fingerprint,
                   concept_fingerprint=result.concept_fingerprint, settings=_settings(result),
                   against=list(result.against) if result.against else record.against, examples=result.examples)


def scored(index: int, result: TCAVResult, layers: list[str], direction: str) -> CheckRecord:
    """The record of a concept ``pytest-tcav score`` scored: what was measured, nothing expected."""
    return CheckRecord(concept=result.concept, target=result.target, layers=layers, expectation=None,
                       direction=direction, require=None, seq=index, alpha=result.alpha, results=_layers(result),
                       model_fingerprint=result.model_fingerprint, concept_fingerprint=result.concept_fingerprint,
                       settings=_settings(result), outcome=SCORED,
                       against=list(result.against) if result.against else None, examples=result.examples)


def finished(record: CheckRecord, outcome: str, message: str | None = None) -> CheckRecord:
    """The record of a check that ran: ``passed`` (no message) or ``failed`` (why, in words)."""
    return replace(record, outcome=outcome, message=message)


def failed_to_run(record: CheckRecord, message: str, error: str | None = None) -> CheckRecord:
    """The record of a check that raised before its verdict: a :class:`~pytest_tcav.errors.TCAVError`
    about its setup, or any exception from the model.

    ``error`` is the exception's type name (``TypeError``, ``ConceptDataError``),
    ``message`` its text, its notes included (:func:`pytest_tcav.checks.raised.error_fields`).
    """
    return replace(record, outcome="error", error=error, message=message)


# -- a stability check's baseline -----------------------------------------------------------------


def stability_info(baseline: Any, tolerance: Any, statistic_tolerance: Any) -> StabilityAccount:
    """A stability check's (still empty) baseline account, the record's ``stability``."""
    return StabilityAccount(baseline=baseline if isinstance(baseline, str) else repr(baseline),
                            tolerance=tolerance, statistic_tolerance=statistic_tolerance)


class _Comparison(Protocol):
    """What :func:`with_comparison` reads of a :class:`~pytest_tcav.checks.stability.StabilityResult`."""

    @property
    def before(self) -> object: ...
    @property
    def model_changed(self) -> bool: ...
    @property
    def layers(self) -> Sequence[Any]: ...  # LayerComparison: their to_dict() is the comparison's plain form
    @property
    def moved_layers(self) -> list[str]: ...


def with_comparison(info: StabilityAccount, stability: _Comparison) -> None:
    """Fill the baseline's account (the record's ``stability``) with the comparison, layer by layer."""
    info.model_changed = stability.model_changed if stability.before is not None else None
    info.layers = [ComparedLayer.from_dict(c.to_dict()) for c in stability.layers]
    info.moved = list(stability.moved_layers)


def with_sides(record: CheckRecord, before: Baseline | None, after: Baseline) -> None:
    """The before/after the reports show side by side: layer -> numbers, the baseline's and this run's."""
    record.before = _side(before) if before is not None else {}
    record.after = _side(after)


def _side(baseline: Baseline) -> dict[str, SideLayer]:
    return {
        layer.layer: SideLayer(score=layer.score, statistic=layer.statistic, p_value=layer.p_value,
                               p_corrected=layer.p_corrected, cav_accuracy=layer.cav_accuracy,
                               significant=layer.significant, concept_scores=list(layer.concept_scores),
                               concept_statistics=list(layer.concept_statistics))
        for layer in baseline.layers
    }
