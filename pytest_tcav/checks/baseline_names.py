"""Names and paths of baseline files, free of PyYAML so that the plugin can use them in every run.

The plugin needs them after every collection (which ``tcav_baselines``
folders a run could use) and in the terminal summary (which files no test
used); importing the YAML reader and writer (:mod:`pytest_tcav.checks.baseline_file`)
for that would load PyYAML in every pytest run of every project where
pytest-tcav is installed.  Names are checked here because a baseline name
comes from a test and must never leave its folder.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from pytest_tcav.errors import BaselineError

#: The folder, next to the test file, that holds its baselines.
BASELINE_DIR = "tcav_baselines"
SUFFIX = ".yaml"
OBTAINED_SUFFIX = ".obtained.yaml"
#: The command-line flag that writes baselines; named in every message that asks for it.
UPDATE_FLAG = "--tcav-update-baselines"

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,119}$")


def baseline_path(directory: Path, name: str) -> Path:
    """The file of baseline ``name`` in ``directory``; a name that could leave it is refused.

    Names are file names, not paths: letters, digits, ``_``, ``-`` and ``.``,
    starting with a letter, digit or ``_`` (so no ``..``, no hidden files, no
    separators, no drive letters).  A trailing ``.yaml`` is accepted and dropped.
    """
    if not isinstance(name, str) or not name:
        raise BaselineError(f"baseline name must be a non-empty string, got {name!r}")
    stem = name[: -len(SUFFIX)] if name.endswith(SUFFIX) else name
    problem = None
    if os.path.isabs(stem) or "/" in stem or "\\" in stem or ":" in stem:
        problem = "it is a path; give a plain file name"
    elif ".." in stem:
        problem = "it contains '..'"
    elif stem.endswith(".obtained"):
        problem = "names ending in '.obtained' are kept for the files written on failure"
    elif not _NAME.match(stem):
        problem = ("use letters, digits, '_', '-' and '.', starting with a letter, digit or '_' "
                   "(at most 120 characters)")
    if problem:
        raise BaselineError(f"baseline name {name!r} is refused: {problem}")
    path = directory / f"{stem}{SUFFIX}"
    if path.parent != directory:  # belt and braces: the name above cannot do this
        raise BaselineError(f"baseline name {name!r} leaves {directory}")
    return path


def obtained_path(path: Path) -> Path:
    """Where the values of a failing check are written, beside its baseline."""
    return path.with_name(path.name[: -len(SUFFIX)] + OBTAINED_SUFFIX)


def is_baseline_file(path: Path) -> bool:
    """A committed baseline (not an ``.obtained`` file, a temporary file or a hidden file)."""
    name = path.name
    return name.endswith(SUFFIX) and not name.endswith(OBTAINED_SUFFIX) and not name.startswith(".")
