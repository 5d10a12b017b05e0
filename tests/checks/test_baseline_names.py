"""Baseline names: which become file names in the baselines folder, and which are refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_tcav.checks.baseline_names import baseline_path
from pytest_tcav.errors import BaselineError


@pytest.mark.parametrize("name", ["../x", "..", "a/b", "a\\b", "/etc/passwd", "C:x", ".x", "", "x.obtained",
                                  "-x", "a" * 121, "é"])
def test_names_that_could_leave_the_folder_are_refused(name: str, tmp_path: Path) -> None:
    with pytest.raises(BaselineError, match="refused|non-empty"):
        baseline_path(tmp_path, name)


def test_good_names(tmp_path: Path) -> None:
    assert baseline_path(tmp_path, "striped-zebra_v2.1") == tmp_path / "striped-zebra_v2.1.yaml"
    assert baseline_path(tmp_path, "striped.yaml") == tmp_path / "striped.yaml"
