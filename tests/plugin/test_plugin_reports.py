"""The JSON and HTML reports of pytest runs: options, schema, xdist, self-containment, a real browser.

The reports built from hand-made records are tested in tests/reports/ (test_json.py, test_html.py).
"""

from __future__ import annotations

import base64
import html
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pytest_tcav.reports import html as report_html
from pytest_tcav.reports import json as report_json
from pytest_tcav.reports.json import SCHEMA, VERSION
from tests.helpers.plugin_helpers import make_project, summary_section
from tests.helpers.report_records import PLOTS, stability_record, validate

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


@pytest.mark.slow  # runs pytest (serial_run)
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
                                      "n_inputs": 16, "correction": "holm", "null_test": "t", "null": "random",
                                      "null_source": "5 random sets"}
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


@pytest.mark.slow  # runs pytest (serial_run)
def test_html_report_of_a_run_is_self_contained(serial_run: tuple[str, Path, Path]) -> None:
    _, json_path, html_path = serial_run
    page = html_path.read_text()
    assert page.startswith("<!DOCTYPE html>") and "<style>" in page
    assert not re.search(r"<script|<link|@import|url\(", page, re.I)  # no JS, no external CSS or fonts
    sources = re.findall(r'(?:src|href)="([^"]*)"', page)
    inline = ("data:image/png;base64,", "data:image/jpeg;base64,", "#check-")
    assert sources and all(s.startswith(inline) for s in sources), sources
    plots = re.findall(r'<figure><img alt="[^"]*" src="([^"]*)"', page)
    assert len(plots) == (6 if PLOTS else 0)  # one per check with results (the error has none)
    if PLOTS:
        assert base64.b64decode(plots[0].split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    # the examples: thumbnails of the project's images, each a small picture
    thumbnails = re.findall(r'<li class="ex-thumb" title="[^"]*"><img alt="[^"]*" src="data:image/[a-z]+;base64,'
                            r'([^"]*)"', page)
    assert thumbnails and all(len(t) < 8000 for t in thumbnails)
    for check_id, _concept, _outcome, status in EXPECTED:
        assert check_id.split("#")[0] in page and status in page
    assert page.count('<section class="check ') == len(EXPECTED)
    assert "Per-set numbers" in page and ('id="no-plots"' in page) is not PLOTS


@pytest.mark.slow  # runs pytest
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


@pytest.mark.slow  # runs pytest
def test_an_unwritable_report_is_said_in_the_summary_not_an_internal_error(pytester: pytest.Pytester) -> None:
    make_project(pytester)
    pytester.makepyfile(test_one="def test_ok():\n    pass\n")
    pytester.mkdir("taken.json")  # a folder where the file should go
    result = pytester.runpytest("--tcav-json=taken.json")
    result.assert_outcomes(passed=1)
    assert result.ret == 0 and "INTERNALERROR" not in result.stdout.str()
    assert "TCAV JSON report NOT written to" in result.stdout.str()


@pytest.mark.slow  # runs pytest
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


@pytest.mark.slow  # runs pytest (serial_run)
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
    # plots: one per check but the error, two for the stability check
    assert dom.stdout.count("<figure><img") == (len(EXPECTED) - 1 + 2 if PLOTS else 0)
    assert 'class="ex-thumb"' in dom.stdout  # the examples, as thumbnails of the project's images
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


#: Run in the page that frames the report (at a given width): where each verdict cell is, before and after
#: every scrolling box is scrolled to its right end, and which images did not decode.
_PROBE = """<script>
window.addEventListener("load", function () {
  var doc = document.getElementById("page").contentDocument, width = doc.documentElement.clientWidth;
  function measure() {
    var out = [];
    doc.querySelectorAll("td.verdict").forEach(function (cell) {
      var r = cell.getBoundingClientRect();
      out.push([cell.closest("table").className, cell.textContent.trim(), r.left, r.right]);
    });
    return out;
  }
  var initial = measure();
  doc.querySelectorAll(".scroll").forEach(function (box) { box.scrollLeft = box.scrollWidth; });
  var broken = Array.prototype.filter.call(doc.images, function (img) { return !(img.naturalWidth > 0); });
  var pre = document.createElement("pre");
  pre.id = "probe";
  pre.textContent = JSON.stringify({width: width, initial: initial, scrolled: measure(),
                                    images: doc.images.length, broken: broken.length});
  document.body.appendChild(pre);
});
</script>"""


def verdict_positions(binary: str, tmp_path: Path, page: str, width: int) -> dict[str, Any]:
    """The probe's findings for the page shown ``width`` pixels wide.

    Headless Chromium's window is at least 500 pixels wide, so the page is
    framed in an iframe of that width (``srcdoc``: the same origin as the
    probe, which reads its layout).
    """
    frame = (f'<!DOCTYPE html><html><head><meta charset="utf-8"></head><body style="margin:0">'
             f'<iframe id="page" style="width:{width}px;height:1200px;border:0" '
             f'srcdoc="{html.escape(page, quote=True)}"></iframe>{_PROBE}</body></html>')
    path = tmp_path / f"probe-{width}.html"
    path.write_text(frame, encoding="utf-8")
    dom = run_chromium(binary, tmp_path, "--hide-scrollbars", "--window-size=1300,1300", "--dump-dom",
                       path.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom.stdout, re.S)
    assert found is not None, dom.stdout[-2000:]
    return json.loads(html.unescape(found.group(1)))


@pytest.mark.slow  # runs pytest (serial_run) and a browser
def test_every_verdict_is_in_view_at_1200_and_390_pixels(serial_run: tuple[str, Path, Path], tmp_path: Path) -> None:
    binary = chromium()
    _, json_path, _ = serial_run
    report = json.loads(json_path.read_text())
    report["checks"].append(report_json.checks([stability_record()])[0])
    page = report_html.render_html(report)
    measured = [r for check in report["checks"] for r in check["results"]]
    stability_rows = 1
    page_path = tmp_path / "page.html"
    page_path.write_text(page, encoding="utf-8")
    for width in (1200, 390):
        probe = verdict_positions(binary, tmp_path, page, width)
        assert probe["width"] == width
        assert probe["images"] > 0 and probe["broken"] == 0
        tables = [table for table, *_ in probe["initial"]]
        assert tables.count("overview") == len(report["checks"])
        assert tables.count("layers") == len(measured) and tables.count("stability") == stability_rows
        for when in ("initial", "scrolled"):  # the layer tables keep it in view when they scroll sideways
            for table, text, left, right in probe[when]:
                assert text and 0 <= left and right <= width + 0.5, (width, when, table, text, left, right)
        screenshot = tmp_path / f"report-{width}.png"
        shot = run_chromium(binary, tmp_path, f"--screenshot={screenshot}", f"--window-size={width},2400",
                            "--hide-scrollbars", page_path.as_uri())
        assert shot.returncode == 0 and screenshot.is_file(), shot.stderr[-2000:]
        print(f"screenshot: {screenshot}")
