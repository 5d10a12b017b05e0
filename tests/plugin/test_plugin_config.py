"""Configuration in real runs: ini keys, --tcav-* overrides, usage errors, path rules, --help.

The settings themselves (defaults, validation) are tested in tests/test_config.py."""

from __future__ import annotations

import json

import pytest

from pytest_tcav.config import OPTIONS
from tests.helpers.plugin_helpers import make_project

pytestmark = pytest.mark.slow  # every test here runs pytest

SHOW_CONFIG = """
import json

def test_show(tcav):
    c = tcav.config
    print("\\nCONFIG " + json.dumps([str(c.concepts), str(c.inputs), dict(c.classes), c.transform, c.random_sets,
                                     c.alpha, c.seed, c.device, c.batch_size, c.method, c.n_steps, c.correction]))
"""


def shown(result: pytest.RunResult) -> list[object]:
    line = next(line for line in result.outlines if line.startswith("CONFIG "))
    return json.loads(line.split(" ", 1)[1])


def test_help_lists_every_option_and_ini_key(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    assert result.ret == 0
    text = result.stdout.str()
    assert "concept tests (pytest-tcav):" in text
    for option in OPTIONS:
        assert option.flag in text
        assert f"{option.key} (" in text  # the ini section: "tcav_alpha (string):"


def test_ini_keys_are_read_and_paths_are_relative_to_the_ini_file(pytester: pytest.Pytester) -> None:
    pytester.mkdir("sub")
    pytester.makefile(".ini", pytest="""
        [pytest]
        tcav_concepts = lib/concepts
        tcav_inputs = lib/inputs
        tcav_classes =
            zebra=340
            tiger=292
        tcav_transform = os.path:basename
        tcav_random_sets = 12
        tcav_alpha = 0.01
        tcav_seed = 7
        tcav_device = cpu
        tcav_batch_size = 16
        tcav_method = integrated_gradients
        tcav_n_steps = 3
        tcav_correction = bonferroni
    """)
    pytester.makepyfile(test_show=SHOW_CONFIG)
    root = pytester.path.resolve()
    result = pytester.runpytest("-s", "--rootdir", str(root), "sub/..")
    result.assert_outcomes(passed=1)
    assert shown(result) == [
        str(root / "lib/concepts"), str(root / "lib/inputs"), {"zebra": 340, "tiger": 292},
        "os.path:basename", 12, 0.01, 7, "cpu", 16, "integrated_gradients", 3, "bonferroni",
    ]
    assert "tcav: concepts=" in result.stdout.str()  # the report header, shown when configured


def test_pyproject_toml_is_read(pytester: pytest.Pytester) -> None:
    pytester.makepyprojecttoml("""
        [tool.pytest.ini_options]
        tcav_concepts = "concepts"
        tcav_random_sets = 4
        tcav_alpha = 0.1
        tcav_classes = ["zebra=340", "tiger=292"]
    """)
    pytester.makepyfile(test_show=SHOW_CONFIG)
    result = pytester.runpytest("-s")
    result.assert_outcomes(passed=1)
    values = shown(result)
    assert values[0] == str(pytester.path.resolve() / "concepts")
    assert values[2] == {"zebra": 340, "tiger": 292}
    assert values[4:6] == [4, 0.1]


def test_command_line_wins_and_its_paths_are_relative_to_the_invocation_dir(pytester: pytest.Pytester) -> None:
    pytester.makefile(".ini", pytest="""
        [pytest]
        tcav_concepts = from_ini
        tcav_random_sets = 12
        tcav_alpha = 0.01
        tcav_classes = zebra=340
    """)
    pytester.makepyfile(test_show=SHOW_CONFIG)
    work = pytester.mkdir("work")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(work)
        result = pytester.runpytest(
            "-s", "-c", str(pytester.path / "pytest.ini"), str(pytester.path),
            "--tcav-concepts=cli_concepts", "--tcav-random-sets", "3", "--tcav-alpha=0.2",
            "--tcav-classes", "tiger=292,lion=291", "--tcav-seed=5", "--tcav-correction=none",
        )
    result.assert_outcomes(passed=1)
    values = shown(result)
    assert values[0] == str(work.resolve() / "cli_concepts")
    assert values[2] == {"tiger": 292, "lion": 291}
    assert values[4:7] == [3, 0.2, 5]
    assert values[-1] == "none"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tcav-alpha=2"], "--tcav-alpha must lie strictly between 0 and 1"),
        (["--tcav-method=saliency"], "--tcav-method must be one of gradient, integrated_gradients"),
        (["--tcav-random-sets=many"], "--tcav-random-sets must be an integer"),
    ],
)
def test_bad_command_line_values_are_usage_errors(pytester: pytest.Pytester, args: list[str], message: str) -> None:
    pytester.makepyfile(test_x="def test_x(): pass")
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*pytest-tcav: {message}*"])


def test_bad_ini_value_is_a_usage_error_naming_the_file(pytester: pytest.Pytester) -> None:
    pytester.makefile(".ini", pytest="[pytest]\ntcav_batch_size = -4\n")
    pytester.makepyfile(test_x="def test_x(): pass")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*pytest-tcav: tcav_batch_size in pytest.ini must be at least 1, got -4*"])


def test_missing_library_folder_fails_only_the_tests_that_use_it(pytester: pytest.Pytester) -> None:
    make_project(pytester, data=False, ini="[pytest]\ntcav_concepts = nowhere\ntcav_random_sets = 5\n")
    pytester.makepyfile(test_it="""
        from pytest_tcav import assert_concept_significant

        def test_plain():
            pass

        def test_concept(model):
            assert_concept_significant(model, "horizontal", target=1, layers="relu")
    """)
    result = pytester.runpytest()
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*ConceptDataError: the concept library folder '*nowhere' "
                                 "(tcav_concepts in pytest.ini) does not exist*"])


def test_configured_transform_loads_the_images(pytester: pytest.Pytester) -> None:
    make_project(pytester, ini="""
        [pytest]
        pythonpath = .
        tcav_concepts = data/concepts
        tcav_inputs = data/inputs
        tcav_random_sets = 5
        tcav_transform = preprocessing:to_tensor
    """)
    pytester.makepyfile(preprocessing="""
        import numpy as np
        import torch

        CALLS = []

        def to_tensor(image):
            CALLS.append(1)
            array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
            return torch.from_numpy(array).permute(2, 0, 1).contiguous()
    """)
    pytester.makepyfile(test_it="""
        import preprocessing
        from pytest_tcav import assert_concept_significant

        def test_transform_used(model):
            assert_concept_significant(model, "horizontal", target=1, layers="relu")
            assert len(preprocessing.CALLS) == 12 * 6 + 16  # concept, 5 random sets, inputs
    """)
    pytester.runpytest().assert_outcomes(passed=1)


def test_device_setting_must_match_the_model(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a machine with one GPU, in this process
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    make_project(pytester)
    pytester.makepyfile(test_it="""
        import pytest
        from pytest_tcav import ConfigurationError

        def test_device(tcav, model):
            assert str(tcav.device) == "cuda"
            with pytest.raises(ConfigurationError, match="model is on cpu but --tcav-device asks for cuda"):
                tcav.score(model, "horizontal", target=1, layers="relu")
    """)
    pytester.runpytest_inprocess("--tcav-device=cuda").assert_outcomes(passed=1)


@pytest.mark.parametrize(("setting", "gpus", "message"), [
    (["--tcav-device=cuda"], 0, "--tcav-device: 'cuda' is not available on this machine (cuda devices: none; "),
    (["-o", "tcav_device=cuda:1"], 1, "tcav_device in pytest.ini: 'cuda:1' is not available on this machine "
                                      "(cuda devices: cuda:0; "),
    (["--tcav-device=mps"], 0, "--tcav-device: 'mps' is not available on this machine (mps devices: none"),
    (["--tcav-device=gpu"], 0, "--tcav-device: 'gpu' is not a device; use cpu, cuda, cuda:N"),
])
def test_a_device_this_machine_lacks_is_a_usage_error_at_startup(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, setting: list[str], gpus: int,
        message: str) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpus > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    make_project(pytester, data=False)
    pytester.makepyfile(test_it="def test_plain():\n    pass\n")
    result = pytester.runpytest_inprocess(*setting)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert f"ERROR: pytest-tcav: {message}" in result.stderr.str()
