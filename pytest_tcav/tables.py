"""Plain-text tables and the p-value format: what every layer's output shares.

A leaf (it imports nothing of the package), so that the engine's result table,
the stability check's table, the terminal summary and the reports format
numbers one way without the engine importing the reports.
"""

from __future__ import annotations

from collections.abc import Sequence


def format_p(value: float, places: int = 3) -> str:
    """A p-value for people: ``places`` decimals, scientific below ``10**-places`` (where decimals run out).

    The one p-value format of every table and page; failure tables use 4
    places, so that a p-value near a strict alpha stays readable.
    """
    return f"{value:.1e}" if value < 10.0**-places else f"{value:.{places}f}"


def render_table(rows: Sequence[Sequence[str]]) -> list[str]:
    """Fixed-width lines of a plain-text table: the header, a rule of dashes, then the rows.

    Columns are two spaces apart and left-aligned; no line ends in spaces
    (terminals and CI logs show trailing blanks as noise).
    """
    widths = [max(len(cells[i]) for cells in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(cells, widths)).rstrip() for cells in rows]
    lines.insert(1, "  ".join("-" * w for w in widths).rstrip())
    return lines
