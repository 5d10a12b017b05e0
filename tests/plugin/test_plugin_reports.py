"""The JSON and HTML reports: options, schema, xdist, self-containment, escaping, a real browser."""

from __future__ import annotations

import base64
import html
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pytest_tcav import atomic_files
from pytest_tcav.reports import html as report_html
from pytest_tcav.reports import json as report_json
from pytest_tcav.reports import plots as report_plots
from pytest_tcav.reports.json import SCHEMA, VERSION
from tests.helpers.plugin_helpers import make_project, summary_section

try:  # loaded up front, or in-process pytester runs would import it again each time
    import matplotlib.backends.backend_agg  # noqa: F401
    import matplotlib.figure  # noqa: F401

    PLOTS = True
except ImportError:  # the report extra is not installed: pages have tables only
    PLOTS = False

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_FILE = ROOT / "docs" / "report.schema.json"
ENV = report_json.environment("cpu")

CHECKS = """
import pytest
from pytest_tcav import assert_concept_insignificant, assert_concept_significant


def test_horizontal(model):
    assert_concept_significant(model, "horizontal", target="horizontal", layers=["conv", "relu"], require="any")


def test_noise(model):
    assert_concept_insignificant(model, "noisy", target=1, layers="relu")


def test_two_checks(model):
    assert_concept_significant(model, "horizontal", target=1, layers="relu")
    assert_concept_significant(model, "vertical", target=1, layers="relu", direction="negative")


def test_fails(model):
    assert_concept_significant(model, "noisy", target=1, layers="relu")


def test_error(model):
    assert_concept_significant(model, "horizontal", target=1, layers="nope")


@pytest.mark.xfail(reason="noise is not used", strict=True)
def test_xfail(model):
    assert_concept_significant(model, "noisy", target=0, layers="conv")


def test_plain():
    pass
"""

#: (id, concept, outcome, status) of every check of CHECKS, in report order.
EXPECTED = [
    ("test_checks.py::test_error#0", "horizontal", "error", "error"),
    ("test_checks.py::test_fails#0", "noisy", "failed", "failed"),
    ("test_checks.py::test_horizontal#0", "horizontal", "passed", "passed"),
    ("test_checks.py::test_noise#0", "noisy", "passed", "passed"),
    ("test_checks.py::test_two_checks#0", "horizontal", "passed", "passed"),
    ("test_checks.py::test_two_checks#1", "vertical", "passed", "passed"),
    ("test_checks.py::test_xfail#0", "noisy", "failed", "xfailed"),
]


# -- a small JSON Schema checker (the subset docs/report.schema.json uses) ---------------


_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}


def _is_type(value: Any, name: str) -> bool:
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, _TYPES[name])


def schema_errors(value: Any, schema: dict[str, Any], root: dict[str, Any], where: str = "$") -> list[str]:
    """Violations of ``schema`` by ``value``: type, const, enum, required, properties, items, minimum, $ref."""
    if "$ref" in schema:
        target: Any = root
        for part in schema["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        return schema_errors(value, target, root, where)
    errors = []
    types = schema.get("type")
    if types is not None:
        names = [types] if isinstance(types, str) else types
        if not any(_is_type(value, name) for name in names):
            return [f"{where}: {value!r:.60} is not of type {types}"]
    if "const" in schema and value != schema["const"]:
        errors.append(f"{where}: {value!r} != {schema['const']!r}")
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{where}: {value!r} not in {schema['enum']}")
    if "minimum" in schema and _is_type(value, "number") and value < schema["minimum"]:
        errors.append(f"{where}: {value} < {schema['minimum']}")
    if isinstance(value, dict):
        errors += [f"{where}: missing {key!r}" for key in schema.get("required", []) if key not in value]
        properties = schema.get("properties", {})
        for key, item in value.items():
            if key in properties:
                errors += schema_errors(item, properties[key], root, f"{where}.{key}")
            elif isinstance(schema.get("additionalProperties"), dict):
                errors += schema_errors(item, schema["additionalProperties"], root, f"{where}.{key}")
    if isinstance(value, list) and "items" in schema:
        for k, item in enumerate(value):
            errors += schema_errors(item, schema["items"], root, f"{where}[{k}]")
    return errors


def validate(report: dict[str, Any]) -> None:
    schema = json.loads(SCHEMA_FILE.read_text())
    errors = schema_errors(report, schema, schema)
    assert not errors, "\n".join(errors[:20])
    try:
        import jsonschema
    except ImportError:
        return
    jsonschema.validate(report, schema)  # the full validator too, where it is installed


# -- pytest runs -------------------------------------------------------------------------


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    make_project(pytester)
    pytester.makepyfile(test_checks=CHECKS)
    return pytester


_SERIAL_RUNS: dict[str, tuple[str, Path, Path]] = {}


@pytest.fixture
def serial_run(request: pytest.FixtureRequest) -> tuple[str, Path, Path]:
    """Output and report paths of an in-process run of CHECKS writing both reports into a new folder.

    The run is made once and shared by the tests that read its reports (it
    takes seconds, and they only read files that stay in its pytester folder).
    """
    if "run" not in _SERIAL_RUNS:
        project = request.getfixturevalue("project")
        result = project.runpytest("--tcav-json=out/report.json", "--tcav-html=out/report.html")
        result.assert_outcomes(passed=4, failed=2, xfailed=1)
        _SERIAL_RUNS["run"] = (result.stdout.str(), project.path / "out" / "report.json",
                               project.path / "out" / "report.html")
    return _SERIAL_RUNS["run"]


def test_json_report_of_a_run_is_valid_and_holds_every_check(serial_run: tuple[str, Path, Path]) -> None:
    output, json_path, html_path = serial_run
    report = json.loads(json_path.read_text())
    validate(report)
    assert (report["schema"], report["version"]) == (SCHEMA, VERSION) == ("pytest-tcav/report", 1)
    assert report["generator"]["via"] == "pytest" and report["exitstatus"] == 1
    env = report["environment"]
    assert env["torch"] and env["pytest"] and env["python"] == ".".join(map(str, sys.version_info[:3]))
    assert env["device"] == "cpu" and report["settings"]["random_sets"] == 5
    assert [(c["id"], c["concept"], c["outcome"], c["status"]) for c in report["checks"]] == EXPECTED
    assert report["summary"] == {"checks": 7, "passed": 4, "failed": 1, "error": 1, "xfailed": 1}
    by_id = {c["id"]: c for c in report["checks"]}
    horizontal = by_id["test_checks.py::test_horizontal#0"]
    assert horizontal["target"] == "horizontal (1)" and horizontal["require"] == "any"
    assert horizontal["verdict"] == "significant on 1/2, inconclusive on 1/2"
    assert horizontal["expectation"] == "significant"
    assert re.fullmatch(r"[0-9a-f]{64}", horizontal["model_fingerprint"])
    assert horizontal["settings"] == {"method": "gradient", "seed": 0, "n_random": 5, "n_concept_examples": 12,
                                      "n_inputs": 16, "correction": "holm", "null_test": "t"}
    conv, relu = horizontal["results"]
    assert (conv["layer"], relu["layer"]) == ("conv", "relu") and relu["significant"] is True
    for key in ("concept_scores", "concept_statistics", "cav_accuracies", "null_statistics", "null_scores"):
        assert len(relu[key]) == 5, key  # one per random set
    assert relu["score"] == pytest.approx(sum(relu["concept_scores"]) / 5)
    error = by_id["test_checks.py::test_error#0"]
    assert error["results"] == [] and "nope" in error["message"] and error["verdict"] == "error"
    assert by_id["test_checks.py::test_fails#0"]["message"].startswith("Why:")
    section = summary_section(output)
    assert f"TCAV JSON report: {json_path}" in section
    assert f"TCAV HTML report: {html_path}" in section
    assert not list(json_path.parent.glob(".*.tmp"))  # written through a temporary file, renamed


def test_html_report_of_a_run_is_self_contained(serial_run: tuple[str, Path, Path]) -> None:
    _, json_path, html_path = serial_run
    page = html_path.read_text()
    assert page.startswith("<!DOCTYPE html>") and "<style>" in page
    assert not re.search(r"<script|<link|@import|url\(", page, re.I)  # no JS, no external CSS or fonts
    sources = re.findall(r'(?:src|href)="([^"]*)"', page)
    assert sources and all(s.startswith(("data:image/png;base64,", "#check-")) for s in sources), sources
    images = [s for s in sources if s.startswith("data:")]
    assert len(images) == (6 if PLOTS else 0)  # one per check with results (the error has none)
    if PLOTS:
        assert base64.b64decode(images[0].split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    for check_id, _concept, _outcome, status in EXPECTED:
        assert check_id.split("#")[0] in page and status in page
    assert page.count('<section class="check ') == len(EXPECTED)
    assert "Per-random-set numbers" in page and ('id="no-plots"' in page) is not PLOTS


def test_report_options_in_help_and_ini_paths_relative_to_the_ini_file(pytester: pytest.Pytester) -> None:
    help_text = pytester.runpytest("--help").stdout.str()
    assert "--tcav-json=PATH" in help_text and "--tcav-html=PATH" in help_text
    assert "tcav_json (string)" in help_text
    make_project(pytester, ini=None)
    sub = pytester.mkdir("sub")
    pytester.makefile(".ini", pytest="[pytest]\ntcav_json = reports/tcav.json\n")
    (sub / "test_nothing.py").write_text("def test_ok():\n    pass\n")
    result = pytester.runpytest("sub")
    result.assert_outcomes(passed=1)
    report = json.loads((pytester.path / "reports" / "tcav.json").read_text())
    validate(report)
    assert report["checks"] == [] and report["summary"] == {"checks": 0}
    assert f"TCAV JSON report: {pytester.path / 'reports' / 'tcav.json'}" in result.stdout.str()


def test_an_unwritable_report_is_said_in_the_summary_not_an_internal_error(pytester: pytest.Pytester) -> None:
    make_project(pytester)
    pytester.makepyfile(test_one="def test_ok():\n    pass\n")
    pytester.mkdir("taken.json")  # a folder where the file should go
    result = pytester.runpytest("--tcav-json=taken.json")
    result.assert_outcomes(passed=1)
    assert result.ret == 0 and "INTERNALERROR" not in result.stdout.str()
    assert "TCAV JSON report NOT written to" in result.stdout.str()


def test_xdist_controller_writes_the_report_once_with_every_workers_checks(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each process that calls write_reports leaves a file named after itself.
    spy = project.mkdir("spy")
    project.makeconftest(Path(project.path, "conftest.py").read_text() + '''

def pytest_configure(config):
    import pytest_tcav.plugin.reporting as reporting

    original = reporting.write_reports
    me = config.workerinput["workerid"] if hasattr(config, "workerinput") else "controller"

    def spy(*args, **kwargs):
        with open(os.path.join(os.environ["SPY_DIR"], me), "a") as handle:
            handle.write("called\\n")
        return original(*args, **kwargs)

    reporting.write_reports = spy
''')
    monkeypatch.setenv("SPY_DIR", str(spy))
    monkeypatch.setenv("TINY_TORCH_THREADS", "1")
    result = project.runpytest_subprocess("-n", "2", "-v", "--tcav-json=report.json")
    result.assert_outcomes(passed=4, failed=2, xfailed=1)
    output = result.stdout.str()
    assert re.search(r"\[gw0\].*test_checks", output) and re.search(r"\[gw1\].*test_checks", output)
    assert sorted(p.name for p in spy.iterdir()) == ["controller"]
    assert (spy / "controller").read_text() == "called\n"
    report = json.loads((project.path / "report.json").read_text())
    validate(report)
    assert [(c["id"], c["concept"], c["outcome"], c["status"]) for c in report["checks"]] == EXPECTED
    # the device is the workers' (the controller ran no check and imported no torch for the report)
    assert report["environment"]["device"] == "cpu"
    assert report["environment"]["workers"] == {"gw0": "cpu", "gw1": "cpu"}
    assert f"TCAV JSON report: {project.path / 'report.json'}" in output


# -- report pieces ---------------------------------------------------------------------


def layer(name: str, significant: bool = True, **overrides: Any) -> dict[str, Any]:
    values = {"layer": name, "score": 0.9, "magnitude": 0.1, "statistic": 0.2, "null_mean": 0.0, "null_sd": 0.02,
              "t_statistic": 9.0, "p_value": 1e-5, "p_value_rank": 0.09, "p_corrected": 2e-5, "cav_accuracy": 0.95,
              "significant": significant, "concept_scores": [0.8, 0.9, 1.0], "concept_statistics": [0.1, 0.2, 0.3],
              "concept_magnitudes": [0.1, 0.1, 0.1], "cav_accuracies": [0.9, 0.95, 1.0],
              "null_statistics": [-0.01, 0.0, 0.01], "null_scores": [0.4, 0.5, 0.6]}
    values.update(overrides)
    return values


def record(**overrides: Any) -> dict[str, Any]:
    values = {"nodeid": "t.py::test_x", "seq": 3, "concept": "striped", "target": "zebra (0)",
              "layers": ["a", "b"], "expectation": "significant", "direction": "positive", "require": "all",
              "score_range": None, "alpha": 0.05, "results": [layer("a"), layer("b", False)],
              "model_fingerprint": "ab" * 32, "concept_fingerprint": "cd" * 32,
              "settings": {"method": "gradient", "seed": 0, "n_random": 3}, "outcome": "failed",
              "message": "Why: it is not."}
    values.update(overrides)
    return values


def stability_record() -> dict[str, Any]:
    """A stability check's record as pytest_tcav.checks.stability writes it: layer -> numbers, before and after."""
    side = {"a": {"score": 1.0, "statistic": 0.3, "p_value": 1e-4, "p_corrected": 2e-4, "cav_accuracy": 0.9,
                  "significant": True, "concept_scores": [1.0, 1.0, 0.9], "concept_statistics": [0.3, 0.31, 0.29]}}
    after = {"a": {**side["a"], "score": 0.4, "statistic": 0.05, "significant": False,
                   "concept_scores": [0.5, 0.4, 0.3], "concept_statistics": [0.04, 0.05, 0.06]}}
    return record(nodeid="t.py::test_stable", expectation="stable", layers=["a"], results=[layer("a")],
                  before=side, after=after,
                  stability={"baseline": "zebra-striped", "path": "baselines/zebra-striped.tcav.yaml",
                             "action": "checked", "tolerance": 0.1, "model_changed": True, "moved": ["a"],
                             "layers": [{"layer": "a", "score_before": 1.0, "score_after": 0.4, "p_value": 3e-4,
                                         "p_corrected": 3e-4, "moved": True}]},
                  custom={"anything": [1, 2]})


def test_non_finite_numbers_become_strings_and_the_json_is_strict() -> None:
    report = report_json.build_report([record(results=[layer("a", t_statistic=float("inf"),
                                                             null_sd=float("nan"))])], env=ENV)
    text = report_json.dumps(report)
    assert "NaN" not in text.replace('"NaN"', "") and "Infinity" not in text.replace('"Infinity"', "")
    data = json.loads(text)
    (check,) = data["checks"]
    assert check["results"][0]["t_statistic"] == "Infinity" and check["results"][0]["null_sd"] == "NaN"
    assert report_json.number("Infinity") == float("inf") and report_json.number("-Infinity") == float("-inf")
    assert check["id"] == "t.py::test_x#0" and "seq" not in check and check["test"] == "t.py::test_x"


def test_unknown_record_keys_are_kept_and_shown(tmp_path: Path) -> None:
    report = report_json.build_report([stability_record()], env=ENV)
    validate(json.loads(report_json.dumps(report)))
    (check,) = report["checks"]
    assert check["custom"] == {"anything": [1, 2]} and check["before"]["a"]["score"] == 1.0
    page = report_html.render_html(report, mpl=None)
    assert "Stability: baseline (before) vs this run (after)" in page
    assert "1.00 → 0.40" in page and "significant → not significant" in page  # before → after per layer
    assert "zebra-striped" in page and "comparison: moved" in page
    assert "More" in page and "anything" in page


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "deep" / "r.json"
    atomic_files.atomic_write_text(path, "old")
    assert path.read_text() == "old" and oct(path.stat().st_mode & 0o777) != oct(0o600)

    def broken(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError, match="disk full"):
        atomic_files.atomic_write_text(path, "new")
    assert path.read_text() == "old" and sorted(p.name for p in path.parent.iterdir()) == ["r.json"]


def test_user_text_is_escaped() -> None:
    evil = '<script>alert("x")</script>&'
    report = report_json.build_report(
        [record(nodeid=f"t.py::test[{evil}]", concept=evil, target=evil, message=evil,
                results=[layer(evil)], custom=evil)], env={**ENV, "device": evil})
    for mpl in (None, True):
        page = report_html.render_html(report, mpl=mpl)
        assert "<script" not in page and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;" in page


def test_without_matplotlib_the_page_has_tables_and_says_how_to_get_plots(monkeypatch: pytest.MonkeyPatch) -> None:
    report = report_json.build_report([record(), stability_record()], env=ENV)
    if PLOTS:
        with_plots = report_html.render_html(report)
        assert with_plots.count("data:image/png;base64,") == 3  # two checks and one before/after
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # "import matplotlib" now raises ImportError
    for name in [n for n in sys.modules if n.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    assert report_plots.load_matplotlib() is None
    page = report_html.render_html(report)
    assert "<img" not in page and 'id="no-plots"' in page and html.escape(report_plots.PLOT_HINT) in page
    assert "pytest-tcav[report]" in page
    assert page.count('<table class="layers">') == 2 and "p corrected" in page
    assert page.count('<table class="stability">') == 1


def test_a_plot_that_cannot_be_drawn_leaves_the_tables(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any) -> str:
        raise ValueError("bad numbers")

    monkeypatch.setattr(report_plots, "check_plot", broken)
    page = report_html.render_html(report_json.build_report([record()], env=ENV))
    assert "could not be drawn (ValueError: bad numbers)" in page and '<table class="layers">' in page


# -- a real browser --------------------------------------------------------------------


def chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("chromium is not installed (.ci/run installs Debian's chromium with apt-get where it can)")


def run_chromium(binary: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    profile = tmp_path / "chromium-profile"
    command = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=90)


def test_the_html_report_renders_in_headless_chromium(
    serial_run: tuple[str, Path, Path], tmp_path: Path
) -> None:
    binary = chromium()
    _, json_path, _ = serial_run
    report = json.loads(json_path.read_text())
    report["checks"].append(report_json.checks([stability_record()])[0])  # and a stability check
    page_path = tmp_path / "report.html"
    report_html.write_html(page_path, report)
    url = page_path.as_uri()

    dom = run_chromium(binary, tmp_path, "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    overview = re.search(r'<table class="overview">.*?</table>', dom.stdout, re.S)
    assert overview is not None, dom.stdout[:2000]
    rows = re.findall(r"<tr>.*?</tr>", overview.group(0), re.S)
    assert len(rows) == 1 + len(EXPECTED) + 1  # header, the run's checks, the stability check
    for check_id, concept, _outcome, status in EXPECTED:
        test = check_id.split("#")[0]
        assert any(test in row and concept in row and status in row for row in rows), test
    assert dom.stdout.count("<img") == (len(EXPECTED) - 1 + 2 if PLOTS else 0)  # error: none; stability: 2
    assert "Stability: baseline (before) vs this run (after)" in dom.stdout
    assert re.findall(r'<table class="layers">', dom.stdout)
    for stream in (dom.stderr,):
        assert "Uncaught" not in stream and "CONSOLE" not in stream, stream[-2000:]
        assert "net::ERR" not in stream, stream[-2000:]  # nothing was fetched from anywhere

    screenshot = tmp_path / "report.png"
    shot = run_chromium(binary, tmp_path, f"--screenshot={screenshot}", "--window-size=1280,2600",
                        "--hide-scrollbars", url)
    assert shot.returncode == 0 and screenshot.is_file(), shot.stderr[-2000:]
    assert "Uncaught" not in shot.stderr and "net::ERR" not in shot.stderr
    from PIL import Image

    with Image.open(screenshot) as image:
        assert image.size == (1280, 2600)
        colours = image.convert("L").resize((64, 128)).getextrema()
        assert colours[1] - colours[0] > 100  # not a blank page
    print(f"screenshot: {screenshot}")
