"""The end-of-run table of concept checks, from the run's records.

Records are :class:`~pytest_tcav.checks.records.CheckRecord` s: those
:meth:`TCAVSession.record` keeps, or those pytest-xdist workers sent (JSON,
read back), so the same code formats a serial run and the merged records of
pytest-xdist workers.  Rows are sorted by test id, then by order within the
test, so a parallel run prints the same table as a serial one.

The table fits the terminal (:func:`fitted`): wider than the terminal, it
leaves out columns in the order of :data:`DROP_ORDER` and shortens test ids in
the middle (:func:`short_test_id`); ``-v``, and the JSON, HTML and markdown
reports, have every column and the whole ids.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Sequence
from typing import Any

from pytest_tcav.checks.records import CheckRecord
from pytest_tcav.engine.results import LayerResult
from pytest_tcav.tables import format_p, render_table

HEADER = ("test", "concept", "target", "expected", "layers", "score", "p (corr.)", "effect", "detect.", "verdict",
          "result")
#: The columns a summary wider than the terminal leaves out, first to last; the others (test, concept,
#: verdict, result) always stay.
DROP_ORDER = ("detect.", "effect", "p (corr.)", "score", "layers", "expected", "target")
#: What stands for the part of a test id (or a line) left out.
ELLIPSIS = "..."
#: The table's column separator (:func:`pytest_tcav.tables.render_table`).
_GAP = 2


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


def result_label(record: CheckRecord) -> str:
    """The summary's result column: passed, FAILED, ERROR, xfailed (a failed check inside a test marked as an
    expected failure) or caught (a failed check inside a test that passed: the test caught the failure)."""
    outcome = {"passed": "passed", "failed": "FAILED", "error": "ERROR"}.get(record.outcome or "", "?")
    if outcome in ("FAILED", "ERROR"):
        if record.caught:
            return "caught"
        if record.xfail:
            return "xfailed"
    return outcome


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
    outcome = result_label(record)
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


def summary_lines(records: Iterable[CheckRecord], width: int | None = None) -> list[str]:
    """The table's lines (header, rule, one row per check), a closing count, then what each error raised.

    ``width``: the terminal's, which every line then fits (:func:`fitted`); ``None``: the whole table.
    """
    ordered = sort_records(records)
    if not ordered:
        return []
    header, rows, dropped = fitted([row(r) for r in ordered], width)
    lines = render_table([header, *rows])
    lines.append(count_line(ordered))
    if dropped:
        lines.extend(_wrapped(f"(left out to fit {width} columns: {', '.join(dropped)}; -v shows every column)",
                              width))
    lines = lines + error_lines(ordered, width) + calibration_lines(ordered, width)
    return [line if width is None or len(line) <= width else _elide(line, width) for line in lines]


def fitted(rows: Sequence[Sequence[str]], width: int | None) -> tuple[tuple[str, ...], list[tuple[str, ...]],
                                                                      list[str]]:
    """The table's header and rows made to fit ``width`` columns, and the names of the columns left out.

    Columns go in the order of :data:`DROP_ORDER` until the test column has
    room for every test's name whole (its function, with at least a little of
    its parameters, see :func:`name_floor`); then the test ids are
    shortened to the room left (:func:`short_test_id`), the path first.  When
    even test, concept, verdict and result alone are too wide, the test ids
    take what is left.  ``width`` ``None``: everything, unchanged.
    """
    columns = list(HEADER)
    tests = [cells[0] for cells in rows]
    if width is None or _table_width(columns, [HEADER, *rows]) <= width:
        return HEADER, [tuple(cells) for cells in rows], []
    floor = max(len(HEADER[0]), *(name_floor(test) for test in tests))
    dropped: list[str] = []
    for name in DROP_ORDER:
        if _room_for_tests(columns, rows, width) >= floor:
            break
        columns.remove(name)
        dropped.append(name)
    keep = [HEADER.index(name) for name in columns]
    short = short_test_ids(tests, max(len(HEADER[0]), _room_for_tests(columns, rows, width)))
    shown = [tuple(short[n] if k == 0 else cells[k] for k in keep) for n, cells in enumerate(rows)]
    return tuple(columns), shown, dropped


def short_test_ids(nodeids: Sequence[str], width: int) -> list[str]:
    """The test ids of a column ``width`` wide, shortened alike: when one is too long, every path is
    shortened to the same room (the longest test name's leftover), or, with no room for a bit of a path
    beside every name, every path is left out; then each is shortened as :func:`short_test_id` does."""
    if all(len(nodeid) <= width for nodeid in nodeids):
        return list(nodeids)
    parts = [_split_test_id(nodeid) for nodeid in nodeids]
    room = width - max(len(sep) + len(name) + len(params) for _path, sep, name, params in parts)
    if room > len(ELLIPSIS):
        return [short_test_id(_elide_path(path, room) + sep + name + params, width)
                for path, sep, name, params in parts]
    return [short_test_id(name + params, width) for _path, _sep, name, params in parts]


def _table_width(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> int:
    keep = [HEADER.index(name) for name in columns]
    return sum(max(len(cells[k]) for cells in rows) for k in keep) + _GAP * (len(keep) - 1)


def _room_for_tests(columns: Sequence[str], rows: Sequence[Sequence[str]], width: int) -> int:
    """What the test column may take of ``width`` beside the other ``columns``."""
    others = [name for name in columns if name != HEADER[0]]
    return width - _table_width(others, [HEADER, *rows]) - _GAP


def _split_test_id(nodeid: str) -> tuple[str, str, str, str]:
    """``path::Class::name[params]`` -> ``(path, "::", "Class::name", "[params]")`` (parts may be empty)."""
    path, sep, name = nodeid.partition("::")
    if not sep:
        path, name = "", nodeid
    bracket = name.find("[")
    if bracket > 0 and name.endswith("]"):
        return path, sep, name[:bracket], name[bracket:]
    return path, sep, name, ""


def name_floor(nodeid: str) -> int:
    """How narrow a test id may get with its test's name whole: the function (and class) name, and its
    parameters shortened to a few characters around :data:`ELLIPSIS`."""
    _path, _sep, name, params = _split_test_id(nodeid)
    return min(len(nodeid), len(name) + (min(len(params), len(ELLIPSIS) + 4) if params else 0))


def short_test_id(nodeid: str, width: int) -> str:
    """``nodeid`` in at most ``width`` characters, shortened where it says least.

    First the middle of the path (``tests/pl...summary.py::test_x[a-b]``),
    then the whole path (``test_x[a-b]``), then the middle of the parameters
    (``test_x[a...b]``); the test's function name stays whole while it fits,
    and only then is the id cut in its middle.
    """
    if len(nodeid) <= width:
        return nodeid
    path, sep, name, params = _split_test_id(nodeid)
    room = width - len(sep) - len(name) - len(params)
    if path and room > len(ELLIPSIS):  # some of the path beside the ellipsis
        return _elide_path(path, room) + sep + name + params
    if len(name) + len(params) <= width:
        return name + params
    if params and width - len(name) - 2 > len(ELLIPSIS):  # the function, its parameters' ends
        return name + "[" + _elide(params[1:-1], width - len(name) - 2) + "]"
    return _elide(name + params, width)


def _elide_path(path: str, width: int) -> str:
    """A test file's path in ``width`` characters: its first folder (when there is room for it and for a
    dozen characters of the rest), :data:`ELLIPSIS`, then as much of its end (the file name) as fits."""
    if len(path) <= width:
        return path
    first = path[: path.find("/") + 1]
    head = first if first and len(first) + len(ELLIPSIS) + 12 <= width else ""
    return head + ELLIPSIS + path[len(path) - (width - len(head) - len(ELLIPSIS)):]


def _elide(text: str, width: int) -> str:
    """``text`` in ``width`` characters, its middle replaced by :data:`ELLIPSIS`."""
    if len(text) <= width:
        return text
    if width <= len(ELLIPSIS):
        return text[:width]
    room = width - len(ELLIPSIS)
    tail = room // 2
    return text[: room - tail] + ELLIPSIS + text[len(text) - tail:]


def _wrapped(text: str, width: int | None, indent: str = "") -> list[str]:
    """``text`` as lines of at most ``width`` characters (``None``: one line), continued with more indent."""
    if width is None or len(text) <= width:
        return [text]
    return textwrap.wrap(text, width, subsequent_indent=indent + "    ", break_long_words=True,
                         break_on_hyphens=False)


def count_line(records: Iterable[CheckRecord]) -> str:
    """``N concept check(s): a passed, b failed, ...``: the closing line of the table."""
    results = [result_label(r) for r in records]
    parts = [f"{results.count('passed')} passed"]
    for label, word in (("FAILED", "failed"), ("ERROR", "error(s)"), ("xfailed", "xfailed"),
                        ("caught", "caught by their tests")):
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


def error_lines(records: Iterable[CheckRecord], width: int | None = None) -> list[str]:
    """For each check that raised before its verdict (sorted as the table): its test and its error.

    Checks whose error their test expected (an expected failure, or caught by
    the test) are left out.  With ``width``, a line is its test id (shortened
    to at most half the width) and as much of the error as fits.
    """
    erred = [r for r in sort_records(records) if r.outcome == "error" and not r.xfail and not r.caught]
    if not erred:
        return []
    lines = ["raised before a verdict:"]
    for record in erred:
        test = record.nodeid or "(outside a test)"
        if width is None:
            lines.append(f"  {test}: {error_text(record)}")
            continue
        test = short_test_id(test, max(len(ELLIPSIS) + 1, width // 2))
        limit = max(len(ELLIPSIS) + 1, width - len(test) - 4)
        text = error_text(record)
        lines.append(f"  {test}: {text if len(text) <= limit else text[:limit - len(ELLIPSIS)] + ELLIPSIS}")
    return lines


def calibration_lines(records: Iterable[CheckRecord], width: int | None = None) -> list[str]:
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
    head = "random library's measured false-positive rate (pytest-tcav calibrate):"
    return [line for text in (head, *seen.values()) for line in _wrapped(text, width, indent="  ")]
