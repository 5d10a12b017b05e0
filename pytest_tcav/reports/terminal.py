"""The end-of-run table of concept checks, from the run's records.

Records are :class:`~pytest_tcav.checks.records.CheckRecord` s: those
:meth:`TCAVSession.record` keeps, or those pytest-xdist workers sent (JSON,
read back), so the same code formats a serial run and the merged records of
pytest-xdist workers.  Rows are sorted by test id, then by order within the
test, so a parallel run prints the same table as a serial one.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pytest_tcav.checks.records import CheckRecord
from pytest_tcav.engine.results import LayerResult
from pytest_tcav.tables import format_p, render_table

HEADER = ("test", "concept", "target", "expected", "layers", "score", "p (corr.)", "effect", "detect.", "verdict",
          "result")


def shown_concept(record: CheckRecord) -> str:
    """The concept as reports name it: a relative check's with what it was tested against ("a vs b + c")."""
    against = record.against
    return str(record.concept) + (f" vs {' + '.join(map(str, against))}" if against else "")


def sort_records(records: Iterable[CheckRecord]) -> list[CheckRecord]:
    return sorted(records, key=lambda r: (r.nodeid or "", r.seq))


def layer_verdict(result: LayerResult) -> str:
    """A layer's verdict; a record written before verdicts existed has only ``significant``."""
    return result.verdict or ("significant" if result.significant else "not significant")


def verdict(record: CheckRecord) -> str:
    """What was found, whatever was expected: significant, not significant, or on k of n layers."""
    results = record.results
    if record.outcome == "error" or not results:
        return "error"
    stability = record.stability
    if record.expectation == "stable" and stability is not None:
        # a stability check: what happened to the baseline, not the significance
        if stability.action in ("created", "updated"):
            return f"baseline {stability.action}"
        moved = stability.moved or []
        return f"moved on {len(moved)}/{len(results)}" if moved else "unchanged"
    verdicts = [layer_verdict(r) for r in results]
    if len(set(verdicts)) == 1:
        return verdicts[0]
    counts = [f"{word} on {verdicts.count(word)}/{len(results)}"
              for word in ("significant", "inconclusive") if verdicts.count(word)]
    return ", ".join(counts)


def _number(value: Any) -> str:
    """An effect in the summary: two decimals; n/a for a record written before effects existed."""
    if isinstance(value, str):  # a JSON report writes infinities as strings
        return value
    if not isinstance(value, (int, float)) or value != value:
        return "n/a"
    return f"{value:.2f}"


def row(record: CheckRecord) -> tuple[str, ...]:
    results = record.results
    expected = record.expectation if record.expectation is not None else "?"
    default = "either" if expected == "stable" else "positive"  # the assertions' defaults
    if record.direction and record.direction != default:
        expected += f" ({record.direction})"
    if record.margin is not None:
        expected += f" (margin {record.margin:g})"
    if record.require == "any":
        expected += " (any layer)"
    outcome = {"passed": "passed", "failed": "FAILED", "error": "ERROR"}.get(record.outcome or "", "?")
    if record.xfail and outcome != "passed":
        outcome = "xfailed"  # the check failed inside a test marked as an expected failure
    return (
        record.nodeid or "(outside a test)",
        shown_concept(record),
        str(record.target),
        expected,
        ",".join(record.layers),
        " ".join(f"{r.score:.2f}" for r in results) or "-",
        " ".join(format_p(r.p_corrected) for r in results) or "-",
        " ".join(_number(r.effect) for r in results) or "-",
        " ".join(_number(r.detectable_effect) for r in results) or "-",
        verdict(record),
        outcome,
    )


def summary_lines(records: Iterable[CheckRecord]) -> list[str]:
    """The table's lines (header, rule, one row per check), a closing count, then what each error raised."""
    ordered = sort_records(records)
    if not ordered:
        return []
    lines = render_table([HEADER, *(row(r) for r in ordered)])
    lines.append(count_line(ordered))
    return lines + error_lines(ordered) + calibration_lines(ordered)


def count_line(records: Iterable[CheckRecord]) -> str:
    """``N concept check(s): a passed, b failed, ...``: the closing line of the table."""
    results = [row(r)[-1] for r in records]
    parts = [f"{results.count('passed')} passed"]
    for label, word in (("FAILED", "failed"), ("ERROR", "error(s)"), ("xfailed", "xfailed")):
        if results.count(label):
            parts.append(f"{results.count(label)} {word}")
    return f"{len(results)} concept check(s): {', '.join(parts)}"


def error_text(record: CheckRecord, limit: int = 200) -> str:
    """An error in one line: ``Type: the first line of its message`` (cut at ``limit`` characters)."""
    message = str(record.message or "").strip()
    line = message.splitlines()[0] if message else ""
    if len(line) > limit:
        line = line[: limit - 3] + "..."
    error = record.error
    if not error:
        return line or "error"
    return f"{error}: {line}" if line else str(error)


def error_lines(records: Iterable[CheckRecord]) -> list[str]:
    """For each check that raised before its verdict (sorted as the table): its test and its error."""
    erred = [r for r in sort_records(records) if r.outcome == "error" and not r.xfail]
    if not erred:
        return []
    return ["raised before a verdict:",
            *(f"  {r.nodeid or '(outside a test)'}: {error_text(r)}" for r in erred)]


def calibration_lines(records: Iterable[CheckRecord]) -> list[str]:
    """The measured false-positive rate beside alpha, once per target, direction and layer calibrated."""
    seen: dict[tuple[str, str, str], str] = {}
    for record in records:
        for rate in record.calibration or []:
            key = (str(record.target), str(record.direction), rate.layer)
            share = rate.significant / rate.total if rate.total else 0.0
            above = " ABOVE alpha" if rate.low > rate.alpha else ""
            seen.setdefault(key, f"  target {key[0]}, {key[1]}, {key[2]}: {rate.significant}/{rate.total} "
                                 f"= {100 * share:.1f}% (95% CI {100 * rate.low:.1f}-{100 * rate.high:.1f}%) "
                                 f"at alpha {rate.alpha:g}{above}")
    if not seen:
        return []
    return ["random library's measured false-positive rate (pytest-tcav calibrate):", *seen.values()]
