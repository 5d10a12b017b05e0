"""pytest glue of the reports: ``--tcav-json`` / ``--tcav-html`` / ``--tcav-markdown``, the GitHub
job summary, and the checks as JUnit XML properties.

Kept out of :mod:`.plugin` so that the plugin only calls a few functions.
Report files are written by the process that prints the summary: the only
process of a serial run, the controller of a pytest-xdist run (whose records
are the workers' records, received through :mod:`pytest_tcav.plugin.xdist`),
never a worker, so two processes never write the same file.  The JUnit
properties go the other way: they are put on the running test where the check
ran (a worker, under xdist) and travel with its report.  Nothing here imports
torch unless a report was asked for.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_tcav.atomic_files import atomic_write_text
from pytest_tcav.config import Option
from pytest_tcav.plugin import xdist

if TYPE_CHECKING:
    from pytest_tcav.checks.records import CheckRecord

#: The part of a pytest-xdist worker's payload with its environment (its device, its torch), sent when
#: reports are asked for.
ENV_PART = "environment"

REPORT_OPTIONS: tuple[Option, ...] = (
    Option("tcav_json", "write every concept check as JSON to this file (pytest-tcav/report, version 1)",
           "PATH"),
    Option("tcav_html", "write a self-contained HTML report of every concept check to this file (plots "
           "need matplotlib: pip install 'pytest-tcav[report]')", "PATH"),
    Option("tcav_markdown", "write every concept check as a markdown table to this file (not written when "
           "no concept check ran)", "PATH"),
)
#: The kind of each report option's file, in the order of REPORT_OPTIONS.
REPORT_KINDS = ("json", "html", "markdown")

#: The ini switch of the GitHub job summary: append the markdown table to $GITHUB_STEP_SUMMARY.
GITHUB_SUMMARY_INI = "tcav_github_summary"
GITHUB_SUMMARY_ENV = "GITHUB_STEP_SUMMARY"

#: On a test item: how many of its concept checks are on its user_properties already.
_ATTACHED_KEY = pytest.StashKey[int]()
#: On a test item: how many of its concept checks were made before its last phase (setup, call, teardown) ended.
_PHASED_KEY = pytest.StashKey[int]()


@dataclass(frozen=True)
class Written:
    """One report file: what it is, where it went, or why it could not be written."""

    kind: str  # "JSON report", "HTML report", "markdown summary", "GitHub job summary"
    path: Path
    error: str | None = None


def add_options(group: Any, parser: Any) -> None:
    """Register the options and their ini keys (paths in the ini file are relative to it)."""
    for option in REPORT_OPTIONS:
        group.addoption(option.flag, dest=option.key, metavar=option.metavar, default=None,
                        help=f"{option.help}. ini: {option.key}")
        parser.addini(option.key, help=option.help, type="string", default=None)
    parser.addini(GITHUB_SUMMARY_INI, type="bool", default=True,
                  help=f"append the markdown table of the concept checks to the file named by ${GITHUB_SUMMARY_ENV} "
                       "when that variable is set, as on GitHub Actions (default: true)")


def report_paths(config: Any) -> dict[str, Path]:
    """Requested report files, ``{"json": path, "html": path, "markdown": path}``, absolute.

    A command-line path is relative to the directory pytest was started from,
    an ini path to the ini file's directory, as for the other ``tcav_*`` paths.
    """
    paths: dict[str, Path] = {}
    inipath = getattr(config, "inipath", None)
    root = Path(inipath).parent if inipath is not None else Path(config.rootpath)
    for option, kind in zip(REPORT_OPTIONS, REPORT_KINDS):
        value = config.getoption(option.key, None)
        if value is not None and str(value).strip():
            paths[kind] = Path(config.invocation_params.dir, str(value).strip()).resolve()
            continue
        ini = config.getini(option.key)
        if ini and str(ini).strip():
            paths[kind] = (root / str(ini).strip()).resolve()
    return paths


def worker_environment(config: Any, handle: Any) -> dict[str, Any] | None:
    """On a worker that ran concept checks, when a report is asked for: its environment.

    The workers ran the checks, so their device is the one to report (with
    several GPUs each worker has its own), and they have torch imported
    already; the controller has not, and need not import it.
    """
    if not {"json", "html"}.intersection(report_paths(config)) or not handle.built:
        return None
    from pytest_tcav.reports.json import environment

    return environment(str(handle.get().device))


def run_environment(config: Any, handle: Any) -> dict[str, Any]:
    """The report's environment: the workers' (their devices merged) under xdist, else this process's."""
    from pytest_tcav.reports.json import environment

    workers: dict[str, dict[str, Any]] = xdist.by_worker(config, ENV_PART)
    if workers:
        env = dict(workers[sorted(workers)[0]])
        devices = {worker: str(env_.get("device")) for worker, env_ in sorted(workers.items())}
        env["device"] = ", ".join(sorted(set(devices.values())))
        env["workers"] = devices
        return env
    return environment(str(handle.get().device) if handle.built else None)


def write_reports(config: Any, records: list[CheckRecord], handle: Any,
                  exitstatus: int | None) -> list[Written]:
    """Write the requested reports from the run's records; errors are returned, not raised.

    A report that cannot be written (a read-only folder, a path that is a
    directory, or a record it cannot render) must not turn a finished test run
    into an internal error: the summary says what went wrong instead, in red.
    """
    paths = report_paths(config)
    written = []
    documents = {kind: path for kind, path in paths.items() if kind in ("json", "html")}
    if documents:
        from pytest_tcav.reports.json import build_report, config_settings, write_json

        report = build_report(records, env=run_environment(config, handle),
                              settings=config_settings(handle.config), exitstatus=exitstatus, generator="pytest")
        writers = {"json": write_json, "html": _write_html}
        for kind, path in documents.items():
            written.append(_write(f"{kind.upper()} report", path, partial(writers[kind], path, report)))
    written.extend(write_markdown(config, records, paths.get("markdown")))
    return written


def _write_html(path: Path, report: dict[str, Any]) -> Path:
    from pytest_tcav.reports.html import write_html

    return write_html(path, report)


def _write(kind: str, path: Path, write: Callable[[], object]) -> Written:
    try:
        write()
    except Exception as exc:  # noqa: BLE001 - said in red in the summary; the tests' outcome stands
        return Written(kind, path, f"{type(exc).__name__}: {exc}")
    return Written(kind, path)


def github_summary_path(config: Any) -> Path | None:
    """The GitHub job summary file to append to: ``$GITHUB_STEP_SUMMARY``, unless switched off in the ini file."""
    value = os.environ.get(GITHUB_SUMMARY_ENV, "").strip()
    if not value or not config.getini(GITHUB_SUMMARY_INI):
        return None
    return Path(value)


def write_markdown(config: Any, records: list[CheckRecord], path: Path | None) -> list[Written]:
    """The markdown table: to ``--tcav-markdown`` (atomically) and appended to the GitHub job summary.

    Nothing is written when no concept check ran: a job summary of a run
    without concept tests should not carry an empty table.  The job summary
    is appended to in one write of the whole block, since other steps (and
    other pytest runs of the same job) add to the same file.
    """
    summary = github_summary_path(config)
    if (path is None and summary is None) or not records:
        return []
    from pytest_tcav.reports.markdown import markdown_summary

    try:
        text = markdown_summary(records)
    except Exception as exc:  # noqa: BLE001 - a record it cannot render: said in the summary
        error = f"{type(exc).__name__}: {exc}"
        return [Written(kind, where, error) for kind, where in
                (("markdown summary", path), ("GitHub job summary", summary)) if where is not None]
    written = []
    if path is not None:
        written.append(_write("markdown summary", path, lambda: atomic_write_text(path, text)))
    if summary is not None:
        written.append(_write("GitHub job summary", summary, lambda: append_once(summary, "\n" + text)))
    return written


def append_once(path: Path, text: str) -> None:
    """Append ``text`` to ``path`` with one ``write`` call on a file opened for appending.

    ``O_APPEND`` puts each write at the end of the file at the moment it is
    made, so the block lands whole after whatever other writers added, never
    interleaved with them and never over them.
    """
    data = text.encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        done = os.write(fd, data)
        while done < len(data):  # a regular file takes it all at once; be safe with anything else
            done += os.write(fd, data[done:])
    finally:
        os.close(fd)


def summary_lines(written: list[Written]) -> list[tuple[str, bool]]:
    """Terminal lines naming the written reports: ``(text, is_error)``."""
    lines = []
    for item in written:
        if item.error is None:
            lines.append((f"TCAV {item.kind}: {item.path}", False))
        else:
            lines.append((f"TCAV {item.kind} NOT written to {item.path}: {item.error}", True))
    return lines


# -- caught checks -------------------------------------------------------------------------


def mark_caught(item: pytest.Item, handle: Any, *, passed: bool) -> None:
    """At the end of a phase of a test (setup, call, teardown): its checks that failed or raised in that
    phase were caught by the test when the phase ``passed`` (``pytest.raises``, a ``try``).

    Each check is looked at once, in the phase that made it: one that failed
    in a failed call is not caught, even when the teardown passes.  A test
    that catches a check's failure and then fails for another reason leaves
    the check ``failed``: which exception failed the test is not matched to
    the check.
    """
    if not handle.built:
        return
    mine = [record for record in handle.get().records if record.nodeid == item.nodeid]
    done = item.stash.get(_PHASED_KEY, 0)
    item.stash[_PHASED_KEY] = len(mine)
    if passed:
        for record in mine[done:]:
            if record.outcome in ("failed", "error"):
                record.caught = True


# -- JUnit XML properties ------------------------------------------------------------------


def attach_properties(item: pytest.Item, handle: Any) -> None:
    """Put the test's concept checks made so far on its ``user_properties`` (each check once).

    Called before each of the test's reports is made (setup, call,
    teardown): pytest copies ``user_properties`` into the report, JUnit XML
    writes those of the last one, and pytest-xdist sends reports, with their
    properties, from the worker to the controller, which writes the XML.
    """
    if not handle.built:
        return
    mine = [record for record in handle.get().records if record.nodeid == item.nodeid]
    done = item.stash.get(_ATTACHED_KEY, 0)
    if len(mine) <= done:
        return
    from pytest_tcav.reports.junit import properties

    for index in range(done, len(mine)):
        item.user_properties.extend(properties(mine[index], index))
    item.stash[_ATTACHED_KEY] = len(mine)
