"""The record of a concept check: the one place that gives it its shape.

A record is the plain dictionary a check hands to ``TCAVSession.record``.
Records are what pytest-xdist workers send to the controller and what every
report renders (the terminal summary, ``--tcav-json``, the HTML report), so
they hold all a report may show, as plain JSON types; docs/reports.md
documents the fields.  The order of the keys is the order of the JSON
report's fields, so the builders below add them in a fixed order.

Every record of a check goes through the same steps: what the test asked
(:func:`check_record`), what was measured (:func:`with_result`), and how it
ended (:func:`finished`, or :func:`failed_to_run` when it raised first).  A stability check adds
its baseline (:func:`stability_info`, :func:`with_comparison`, :func:`with_sides`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_tcav.checks.baseline_file import Baseline
    from pytest_tcav.checks.stability import StabilityResult
    from pytest_tcav.engine.results import TCAVResult


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


def check_record(concept: Any, target: Any, layers: list[str], expectation: str | None, direction: str,
                 require: str | None = "all", score_range: list[float] | None = None) -> dict[str, Any]:
    """The first fields of every record: what the test asked, before anything is measured."""
    return {
        "concept": describe(concept),
        "target": describe(target),
        "layers": layers,
        "expectation": expectation,
        "direction": direction,
        "require": require,
        "score_range": score_range,
    }


def result_fields(result: TCAVResult) -> dict[str, Any]:
    """What a record keeps of a result: every per-layer number, the fingerprints, the settings.

    Records are what crosses from pytest-xdist workers, so they hold all that a
    report may show (per-random-set scores and null statistics included), as
    plain JSON types.
    """
    return {
        "results": [dataclasses.asdict(layer) for layer in result.layers],
        "model_fingerprint": result.model_fingerprint,
        "concept_fingerprint": result.concept_fingerprint,
        "settings": {
            "method": result.method,
            "seed": result.seed,
            "n_random": result.n_random,
            "n_concept_examples": result.n_concept_examples,
            "n_inputs": result.n_inputs,
            "correction": result.correction,
            "null_test": result.null_test,
        },
    }


def with_result(record: dict[str, Any], result: TCAVResult) -> dict[str, Any]:
    """``record`` with what was measured; the concept and target now by their resolved names."""
    out = {**record, "concept": result.concept, "target": result.target, "alpha": result.alpha,
           "margin": result.margin, **result_fields(result)}
    if result.against:  # relative TCAV: what the concept was tested against (absent for the absolute test)
        out["against"] = list(result.against)
    return out


def finished(record: dict[str, Any], outcome: str, message: str | None = None) -> dict[str, Any]:
    """The record of a check that ran: ``passed`` (no message) or ``failed`` (why, in words)."""
    return {**record, "outcome": outcome, "message": message}


def failed_to_run(record: dict[str, Any], message: str, error: str | None = None) -> dict[str, Any]:
    """The record of a check that raised before its verdict: a :class:`~pytest_tcav.errors.TCAVError`
    about its setup, or any exception from the model.

    ``error`` is the exception's type name (``TypeError``, ``ConceptDataError``),
    ``message`` its text, its notes included (:func:`pytest_tcav.checks.raised.error_fields`).
    """
    out = {**record, "outcome": "error", "error": error, "message": message}
    out.setdefault("results", [])
    return out


# -- a stability check's baseline -----------------------------------------------------------------


def stability_info(baseline: Any, tolerance: Any, statistic_tolerance: Any) -> dict[str, Any]:
    """The fields a stability check adds: its (still empty) results and its baseline's account.

    The account (``record["stability"]``) is filled in as the check goes:
    ``path`` and ``baseline`` once the name is checked, ``action`` (``checked``,
    ``created``, ``updated``, ``unchanged``, ``missing`` or ``error``) at the
    end, ``obtained`` when the values of a failing check were written.
    """
    return {
        "results": [],
        "stability": {"baseline": baseline if isinstance(baseline, str) else repr(baseline), "path": None,
                      "action": "error", "tolerance": tolerance, "statistic_tolerance": statistic_tolerance,
                      "model_changed": None, "layers": []},
    }


def with_comparison(info: dict[str, Any], stability: StabilityResult) -> None:
    """Fill the baseline's account (``record["stability"]``) with the comparison, layer by layer."""
    info.update(model_changed=stability.model_changed if stability.before is not None else None,
                layers=[c.to_dict() for c in stability.layers], moved=stability.moved_layers)


def with_sides(record: dict[str, Any], before: Baseline | None, after: Baseline) -> None:
    """The before/after the reports show side by side: layer -> numbers, the baseline's and this run's."""
    record["before"] = _side(before) if before is not None else {}
    record["after"] = _side(after)


def _side(baseline: Baseline) -> dict[str, dict[str, Any]]:
    return {
        layer.layer: {"score": layer.score, "statistic": layer.statistic, "p_value": layer.p_value,
                      "p_corrected": layer.p_corrected, "cav_accuracy": layer.cav_accuracy,
                      "significant": layer.significant, "concept_scores": list(layer.concept_scores),
                      "concept_statistics": list(layer.concept_statistics)}
        for layer in baseline.layers
    }
