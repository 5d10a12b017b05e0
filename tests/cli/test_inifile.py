"""``pytest-tcav score`` finds its ini file as pytest does; ``--inifile`` overrides, ``--no-inifile`` ignores."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from pytest_tcav import cli
from tests.cli.test_main import TINY, run_main

#: One file of each kind, each setting tcav_seed to tell them apart.
KINDS = {
    "pytest.ini": "[pytest]\ntcav_seed = 1\n",
    ".pytest.ini": "[pytest]\ntcav_seed = 2\n",
    "pyproject.toml": "[tool.pytest.ini_options]\ntcav_seed = \"3\"\n",
    "tox.ini": "[pytest]\ntcav_seed = 4\n",
    "setup.cfg": "[tool:pytest]\ntcav_seed = 5\n",
}


def _seed(path: Path | None) -> str | None:
    return None if path is None else cli.read_inifile(path)[0]["tcav_seed"][0]


@pytest.mark.parametrize("name", list(KINDS))
def test_each_kind_is_found_from_a_subfolder(tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_text(KINDS[name])
    (tmp_path / "src" / "pkg").mkdir(parents=True)
    found = cli.find_inifile(tmp_path / "src" / "pkg")
    assert found == (tmp_path / name).resolve()
    assert str(_seed(found)) == KINDS[name].split("= ")[1].strip().strip('"')


def test_precedence_within_a_folder_is_pytests(tmp_path: Path) -> None:
    names = list(KINDS)
    for name in names:
        (tmp_path / name).write_text(KINDS[name])
    for name in names:  # remove the winner, the next in pytest's order wins
        assert cli.find_inifile(tmp_path) == (tmp_path / name).resolve()
        (tmp_path / name).unlink()
    assert cli.find_inifile(tmp_path) is None


def test_files_without_pytest_settings_are_skipped_but_pytest_ini_always_counts(tmp_path: Path) -> None:
    (tmp_path / "setup.cfg").write_text("[tool:pytest]\ntcav_seed = 5\n")
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "pyproject.toml").write_text("[project]\nname = 'x'\n")  # no [tool.pytest.ini_options]
    (sub / "tox.ini").write_text("[tox]\nenvlist = py\n")  # no [pytest]
    (sub / "setup.cfg").write_text("[metadata]\nname = x\n")  # no [tool:pytest]
    assert cli.find_inifile(sub) == (tmp_path / "setup.cfg").resolve()
    (sub / "pytest.ini").write_text("# an empty pytest.ini still marks the rootdir, as in pytest\n")
    assert cli.find_inifile(sub) == (sub / "pytest.ini").resolve()
    assert cli.read_inifile(sub / "pytest.ini") == ({}, [])


def test_the_nearest_folder_wins_whatever_the_kind(tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\ntcav_seed = 1\n")
    (tmp_path / "inner").mkdir()
    (tmp_path / "inner" / "setup.cfg").write_text("[tool:pytest]\ntcav_seed = 5\n")
    assert cli.find_inifile(tmp_path / "inner") == (tmp_path / "inner" / "setup.cfg").resolve()


def test_pytest_9_toml_files_come_first(tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\ntcav_seed = 1\n")
    (tmp_path / "pytest.toml").write_text("[pytest]\ntcav_seed = 9\n")
    found = cli.find_inifile(tmp_path)
    assert found is not None and found.name == "pytest.toml" and _seed(found) == 9


def test_an_invalid_file_on_the_way_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.pytest.ini_options\n")
    with pytest.raises(cli.UsageError, match="is not valid TOML"):
        cli.find_inifile(tmp_path)


@pytest.fixture
def nested(in_project: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The tiny project with an ini file of the kind ``request.param``, run from a subfolder."""
    name, text = request.param
    ini = in_project / name
    ini.write_text(textwrap.dedent(text))
    request.addfinalizer(ini.unlink)
    (in_project / "sub" / "deeper").mkdir(parents=True, exist_ok=True)
    monkeypatch.chdir(in_project / "sub" / "deeper")
    return in_project


SETTINGS = textwrap.dedent("""
    tcav_concepts = data/concepts
    tcav_inputs = data/inputs
    tcav_random_sets = 3
    tcav_classes =
        horizontal=1
        vertical=0
""")
PYPROJECT = """
    [tool.pytest.ini_options]
    pythonpath = ["."]
    tcav_concepts = "data/concepts"
    tcav_inputs = "data/inputs"
    tcav_random_sets = "3"
    tcav_classes = ["horizontal=1", "vertical=0"]
"""
INI_KINDS = [("pytest.ini", "[pytest]\npythonpath = ." + SETTINGS),
             ("tox.ini", "[tox]\nenvlist = py\n[pytest]\npythonpath = ." + SETTINGS),
             ("setup.cfg", "[metadata]\nname = x\n[tool:pytest]\npythonpath = ." + SETTINGS),
             ("pyproject.toml", PYPROJECT)]


@pytest.mark.parametrize("nested", INI_KINDS, indirect=True, ids=[kind[0] for kind in INI_KINDS])
def test_score_reads_the_projects_ini_from_a_subfolder(nested: Path) -> None:
    # the case: a class name as target, libraries and pythonpath from the project's ini file
    args = ["score", "--model", "tiny_model:EdgeNet", "--target", "horizontal", "--layers", "relu",
            "--concept", "horizontal"]
    code, out, err = run_main(*args)
    assert code == 0, err
    assert "target horizontal (1)" in out and "3 random sets" in out
    code, out, err = run_main(*args, "--no-inifile")
    assert code == 1 and "'horizontal' is a class name, but no class names are configured" in err


@pytest.mark.parametrize("nested", [INI_KINDS[0]], indirect=True, ids=["pytest.ini"])
def test_inifile_overrides_the_found_file(nested: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.ini"
    other.write_text(f"[pytest]\npythonpath = {nested}\ntcav_random_sets = 4\n")
    code, out, err = run_main("score", *TINY[:2], "--inifile", str(other), "--concepts", "../../data/concepts",
                              "--inputs", "../../data/inputs", "--target", "1", "--layers", "relu",
                              "--concept", "horizontal")
    assert code == 0, err
    assert "4 random sets" in out
    code, _, err = run_main("score", *TINY, "--inifile", str(other), "--no-inifile")
    assert code == 2 and "not allowed with argument" in err


def test_read_inifile_reads_pytest_ini_setup_cfg_and_pyproject(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "pytest.ini").write_text("[pytest]\npythonpath = . src\ntcav_concepts = c\n"
                                               "tcav_classes =\n    zebra=3\n    horse=4\ntcav_alpha = 0.01\n")
    (tmp_path / "setup.cfg").write_text("[tool:pytest]\ntcav_seed = 4\n")
    (tmp_path / "pyproject.toml").write_text('[tool.pytest.ini_options]\npythonpath = ["lib"]\n'
                                             'tcav_inputs = "in"\ntcav_classes = ["zebra=3"]\n')
    raw, path = cli.read_inifile(tmp_path / "a" / "pytest.ini")
    assert raw["tcav_concepts"] == ((tmp_path / "a" / "c").resolve(), "tcav_concepts in pytest.ini")
    assert raw["tcav_alpha"][0] == "0.01" and path == [(tmp_path / "a").resolve(), (tmp_path / "a" / "src").resolve()]
    config = cli.build_config(raw, root=tmp_path)
    assert dict(config.classes) == {"zebra": 3, "horse": 4} and config.alpha == 0.01
    assert cli.read_inifile(tmp_path / "setup.cfg")[0] == {"tcav_seed": ("4", "tcav_seed in setup.cfg")}
    raw, path = cli.read_inifile(tmp_path / "pyproject.toml")
    assert raw["tcav_inputs"][0] == (tmp_path / "in").resolve() and path == [(tmp_path / "lib").resolve()]
    (tmp_path / "tox.ini").write_text("[flake8]\n")
    with pytest.raises(cli.UsageError, match=r"no \[pytest\]"):
        cli.read_inifile(tmp_path / "tox.ini")
