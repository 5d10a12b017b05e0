"""Building small pytest projects for the plugin's pytester tests.

A project holds a concept library and input library of generated PNGs, the
hand-wired model of ``tiny_model.py`` (no training, so every pytester run is
fast, in process or in a subprocess), a ``model`` fixture, and an ini file.
"""

from __future__ import annotations

import contextlib
import textwrap
from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin  # noqa: F401

import pytest_tcav.checks.significance  # noqa: F401
import pytest_tcav.session.session  # noqa: F401
from tests.helpers import tiny_model

with contextlib.suppress(ImportError):
    import hypothesis  # noqa: F401

# The imports above are for in-process pytester runs: pytester restores
# sys.modules after each run, so a module first imported inside a run is
# imported again by the next one.  numpy refuses that for its extension
# modules (numpy.fft under scipy.stats), and hypothesis's plugin would cost
# ~1 s per run.  Importing them here keeps them loaded across runs.

TINY_MODEL_SOURCE = Path(tiny_model.__file__).read_text()

CONFTEST = '''
import os

import pytest
import torch

import tiny_model

if os.environ.get("TINY_TORCH_THREADS"):
    # Subprocess runs only: the same thread count gives the same floating-point
    # sums in a serial run and in pytest-xdist workers (and two workers on two
    # cores should not oversubscribe them).
    torch.set_num_threads(int(os.environ["TINY_TORCH_THREADS"]))


@pytest.fixture(scope="session")
def model():
    return tiny_model.EdgeNet()
'''

INI = """
[pytest]
tcav_concepts = data/concepts
tcav_inputs = data/inputs
tcav_random_sets = 5
tcav_classes =
    horizontal=1
    vertical=0
"""


def make_project(
    pytester: pytest.Pytester,
    *,
    ini: str | None = INI,
    pool: bool = False,
    n_random: int = 5,
    data: bool = True,
) -> Path:
    """Write a project into ``pytester.path``; returns the data folder (holding concepts/ and inputs/)."""
    pytester.makepyfile(tiny_model=TINY_MODEL_SOURCE, conftest=CONFTEST)
    if ini is not None:
        pytester.makefile(".ini", pytest=textwrap.dedent(ini))
    folder = pytester.path / "data"
    if data:
        tiny_model.write_library(folder, pool=pool, n_random=n_random)
    return folder


def summary_section(output: str) -> list[str]:
    """The lines of the "TCAV concept checks" section of a run's output (empty if absent)."""
    lines = output.splitlines()
    start = next((k for k, line in enumerate(lines) if "TCAV concept checks" in line), None)
    if start is None:
        return []
    section = []
    for line in lines[start + 1:]:
        if line.startswith("=") or line.startswith("FAILED ") or line.startswith("ERROR "):
            break
        section.append(line.rstrip())
    return section


#: The head of a pytester test module whose checks write their records (exact numbers) to
#: files in $DUMP_DIR, so a serial run and an xdist run can be compared bit for bit.
RECORD_DUMPING_CHECKS = """
import json
import os
import re
from pathlib import Path

import pytest
from pytest_tcav import assert_concept_insignificant, assert_concept_significant
from pytest_tcav.session.registry import current_session


@pytest.fixture(autouse=True)
def dump_records(request):
    \"\"\"With DUMP_DIR set, write this test's records (exact numbers) to a file of its own.\"\"\"
    yield
    if os.environ.get("DUMP_DIR"):
        mine = [r.to_dict() for r in current_session().records if r.nodeid == request.node.nodeid]
        name = re.sub(r"\\W", "_", request.node.nodeid) + ".json"
        Path(os.environ["DUMP_DIR"], name).write_text(json.dumps(mine))
"""
