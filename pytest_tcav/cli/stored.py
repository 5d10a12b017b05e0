"""Stored reports: reading a ``--tcav-json`` file back, and ``pytest-tcav report IN.json --html OUT.html``.

CI keeps the JSON report as an artifact (small, diffable, machine-readable)
and renders the page later, or on another machine, from it: the page is drawn
from the report alone, so it is the one ``--tcav-html`` would have written in
the run.  A file that is not a report is a usage error (exit status 2) named
here, before any renderer meets a missing key; a report that is one is read back as a
:class:`~pytest_tcav.reports.json.StoredReport`, whose checks are records again.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from pytest_tcav.cli.usage import PROG, UsageError

if TYPE_CHECKING:
    from pytest_tcav.reports.json import StoredReport

#: Keys every check and every layer result has (docs/report.schema.json's ``required``).
CHECK_KEYS = ("id", "test", "index", "concept", "target", "outcome", "status", "verdict", "results")
LAYER_KEYS = ("layer", "score", "p_value", "p_corrected", "cav_accuracy", "significant")


def load_report(path: str | Path) -> StoredReport:
    """A report read back and checked against the schema's required keys; :class:`UsageError` if it is none."""
    from pytest_tcav.reports.json import StoredReport, load

    shown = str(path)
    try:
        report = load(Path(path))
    except FileNotFoundError:
        raise UsageError(f"{shown}: no such file") from None
    except OSError as exc:
        raise UsageError(f"{shown}: cannot read it ({type(exc).__name__}: {exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise UsageError(f"{shown}: not a pytest-tcav report (not UTF-8 text)") from None
    except ValueError as exc:  # json.JSONDecodeError is one; load's own schema and version checks too
        text = str(exc) if str(exc).startswith(shown) else f"{shown}: not valid JSON ({exc})"
        raise UsageError(text) from None
    checks = report.get("checks")
    if not isinstance(checks, list):
        raise UsageError(f"{shown}: a pytest-tcav report without a list of checks")
    for n, check in enumerate(checks):
        missing = [key for key in CHECK_KEYS if not isinstance(check, dict) or key not in check]
        if not missing and not isinstance(check["results"], list):
            missing = ["results (a list)"]
        if not missing:
            for layer in check["results"]:
                missing = [f"results[].{key}" for key in LAYER_KEYS if not isinstance(layer, dict) or key not in layer]
                if missing:
                    break
        if missing:
            raise UsageError(f"{shown}: check {n} lacks {', '.join(missing)}; is it a pytest-tcav report?")
    return StoredReport.from_dict(report)


def add_report_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "report", help="render a stored --tcav-json report as an HTML page",
        description="Render a JSON report (pytest --tcav-json, pytest-tcav score --json) as the "
                    "self-contained HTML page --tcav-html writes.",
        epilog="example:\n  pytest-tcav report reports/tcav.json --html reports/tcav.html\n\n"
               "Exit status: 0 written, 1 the page could not be written, 2 usage error "
               "(an unreadable or invalid report).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("report", metavar="IN.json", help="a report written by --tcav-json or score --json")
    parser.add_argument("--html", required=True, metavar="OUT.html", help="the page to write")


def run_report(args: argparse.Namespace, stdout: TextIO) -> int:
    """``pytest-tcav report``: raises :class:`UsageError` for a bad report, ``OSError`` when writing fails."""
    report = load_report(args.report)
    from pytest_tcav.reports.html import write_html

    stdout.write(f"HTML report: {write_html(Path(args.html).expanduser().resolve(), report)}\n")
    return 0


__all__ = ["PROG", "add_report_parser", "load_report", "run_report"]
