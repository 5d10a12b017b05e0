"""The ini file of ``pytest-tcav score``: found the way pytest finds it, or named with ``--inifile``.

``pytest-tcav score`` run inside a project should see the project's
``tcav_*`` settings (its libraries, class names, transform) just as
``pytest`` there does, so it looks for the file pytest would use.  pytest
documents the rule (docs "Initialization: determining rootdir and
configfile"): starting from the directory it was run in (the command takes no
test paths), each directory upwards is searched for, in this order,

* ``pytest.toml``, ``.pytest.toml`` (pytest 9; used even when empty),
* ``pytest.ini``, ``.pytest.ini`` (used even without a ``[pytest]`` section),
* ``pyproject.toml``, only with a ``[tool.pytest.ini_options]`` (or pytest 9's ``[tool.pytest]``) table,
* ``tox.ini``, only with a ``[pytest]`` section,
* ``setup.cfg``, only with a ``[tool:pytest]`` section,

and the first file that qualifies wins; a nearer directory beats a farther one
whatever the file.  The rule is implemented here rather than borrowed from
``_pytest.config.findpaths``, whose signature and file list changed between
the pytest versions this package supports (and the CLI imports no pytest).
"""

from __future__ import annotations

import configparser
import os
import sys
from pathlib import Path
from typing import Any

from pytest_tcav.cli.usage import UsageError
from pytest_tcav.config import OPTIONS

#: The files pytest looks for in each directory, in its order of precedence.
CONFIG_NAMES = ("pytest.toml", ".pytest.toml", "pytest.ini", ".pytest.ini", "pyproject.toml", "tox.ini",
                "setup.cfg")
#: ini keys whose values are folders, relative to the ini file's directory.
PATH_KEYS = frozenset(option.key for option in OPTIONS if option.metavar == "DIR")


def _toml(path: Path, label: str) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pytest itself depends on tomli before Python 3.11
        import tomli as tomllib

    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{label}: {path} is not valid TOML ({exc})") from None


def _ini(path: Path, label: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(path, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError) as exc:
        raise UsageError(f"{label}: cannot read {path} ({type(exc).__name__}: {exc})") from None
    return parser


def pytest_config(path: Path, label: str = "--inifile") -> dict[str, Any] | None:
    """The pytest settings of ``path``, or None when the file holds none (pytest would skip it).

    Files are read by name as pytest reads them, other names by suffix
    (``.ini``: ``[pytest]``, ``.cfg``: ``[tool:pytest]``, ``.toml``: the tables above).
    """
    name = path.name
    if path.suffix == ".toml":
        data = _toml(path, label)
        if name in ("pytest.toml", ".pytest.toml"):
            return dict(data.get("pytest") or {})
        tool = data.get("tool", {}).get("pytest")
        if isinstance(tool, dict):
            if "ini_options" in tool:
                return dict(tool["ini_options"] or {})
            return dict(tool)
        return dict(data["pytest"]) if name != "pyproject.toml" and "pytest" in data else None
    parser = _ini(path, label)
    section = "tool:pytest" if path.suffix == ".cfg" else "pytest"
    if parser.has_section(section):
        return dict(parser.items(section))
    return {} if name in ("pytest.ini", ".pytest.ini") else None


def find_inifile(start: Path) -> Path | None:
    """The file pytest would take as its configfile when run in ``start`` (no test paths); None if none."""
    start = start.resolve()
    for folder in (start, *start.parents):
        for name in CONFIG_NAMES:
            path = folder / name
            if path.is_file() and pytest_config(path, str(path)) is not None:
                return path
    return None


def read_inifile(path: Path, label: str = "--inifile") -> tuple[dict[str, tuple[Any, str]], list[Path]]:
    """``tcav_*`` values (key -> (value, origin)) and ``pythonpath`` folders of a pytest ini file.

    Reads ``[pytest]`` (pytest.ini, tox.ini), ``[tool:pytest]`` (setup.cfg) and
    ``[tool.pytest.ini_options]`` (pyproject.toml), like pytest; folder values
    become absolute, relative to the file's directory.
    """
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{label}: {str(path)!r} is not a file")
    values = pytest_config(path, label)
    if values is None:
        where = ("[tool.pytest.ini_options] table" if path.suffix == ".toml"
                 else "[tool:pytest] section" if path.suffix == ".cfg" else "[pytest] section")
        raise UsageError(f"{label}: {path} has no {where}")
    root = path.resolve().parent
    raw: dict[str, tuple[Any, str]] = {}
    for option in OPTIONS:
        value = values.get(option.key)
        if value is None or value == "" or value == []:
            continue
        if option.key in PATH_KEYS:
            value = (root / os.path.expanduser(str(value).strip())).resolve()
        raw[option.key] = (value, f"{option.key} in {path.name}")
    pythonpath = values.get("pythonpath") or []
    entries = pythonpath.split() if isinstance(pythonpath, str) else [str(p) for p in pythonpath]
    return raw, [(root / entry).resolve() for entry in entries]
