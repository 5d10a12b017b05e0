"""The command line: ``pytest-tcav score`` / ``python -m pytest_tcav``, exit codes, entry points.

The ini file is tested in test_inifile.py, the progress bar in test_progress.py."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import tomllib

import pytest_tcav
from pytest_tcav import cli
from pytest_tcav.reports import plots as report_plots

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--model", "tiny_model:EdgeNet", "--concepts", "data/concepts", "--inputs", "data/inputs",
        "--target", "1", "--layers", "conv,relu", "--random-sets", "5"]


def run_main(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


# -- scoring in-process ----------------------------------------------------------------


def test_score_prints_the_failure_table_per_concept(in_project: Path) -> None:
    code, out, err = run_main("score", *TINY, "--concept", "horizontal,noisy", "--direction", "either")
    assert code == 0, err
    assert err == ""  # stderr is not a terminal: no progress bar
    tables = out.strip().split("\n\n")
    assert len(tables) == 2
    assert tables[0].startswith("concept 'horizontal', target 1, direction either, alpha 0.05 (holm over 2")
    assert tables[1].startswith("concept 'noisy', target 1")
    header = tables[0].splitlines()[1].split()
    assert header[:3] == ["layer", "score", "stat"] and header[-1] == "verdict"
    relu = next(line for line in tables[0].splitlines() if line.startswith("relu"))
    assert relu.split()[1] == "1.00" and relu.endswith("significant")


@pytest.mark.slow  # over a second
def test_score_without_concept_scores_the_whole_library_and_writes_reports(in_project: Path) -> None:
    code, out, err = run_main("score", *TINY, "--classes", "horizontal=1", "--target", "horizontal",
                              "--json", "out/r.json", "--html", "out/r.html", "--progress")
    assert code == 0, err
    names = [line.split("'")[1] for line in out.splitlines() if line.startswith("concept '")]
    assert names == ["horizontal", "noisy", "vertical"]
    assert "target horizontal (1)" in out
    # --progress on a stream that is not a terminal: one plain line per step, no carriage returns
    assert "\r" not in err and err.splitlines()[-1].startswith("[########################] 3/3 concepts")
    assert len(err.splitlines()) == 3
    report = json.loads((in_project / "out" / "r.json").read_text())
    assert report["generator"]["via"] == "pytest-tcav score" and report["summary"] == {"checks": 3, "scored": 3}
    assert [c["concept"] for c in report["checks"]] == names and report["checks"][0]["test"] is None
    assert len(report["checks"][0]["results"][1]["null_statistics"]) == 5
    page = (in_project / "out" / "r.html").read_text()
    assert "horizontal for target horizontal (1)" in page
    # one plot per check (the thumbnails of its examples are images too, outside <figure>)
    assert page.count('<figure><img alt="') == (3 if report_plots.load_matplotlib() else 0)
    assert f"JSON report: {in_project / 'out' / 'r.json'}" in out


def test_inputs_may_be_a_folder_of_images_or_a_class_of_the_ini_library(
        in_project: Path, request: pytest.FixtureRequest) -> None:
    request.addfinalizer((in_project / "pytest.ini").unlink)  # later tests of this module find no ini file
    (in_project / "pytest.ini").write_text(textwrap.dedent("""
        [pytest]
        tcav_concepts = data/concepts
        tcav_inputs = data/inputs
        tcav_random_sets = 3
        tcav_classes =
            horizontal=1
            vertical=0
    """))
    base = ["score", "--model", "tiny_model:EdgeNet", "--layers", "relu",
            "--concept", "horizontal"]
    by_folder = run_main(*base, "--target", "1", "--inputs", "data/inputs/0")
    by_class = run_main(*base, "--target", "1", "--inputs", "vertical")
    from_ini = run_main(*base, "--target", "horizontal")
    assert by_folder[0] == by_class[0] == from_ini[0] == 0, (by_folder, by_class, from_ini)
    assert "3 random sets" in from_ini[1] and "target horizontal (1)" in from_ini[1]
    assert by_folder[1] == by_class[1]  # the vertical-stripe inputs, named two ways
    assert by_folder[1] != from_ini[1]


# -- exit codes ------------------------------------------------------------------------


@pytest.mark.parametrize("argv, message", [
    ([], "usage: pytest-tcav"),
    (["score", "--target", "1", "--layers", "relu"], "the following arguments are required: --model"),
    (["score", *TINY, "--alpha", "2"], "--alpha must lie strictly between 0 and 1"),
    (["score", *TINY, "--method", "magic"], "--method must be one of gradient, integrated_gradients"),
    (["score", *TINY, "--inputs", "no/such/folder"], "--inputs: folder 'no/such/folder' does not exist"),
    (["score", *TINY, "--inputs", "zebra"], "no input library"),
    (["score", *TINY[:-4], "--layers", ",", "--random-sets", "5"], "give at least one layer"),
    (["score", *TINY, "--inifile", "missing.ini"], "is not a file"),
    (["score", *TINY[:2], "--target", "1", "--layers", "relu"], "give --concepts DIR"),
    (["score", *TINY, "--device", "gpu"], "gpu"),
])
def test_usage_errors_exit_2(in_project: Path, argv: list[str], message: str) -> None:
    code, out, err = run_main(*argv)
    assert code == 2 and out == ""
    assert message in err


@pytest.mark.parametrize("extra, message", [
    (["--layers", "nope"], "pytest-tcav: error: model EdgeNet has no layer 'nope'"),
    (["--concept", "stripy"], "no concept 'stripy' in the concept library"),
    (["--model", "tiny_model:Path"], "--model: tiny_model:Path() returned PosixPath, not a torch.nn.Module"),
    (["--model", "tiny_model:SIZE"], "--model: 'tiny_model:SIZE' is a int, not a callable"),
    (["--model", "tiny_model:noise"], "--model: tiny_model:noise raised TypeError"),
    (["--model", "no_such_module_xyz:f"], "--model: cannot import module 'no_such_module_xyz'"),
    (["--random-sets", "9"], "9 random sets were asked for"),
])
def test_scoring_errors_exit_1_with_one_line(in_project: Path, extra: list[str], message: str) -> None:
    code, out, err = run_main("score", *TINY, "--concept", "horizontal", *extra)
    assert code == 1, (out, err)
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_help_documents_the_command_and_exit_codes() -> None:
    code, out, _ = run_main("--help")
    assert code == 0 and "score" in out
    code, text, _ = run_main("score", "--help")
    assert code == 0
    for flag in ("--model", "--concepts", "--inputs", "--target", "--layers", "--concept", "--random-sets",
                 "--seed", "--alpha", "--direction", "--method", "--transform", "--json", "--html", "--inifile",
                 "--progress"):
        assert flag in text, flag
    assert "Exit status: 0 scored, 1 scoring failed" in text
    code, out, _ = run_main("--version")
    assert code == 0 and out.strip() == f"pytest-tcav {pytest_tcav.__version__}"


# -- entry points ----------------------------------------------------------------------


def test_console_script_is_declared_and_importable() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"pytest-tcav": "pytest_tcav.cli:entry_point"}
    assert callable(cli.entry_point)
    script = Path(sys.executable).parent / "pytest-tcav"
    if not script.exists():
        pytest.skip(f"{script} is not installed (pip install -e . installs it)")
    result = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == f"pytest-tcav {pytest_tcav.__version__}"


def subprocess_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


@pytest.mark.slow  # over a second
def test_python_dash_m_on_the_example_suite_from_the_repository_root(tmp_path: Path) -> None:
    # One subprocess (the interpreter, torch, the example model): the README's exploration command.
    command = [sys.executable, "-m", "pytest_tcav", "score", "--inifile", "example_suite/pytest.ini",
               "--model", "example_suite.model:load_model", "--target", "zebra", "--inputs", "zebra",
               "--layers", "features.conv2,features.conv3", "--concept", "striped", "--concept", "watermark",
               "--random-sets", "4", "--json", str(tmp_path / "r.json")]
    result = subprocess.run(command, cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # a pipe is not a terminal: no progress bar
    tables = result.stdout.split("\n\n")
    assert tables[0].startswith("concept 'striped', target zebra (0), direction positive")
    striped = [line.split() for line in tables[0].splitlines()[3:5]]
    assert [row[0] for row in striped] == ["features.conv2", "features.conv3"]
    assert all(row[1] == "1.00" and row[-1] == "significant" for row in striped)
    assert "concept 'watermark', target zebra (0)" in tables[1]
    report = json.loads((tmp_path / "r.json").read_text())
    assert [c["concept"] for c in report["checks"]] == ["striped", "watermark"]


def test_a_device_this_machine_lacks_exits_2_before_the_model_loads(in_project: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, out, err = run_main("score", *TINY, "--device", "cuda")
    assert code == 2 and out == "" and "cuda" in err and "Traceback" not in err
