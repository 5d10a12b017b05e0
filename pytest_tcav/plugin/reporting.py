"""pytest glue of the report files: the ``--tcav-json`` / ``--tcav-html`` options and writing them.

Kept out of :mod:`.plugin` so that the plugin only calls a few functions.
Reports are written by the process that prints the summary: the only process
of a serial run, the controller of a pytest-xdist run (whose records are the
workers' records, received through :mod:`pytest_tcav.plugin.xdist`), never a
worker, so two processes never write the same file.  Nothing here imports
torch unless a report was asked for.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_tcav.config import Option
from pytest_tcav.plugin import xdist

#: The part of a pytest-xdist worker's payload with its environment (its device, its torch), sent when
#: reports are asked for.
ENV_PART = "environment"

REPORT_OPTIONS: tuple[Option, ...] = (
    Option("tcav_json", "write every concept check as JSON to this file (pytest-tcav/report, version 1)",
           "PATH"),
    Option("tcav_html", "write a self-contained HTML report of every concept check to this file (plots "
           "need matplotlib: pip install 'pytest-tcav[report]')", "PATH"),
)


@dataclass(frozen=True)
class Written:
    """One report file: what it is, where it went, or why it could not be written."""

    kind: str  # "JSON" or "HTML"
    path: Path
    error: str | None = None


def add_options(group: Any, parser: Any) -> None:
    """Register the options and their ini keys (paths in the ini file are relative to it)."""
    for option in REPORT_OPTIONS:
        group.addoption(option.flag, dest=option.key, metavar=option.metavar, default=None,
                        help=f"{option.help}. ini: {option.key}")
        parser.addini(option.key, help=option.help, type="string", default=None)


def report_paths(config: Any) -> dict[str, Path]:
    """Requested report files, ``{"json": path, "html": path}``, absolute.

    A command-line path is relative to the directory pytest was started from,
    an ini path to the ini file's directory, as for the other ``tcav_*`` paths.
    """
    paths: dict[str, Path] = {}
    inipath = getattr(config, "inipath", None)
    root = Path(inipath).parent if inipath is not None else Path(config.rootpath)
    for option, kind in zip(REPORT_OPTIONS, ("json", "html")):
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
    if not report_paths(config) or not handle.built:
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


def write_reports(config: Any, records: list[dict[str, Any]], handle: Any,
                  exitstatus: int | None) -> list[Written]:
    """Write the requested reports from the run's records; errors are returned, not raised.

    A report that cannot be written (a read-only folder, a path that is a
    directory, or a record it cannot render) must not turn a finished test run
    into an internal error: the summary says what went wrong instead, in red.
    """
    paths = report_paths(config)
    if not paths:
        return []
    from pytest_tcav.reports.json import build_report, config_settings, write_json

    report = build_report(records, env=run_environment(config, handle), settings=config_settings(handle.config),
                          exitstatus=exitstatus, generator="pytest")
    written = []
    for kind, path in paths.items():
        try:
            if kind == "json":
                write_json(path, report)
            else:
                from pytest_tcav.reports.html import write_html

                write_html(path, report)
        except Exception as exc:  # noqa: BLE001 - said in red in the summary; the tests' outcome stands
            written.append(Written(kind.upper(), path, f"{type(exc).__name__}: {exc}"))
        else:
            written.append(Written(kind.upper(), path))
    return written


def summary_lines(written: list[Written]) -> list[tuple[str, bool]]:
    """Terminal lines naming the written reports: ``(text, is_error)``."""
    lines = []
    for item in written:
        if item.error is None:
            lines.append((f"TCAV {item.kind} report: {item.path}", False))
        else:
            lines.append((f"TCAV {item.kind} report NOT written to {item.path}: {item.error}", True))
    return lines
