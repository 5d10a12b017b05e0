"""``pytest-tcav diff OLD.json NEW.json``: what changed between two runs, with an exit status to gate on.

The comparison itself is :mod:`pytest_tcav.reports.diff` (pure: reports in,
text out); this module reads the files, picks the output format and passes
the comparison the statistics of ``assert_concept_stable``
(:func:`~pytest_tcav.checks.stability.welch_p` and the layer correction), so a
diff of two reports and a stability check of the same two runs apply one rule.
"""

from __future__ import annotations

import argparse
import json
import math
from typing import Any, TextIO

from pytest_tcav.cli.stored import load_report
from pytest_tcav.cli.usage import UsageError

EPILOG = """\
examples:
  pytest-tcav diff main/tcav.json tcav.json              # a table of what changed
  pytest-tcav diff main/tcav.json tcav.json --markdown > comment.md
  pytest-tcav diff main/tcav.json tcav.json --json | jq '.checks[] | select(.change == "verdict")'

Checks are matched by test id, concept and target, layers by name.  A layer
"moved" when its TCAV score changed by more than --tolerance where the concept
is significant in either run, or its per-random-set statistics shifted (Welch
t-test, corrected over the check's layers, p below the check's alpha): the rule
of assert_concept_stable (docs/baselines.md).
Exit status: 0 nothing changed, 1 something changed, 2 usage error (an
unreadable or invalid report).
"""


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if math.isnan(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {text!r}")
    return value


def add_diff_parser(commands: Any) -> None:
    from pytest_tcav.reports.diff import DEFAULT_TOLERANCE

    parser = commands.add_parser(
        "diff", help="compare two --tcav-json reports: changed verdicts, moved effects, new and gone checks",
        description="Compare two JSON reports check by check: verdicts that changed, effects that moved "
                    "beyond the run-to-run noise, checks that appeared or vanished.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("old", metavar="OLD.json", help="the reference report (e.g. the main branch's)")
    parser.add_argument("new", metavar="NEW.json", help="the report to compare with it (e.g. the candidate's)")
    form = parser.add_mutually_exclusive_group()
    form.add_argument("--markdown", action="store_true", help="a markdown table, for a pull-request comment")
    form.add_argument("--json", action="store_true", help="the diff as JSON, for machines")
    parser.add_argument("--all", action="store_true", help="list unchanged checks too (--json always does)")
    parser.add_argument("--tolerance", type=_fraction, default=DEFAULT_TOLERANCE, metavar="T",
                        help=f"how far a TCAV score may move on a significant layer (default {DEFAULT_TOLERANCE})")
    parser.add_argument("--statistic-tolerance", type=_fraction, default=0.0, metavar="S",
                        help="smallest change of the mean statistic that counts as a shift (default 0)")


def run_diff(args: argparse.Namespace, stdout: TextIO) -> int:
    """``pytest-tcav diff``: 0 when nothing changed, 1 when something did; :class:`UsageError` for a bad file."""
    old = load_report(args.old)
    new = load_report(args.new)
    if args.tolerance > 1:
        raise UsageError(f"--tolerance must be between 0 and 1 (TCAV scores are fractions), got {args.tolerance}")

    from pytest_tcav.checks.stability import layer_moved, welch_p
    from pytest_tcav.engine.statistics import adjust_p_values
    from pytest_tcav.errors import ConfigurationError
    from pytest_tcav.reports import diff

    try:
        result = diff.diff_reports(old, new, welch=welch_p, adjust=adjust_p_values, moved=layer_moved,
                                   tolerance=args.tolerance,
                                   statistic_tolerance=args.statistic_tolerance, old_name=args.old,
                                   new_name=args.new)
    except ConfigurationError as exc:  # a report whose checks name an unknown correction
        raise UsageError(f"cannot compare the reports: {exc}") from None
    if args.json:
        stdout.write(json.dumps(diff.to_json(result), indent=2, allow_nan=False) + "\n")
    elif args.markdown:
        stdout.write(diff.render_markdown(result, everything=args.all))
    else:
        stdout.write(diff.render_text(result, everything=args.all))
    return 1 if result.changed else 0
