"""A concept check as JUnit XML properties: flat ``(name, value)`` pairs, from one record.

CI systems read JUnit XML (``pytest --junitxml``), not the terminal summary,
and a ``<testcase>``'s ``<property>`` elements are the one place there for
numbers.  The plugin puts these pairs on the running test's
``user_properties`` (pytest's ``record_property`` mechanism), which travel
with the test's report from a pytest-xdist worker to the controller, so a
parallel run writes the same XML as a serial one.

The names are a stable interface (docs/reports.md lists them): ``tcav[I].KEY``
for the I-th check of the test and ``tcav[I].layer[LAYER].KEY`` per layer.
Values are strings, as JUnit XML has them; floats are written with full
precision (``repr``), so two runs that computed the same numbers write the
same text.
"""

from __future__ import annotations

from typing import Any

from pytest_tcav.checks.records import CheckRecord
from pytest_tcav.reports.terminal import layer_verdict, verdict

#: The per-check keys, in the order they are written (``caught`` only for a check whose failure its test
#: caught, ``error``, the exception's type, and ``message`` only when there is one).
CHECK_KEYS = ("concept", "target", "expectation", "direction", "verdict", "outcome", "caught", "error", "message")
#: Keys written only when they have a value.
_OPTIONAL = ("caught", "error", "message")
#: The per-layer keys, in the order they are written (``moved`` only for a stability check).
LAYER_KEYS = ("verdict", "score", "p_value", "p_corrected", "cav_accuracy", "moved")


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return "" if value is None else str(value)


def properties(record: CheckRecord, index: int) -> list[tuple[str, str]]:
    """The properties of the ``index``-th check of a test (``index`` counts its checks, from 0)."""
    prefix = f"tcav[{index}]"
    check = {
        "concept": record.concept,
        "target": record.target,
        "expectation": record.expectation,
        "direction": record.direction,
        "verdict": verdict(record),
        "outcome": record.outcome,
        "caught": True if record.caught else None,  # the outcome stays what the check found
        "error": record.error,
        "message": record.message,
    }
    out = [(f"{prefix}.{key}", _text(check[key])) for key in CHECK_KEYS
           if key not in _OPTIONAL or check[key] is not None]
    compared = {c.layer: c for c in record.stability.layers} if record.stability is not None else {}
    for result in record.results:
        layer = result.layer
        values: dict[str, Any] = {
            "verdict": layer_verdict(result),
            "score": result.score,
            "p_value": result.p_value,
            "p_corrected": result.p_corrected,
            "cav_accuracy": result.cav_accuracy,
        }
        if layer in compared:
            values["moved"] = bool(compared[layer].moved)
        out.extend((f"{prefix}.layer[{layer}].{key}", _text(values[key])) for key in LAYER_KEYS if key in values)
    return out
