"""The run's concept checks as a markdown table (``--tcav-markdown``, the GitHub job summary).

Pull requests, job summaries and code-review tools render markdown, so this
is the form of the terminal summary a reviewer sees without opening a log.
Pure: records in, text out; the plugin decides where the text goes.  Rows are
in the terminal summary's order (test id, then order within the test), so a
pytest-xdist run gives the same text as a serial one.

Everything that comes from tests or data (test ids, concept, target and layer
names, messages) is escaped: a ``|`` would end a table cell and a line break
would end the row; ``<`` and the other markdown punctuation are
backslash-escaped so that a name is shown, never rendered as markup.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from pytest_tcav.checks.records import CheckRecord
from pytest_tcav.reports.terminal import count_line, error_text, layer_verdict, row, sort_records
from pytest_tcav.tables import format_p

TITLE = "TCAV concept checks"
HEADER = ("test", "concept", "target", "expected", "layers: verdict (corrected p)", "result")

_LINE_BREAKS = re.compile(r"\r\n|\r|\n")
#: Markdown punctuation a name may contain that could start markup (CommonMark escapes any of them).
_PUNCTUATION = re.compile(r"([\\`*_\[\]<>|~&])")
_RESULTS = {"passed": "passed", "FAILED": "**failed**", "ERROR": "**error**", "xfailed": "xfailed",
            "caught": "caught by the test"}


def text(value: Any) -> str:
    """User text as the plain content of a table cell: one line, markup escaped."""
    return _PUNCTUATION.sub(r"\\\1", _LINE_BREAKS.sub(" ", str(value)))


def code(value: Any) -> str:
    """User text as a code span in a table cell (test ids and names read best in monospace).

    The fence is one backtick longer than the longest run of backticks
    inside, and ``|`` is escaped, which GitHub-flavoured tables require
    even inside code spans.
    """
    content = _LINE_BREAKS.sub(" ", str(value)).replace("|", "\\|")
    longest = max((len(run) for run in re.findall(r"`+", content)), default=0)
    fence = "`" * (longest + 1)
    if content.startswith("`") or content.endswith("`") or not content.strip():
        content = f" {content} "
    return f"{fence}{content}{fence}"


def _layers(record: CheckRecord) -> str:
    results = record.results
    if not results:
        return "; ".join(code(layer) for layer in record.layers) + ": not measured"
    compared = {c.layer: c for c in record.stability.layers} if record.stability is not None else {}
    parts = []
    for result in results:
        p = result.p_corrected
        cell = f"{code(result.layer)}: {layer_verdict(result)}"
        if isinstance(p, (int, float)) and not isinstance(p, bool):
            cell += f" (p {format_p(float(p))}"
            effect = result.effect
            if isinstance(effect, (int, float)) and not isinstance(effect, bool) and effect == effect:
                cell += f", effect {effect:.2f}"
            cell += ")"
        if result.layer in compared:
            cell += ", moved" if compared[result.layer].moved else ", unchanged"
        parts.append(cell)
    settings = record.settings
    if settings is not None and settings.null in ("pseudo", "relabelings") and settings.null_source:
        parts.append(f"null: {text(settings.null_source)}")  # the random sets are the default: said only otherwise
    return "<br>".join(parts)


def _row(record: CheckRecord) -> list[str]:
    cells = row(record)
    test, concept, target, expected, result = cells[0], cells[1], cells[2], cells[3], cells[-1]
    shown = _RESULTS.get(result, text(result))
    message = error_text(record) if record.outcome == "error" else record.message
    if result in ("FAILED", "ERROR", "caught") and message:  # a caught check: what its test expected
        shown += f": {text(message)}"
    return [code(test), code(concept), code(target), text(expected), _layers(record), shown]


def markdown_summary(records: Iterable[CheckRecord]) -> str:
    """A heading, the count of checks by result, and the table; ``""`` when there is no check."""
    ordered = sort_records(records)
    if not ordered:
        return ""
    lines = [f"## {TITLE}", "", text(count_line(ordered)), "",
             "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines.extend("| " + " | ".join(_row(record)) + " |" for record in ordered)
    return "\n".join(lines) + "\n"
