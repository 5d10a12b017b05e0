"""``pytest-tcav calibrate``: the table, the stored calibration, the JSON, and the error without spare data."""

from __future__ import annotations

import io
import json
import sys
import textwrap
from pathlib import Path

import pytest

from pytest_tcav import cli
from tests.helpers import tiny_model

INI = """
[pytest]
tcav_concepts = data/concepts
tcav_inputs = data/inputs
tcav_random_sets = 5
"""
ARGS = ["calibrate", "--model", "tiny_model:EdgeNet", "--target", "1", "--layers", "conv,relu"]


def run_main(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def _project(root: Path, n_random: int, monkeypatch: pytest.MonkeyPatch) -> Path:
    (root / "tiny_model.py").write_text(Path(tiny_model.__file__).read_text())
    tiny_model.write_library(root / "data", n_random=n_random)
    (root / "pytest.ini").write_text(textwrap.dedent(INI))
    monkeypatch.chdir(root)
    monkeypatch.setattr(sys, "path", list(sys.path))
    return root


@pytest.mark.slow  # over a second
def test_calibrate_reports_rates_stores_them_and_reuses_the_null(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    root = _project(tmp_path, 8, monkeypatch)  # random_5..random_7 are spare: 36 images, 3 disjoint sets of 12
    code, out, err = run_main(*ARGS, "--pseudo-concepts", "3", "--json", "c.json", "--progress")
    assert code == 0, err
    assert "3 pseudo-concepts of 12 examples from the random folders beyond the 5 in use" in out
    header = next(line for line in out.splitlines() if line.startswith("target"))
    assert header.split()[:4] == ["target", "layer", "significant", "rate"]
    assert any(line.split()[:2] == ["1", "relu"] for line in out.splitlines())
    assert "checks on conv run at about" in out
    # why: where fresh random data sit against the random sets, in null SDs, and what is typical
    assert "target 1: on relu, fresh random data score on average " in out
    assert "null SDs" in out and "is typical of 5 random sets measured with 3 pseudo-concepts" in out
    assert err.splitlines()[-1].startswith("[########################] 3/3 pseudo-concepts")
    report = json.loads((root / "c.json").read_text())
    assert report["overlapping"] is False and len(report["calibrations"]) == 1
    # a fresh cache: the null once (5 sets, 10 pairs per layer), then 3 concept passes of 5 CAVs per layer
    assert report["cache"]["computed"]["cav"] == 2 * (10 + 3 * 5)
    stored = list((root / ".pytest_cache" / "d" / "tcav" / "calibration").glob("*.json"))
    assert len(stored) == 1 and f"stored: {stored[0]}" in out
    # again: everything comes from the disk cache
    code, out, err = run_main(*ARGS, "--pseudo-concepts", "3", "--json", "c.json")
    assert code == 0, err
    assert json.loads((root / "c.json").read_text())["cache"]["computed"].get("cav", 0) == 0
    # the same passes are the pseudo-concepts' null of tcav_null = pseudo with K = 3: stored beside it
    assert len(list((root / ".pytest_cache" / "d" / "tcav" / "pseudo_null").glob("*.json"))) == 1


def test_an_atypical_library_is_told_why_and_pointed_to_the_pseudo_null() -> None:
    from pytest_tcav.checks.calibration import LayerRate, implication, luck_explains

    above = LayerRate("relu3", significant=9, total=40, alpha=0.05, low=0.108, high=0.385)
    text = implication(above, 10, shift=0.9, spread=1.0, pseudo_cost=40)
    assert "on relu3, fresh random data score on average +0.90 null SDs above your random sets (within ±0.71 " \
           "is typical of 10 random sets measured with 40 pseudo-concepts): your random sets are not typical of " \
           "your random data" in text
    assert "set tcav_null = pseudo" in text and "40 pseudo-concept passes once per target and settings" in text
    assert "More random sets of the same kind do not remove that" in text and "or use more random sets" not in text
    # a small shift and a right spread: the luck of N sets, which more sets do shrink
    lucky = implication(above, 10, shift=0.3, spread=1.1, pseudo_cost=40)
    assert "within the luck of 10 random sets" in lucky and "or use more random sets" in lucky
    assert luck_explains(0.7, 1.0, 10, 40) and not luck_explains(0.72, 1.0, 10, 40)
    assert luck_explains(0.1, 1.3, 10, 40) and not luck_explains(0.1, 1.8, 10, 40)  # F(39, 9) at 0.95: 2.83
    assert "too narrow" in implication(above, 10, shift=0.1, spread=1.8, pseudo_cost=40)


def test_calibrate_without_spare_random_data_says_how_many_images_are_needed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _project(tmp_path, 5, monkeypatch)
    code, out, err = run_main(*ARGS, "--pseudo-concepts", "10")
    assert code == 1 and out == ""
    assert "no random data the tests do not use" in err
    assert "the tests use the first 5 (tcav_random_sets)" in err
    assert "at least 12 examples (one pseudo-concept of the concept size), better 120" in err


def test_help_says_95_percent_once_formatted() -> None:
    # argparse %-formats help strings but prints descriptions and epilogs as they are: "95%%" in a
    # description came out doubled.  Every command's help is checked for a stray "%%".
    code, text, _ = run_main("calibrate", "--help")
    assert code == 0
    assert "exact 95% interval next to alpha" in " ".join(text.split())
    for command in ("calibrate", "score", "diff", "report", "cache"):
        code, text, _ = run_main(command, "--help")
        assert code == 0 and "%%" not in text, command
    assert "%%" not in run_main("--help")[1]
