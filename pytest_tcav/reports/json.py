"""The machine-readable report of a run: every concept check as JSON (``--tcav-json``).

The report is built from the session's records
(:class:`~pytest_tcav.checks.records.CheckRecord`, which pytest-xdist workers
send to the controller as plain JSON), so a parallel run reports exactly what
a serial run does and the report never needs a second channel from the
workers.  Each check is its record's plain form (``CheckRecord.to_dict``) with
the report's own fields.  The HTML report (:mod:`.html`) and the command line
(:mod:`pytest_tcav.cli`) render the same dictionary, read back as a
:class:`StoredReport` whose checks are records again, so the three never disagree.

Layout (``docs/reports.md`` documents every field; ``docs/report.schema.json``
is its JSON Schema)::

    {"schema": "pytest-tcav/report", "version": 1, "created": ..., "generator": {...},
     "environment": {...}, "settings": {...}, "exitstatus": 0, "summary": {...},
     "checks": [{"id": ..., "test": ..., "concept": ..., "results": [{per layer}], ...}]}

``version`` changes only when a field is removed or changes meaning; new
fields may appear in any version, so readers should ignore keys they do not know.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import os
import platform
import sys
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_tcav.atomic_files import atomic_write_text
from pytest_tcav.checks.records import CheckRecord
from pytest_tcav.reports.terminal import sort_records, verdict

if TYPE_CHECKING:
    from pytest_tcav.config import TCAVConfig

SCHEMA = "pytest-tcav/report"
VERSION = 1

#: Record keys the report renames or drops; every other key of a record is copied as it is.
_RENAMED = {"nodeid": "test"}
_DROPPED = {"seq"}  # the order of a check inside its worker: differs between serial and xdist runs


def jsonable(value: Any) -> Any:
    """``value`` with JSON types only; non-finite floats become the strings ``NaN``, ``Infinity``, ``-Infinity``.

    Strict JSON has no NaN or infinity (``json.dumps`` would write tokens many
    parsers reject), yet a t statistic is infinite when the random sets agree
    exactly; a string keeps the information and the file valid.
    """
    if isinstance(value, bool) or value is None or isinstance(value, (str, int)):
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return value
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable(dataclasses.asdict(value))
    item = getattr(value, "item", None)  # numpy and torch scalars
    if callable(item):
        try:
            return jsonable(item())
        except (TypeError, ValueError):
            pass
    return str(value)


def number(value: Any) -> float | None:
    """A report number back as a float (``"Infinity"`` -> inf); ``None`` for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if value in ("NaN", "Infinity", "-Infinity"):
        return float(value.replace("Infinity", "inf"))
    return None


def package_version(name: str) -> str | None:
    """An installed distribution's version, without importing it."""
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def environment(device: str | None = None) -> dict[str, Any]:
    """Where the numbers were computed: interpreter, platform, library versions and device.

    ``device`` is the device the checks ran on when the caller knows it.
    Versions come from package metadata, and CUDA is asked about only when
    torch is imported already: a process that ran no check (an xdist
    controller) does not pay seconds for importing torch to write a report.
    """
    from pytest_tcav._version import __version__

    env: dict[str, Any] = {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "pytest_tcav": __version__,
        "pytest": package_version("pytest"),
        "torch": package_version("torch"),
        "numpy": package_version("numpy"),
        "device": device,
        "cuda_devices": [],
    }
    torch = sys.modules.get("torch")
    if torch is not None:
        env["torch"] = str(torch.__version__)
        if torch.cuda.is_available():
            env["cuda_devices"] = [torch.cuda.get_device_name(k) for k in range(torch.cuda.device_count())]
    return env


def config_settings(config: TCAVConfig | None) -> dict[str, Any]:
    """The run's settings (``tcav_*`` values after the command line) as JSON.

    Every field of the configuration but its bookkeeping (``root``,
    ``sources``), so settings added to :class:`TCAVConfig` appear in reports
    without a change here.
    """
    if config is None:
        return {}
    return {field.name: jsonable(getattr(config, field.name)) for field in dataclasses.fields(config)
            if field.name not in ("root", "sources")}


def outcome_label(record: CheckRecord) -> str:
    """The check's outcome as the summary counts it: passed, failed, error, xfailed, caught (a failure its
    test caught), or the record's own word."""
    outcome = str(record.outcome or "unknown")
    if record.caught and outcome in ("failed", "error"):
        return "caught"
    if record.xfail and outcome in ("failed", "error"):
        return "xfailed"
    return outcome


def checks(records: Iterable[CheckRecord]) -> list[dict[str, Any]]:
    """The report's checks: records sorted as in the terminal summary, each with an ``id``.

    ``index`` counts the checks of one test (0, 1, ...), which is the same in
    serial and parallel runs, unlike the record's ``seq``.  Keys the report
    does not know (a stability check's ``before``/``after``, ...) are kept.
    """
    out: list[dict[str, Any]] = []
    per_test: Counter[str | None] = Counter()
    for record in sort_records(records):
        test = record.nodeid
        index = per_test[test]
        per_test[test] += 1
        # outside a test (the command line, a notebook) a check is named by what it scored
        name = test if test is not None else f"{record.concept} for {record.target}"
        check: dict[str, Any] = {
            "id": f"{name}#{index}",
            "test": test,
            "index": index,
        }
        for key, value in record.to_dict().items():
            if key in _DROPPED:
                continue
            check.setdefault(_RENAMED.get(key, key), jsonable(value))
        check.setdefault("results", [])
        check.setdefault("outcome", "unknown")
        check["verdict"] = verdict(record)
        check["status"] = outcome_label(record)
        out.append(check)
    return out


def build_report(records: Iterable[CheckRecord], *, env: Mapping[str, Any] | None = None,
                 settings: Mapping[str, Any] | None = None, exitstatus: int | None = None,
                 generator: str = "pytest") -> dict[str, Any]:
    """The report dictionary (JSON types only) for ``records``."""
    from pytest_tcav._version import __version__

    report_checks = checks(records)
    counts = Counter(check["status"] for check in report_checks)
    return {
        "schema": SCHEMA,
        "version": VERSION,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "generator": {"name": "pytest-tcav", "version": __version__, "via": generator},
        "environment": jsonable(dict(env) if env is not None else environment()),
        "settings": jsonable(dict(settings or {})),
        "exitstatus": exitstatus,
        "summary": {"checks": len(report_checks), **{key: counts[key] for key in sorted(counts)}},
        "checks": report_checks,
    }


def dumps(report: Mapping[str, Any]) -> str:
    """The report as strict JSON text (no NaN tokens), indented for diffs and people."""
    return json.dumps(report, indent=2, allow_nan=False) + "\n"




def write_json(path: Path, report: Mapping[str, Any]) -> Path:
    """Write the report atomically; returns the path written."""
    return atomic_write_text(path, dumps(report))


def load(path: Path) -> dict[str, Any]:
    """Read a report back, checking that it is one (schema and a version this code can read)."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise ValueError(f"{path} is not a pytest-tcav report (schema {data.get('schema')!r})"
                         if isinstance(data, dict) else f"{path} is not a pytest-tcav report")
    if data.get("version") != VERSION:
        raise ValueError(f"{path} is report version {data.get('version')!r}; this pytest-tcav reads {VERSION}")
    return data


# -- a report read back ----------------------------------------------------------------------

#: The fields a report adds to each record (``test`` is the record's ``nodeid``).
REPORT_FIELDS = ("id", "test", "index", "verdict", "status")


@dataclass(frozen=True)
class StoredCheck:
    """One check of a report: its record again, with the fields the report gave it."""

    id: str
    index: int
    #: what the report said was found, and how it counted the outcome (written by the version that ran it)
    verdict: str | None
    status: str | None
    record: CheckRecord

    @property
    def test(self) -> str | None:
        return self.record.nodeid

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StoredCheck:
        rest = {key: value for key, value in data.items() if key not in REPORT_FIELDS}
        record = CheckRecord.from_dict({**rest, "nodeid": data.get("test")})
        index = data.get("index")
        return cls(id=str(data.get("id")), index=index if isinstance(index, int) else 0,
                   verdict=data.get("verdict"), status=data.get("status"), record=record)


@dataclass(frozen=True)
class StoredReport:
    """A report (as :func:`build_report` makes it, or :func:`load` reads it back), its checks as records."""

    checks: list[StoredCheck]
    created: Any = None
    generator_name: Any = "pytest-tcav"
    generator_version: Any = None
    via: Any = None
    #: where the numbers were computed (:func:`environment`) and the run's settings, as the report has them
    environment: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    #: how many checks the report counts, and per status
    count: Any = None
    counts: dict[str, Any] = field(default_factory=dict)

    @property
    def device(self) -> Any:
        return self.environment.get("device")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StoredReport:
        """The report's own top-level keys read once; every check becomes a :class:`StoredCheck`."""
        generator = data.get("generator") or {}
        summary = data.get("summary") or {}
        checks = [StoredCheck.from_dict(c) for c in data.get("checks") or [] if isinstance(c, Mapping)]
        return cls(checks=checks, created=data.get("created"),
                   generator_name=generator.get("name", "pytest-tcav"), generator_version=generator.get("version"),
                   via=generator.get("via"), environment=dict(data.get("environment") or {}),
                   settings=dict(data.get("settings") or {}), count=summary.get("checks", len(checks)),
                   counts={k: v for k, v in summary.items() if k != "checks"})


__all__ = [
    "SCHEMA", "VERSION", "StoredCheck", "StoredReport", "build_report", "checks", "config_settings", "dumps",
    "environment", "jsonable", "load", "number", "outcome_label", "write_json",
]
