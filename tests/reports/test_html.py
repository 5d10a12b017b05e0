"""The HTML page rendered from a report: escaping, and tables without matplotlib or with a broken plot
(the --tcav-html runs and the headless browser are in tests/plugin/test_plugin_reports.py)."""

from __future__ import annotations

import base64
import html
import io
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from pytest_tcav.reports import examples as report_examples
from pytest_tcav.reports import html as report_html
from pytest_tcav.reports import json as report_json
from pytest_tcav.reports import plots as report_plots
from tests.helpers.report_records import ENV, PLOTS, layer, record, stability_record


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


# -- layout ------------------------------------------------------------------------------------


def test_the_verdict_comes_right_after_the_layer_and_early_in_the_overview() -> None:
    page = report_html.render_html(report_json.build_report([record(), stability_record()], env=ENV), mpl=None)
    for css in ("layers", "stability"):
        table = re.search(rf'<table class="{css}">.*?</table>', page, re.S)
        assert table is not None
        header = re.findall(r"<th(?: [^>]*)?>(.*?)</th>", table.group(0))
        assert [re.sub(r"<[^>]+>", "", h) for h in header[:2]] == ["layer", "verdict"]
        assert '<th class="verdict">verdict</th>' in table.group(0)
        assert 'class="key"' in table.group(0) and '<td class="verdict">' in table.group(0)
    overview = re.search(r'<table class="overview">.*?</table>', page, re.S)
    assert overview is not None
    assert re.findall(r"<th(?: [^>]*)?>(.*?)</th>", overview.group(0))[:3] == ["test", "result", "verdict"]
    assert 'data-label="verdict"' in overview.group(0)  # a narrow screen labels the cells of a check's card


def test_long_layer_names_may_wrap_at_their_dots() -> None:
    page = report_html.render_html(report_json.build_report(
        [record(layers=["encoder.layer.11.output"], results=[layer("encoder.layer.11.output")])], env=ENV), mpl=None)
    assert '<span class="key-name">encoder.<wbr>layer.<wbr>11.<wbr>output</span>' in page


# -- examples ----------------------------------------------------------------------------------


def _image(path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (32, 32)) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


def _image_library(tmp_path: Path) -> tuple[Path, Path]:
    concepts, inputs = tmp_path / "concepts", tmp_path / "inputs"
    for k in range(15):
        _image(concepts / "striped" / f"{k:03d}.png", (10 * k, 0, 0))
        _image(inputs / "zebra" / f"{k:03d}.png", (0, 10 * k, 0), size=(400, 300))
    _image(concepts / "random_0" / "007.jpg", (0, 0, 200))
    _image(tmp_path / "secret.png", (255, 255, 255))
    return concepts, inputs


def _evidence_layer(name: str, n_inputs: int, suspects: list[dict[str, Any]]) -> dict[str, Any]:
    cosines = [0.01 * k - 0.05 for k in range(n_inputs)]  # input k: cosine grows with k
    return layer(name, input_cosines=cosines, input_shares=[k / n_inputs for k in range(n_inputs)],
                 suspects=suspects)


SUSPECTS = [{"kind": "concept", "set": "striped", "set_index": 0, "index": 2, "id": "striped/002.png",
             "score": 0.9, "held_out": 5},
            {"kind": "random", "set": "random_0", "set_index": 1, "index": 7, "id": "random_0/007.jpg",
             "score": 0.8, "held_out": 9}]


def test_image_examples_are_thumbnails_from_the_runs_folders(tmp_path: Path) -> None:
    concepts, inputs = _image_library(tmp_path)
    examples = {"concept": [f"striped/{k:03d}.png" for k in range(15)] + ["striped/gone.png", "../secret.png"],
                "inputs": [f"zebra/{k:03d}.png" for k in range(15)], "random": [["random_0/007.jpg"]],
                "random_sets": ["random_0"]}
    report = report_json.build_report(
        [record(examples=examples, results=[_evidence_layer("a", 15, SUSPECTS)])], env=ENV,
        settings={"concepts": str(concepts), "inputs": str(inputs)})
    page = report_html.render_html(report, mpl=None)
    section = page[page.index("<h3>Examples</h3>"):]
    assert "Concept examples of <b>striped</b> <span class=\"ex-more\">(12 of 17)</span>" in section
    thumbs = re.findall(r'<img alt="([^"]*)" src="data:image/(png|jpeg);base64,([A-Za-z0-9+/=]+)" '
                        r'width="56" height="56">', section)
    names = [alt for alt, _, _ in thumbs]
    # 12 concept examples, 6 + 6 inputs, one suspect of each kind
    assert names[:12] == [f"striped/{k:03d}.png" for k in range(12)]
    assert names[12:18] == [f"zebra/{k:03d}.png" for k in (14, 13, 12, 11, 10, 9)]  # most along the concept
    assert names[18:24] == [f"zebra/{k:03d}.png" for k in (0, 1, 2, 3, 4, 5)]  # least along it
    assert names[24:] == ["striped/002.png", "random_0/007.jpg"]
    assert "cos +0.090" in section and "share 0.93" in section and "score 0.90" in section and "of 9 CAVs" in section
    from PIL import Image

    for _, _, data in thumbs:
        with Image.open(io.BytesIO(base64.b64decode(data))) as image:
            assert max(image.size) <= 56  # a 400 x 300 input is shrunk to 56 x 42
    assert len(page) < 200_000
    # a file that is gone, or outside the library, is shown by its id only
    page_all = report_html.render_html(report_json.build_report(
        [record(examples={**examples, "concept": ["striped/gone.png", "../secret.png", "/etc/passwd.png"]},
                results=[layer("a")])], env=ENV, settings={"concepts": str(concepts)}), mpl=None)
    assert "<img" not in page_all
    assert '<li class="ex-plain" title="striped/gone.png">' in page_all and "../secret.png" in page_all


def test_without_the_folders_examples_are_shown_by_id(tmp_path: Path) -> None:
    examples = {"concept": ["striped/000.png"], "inputs": ["zebra/000.png", "zebra/001.png"]}
    page = report_html.render_html(report_json.build_report(
        [record(examples=examples, results=[_evidence_layer("a", 2, [])])], env=ENV), mpl=None)
    assert "<img" not in page and '<span class="ex-id">zebra/001.png</span>' in page


def test_the_thumbnails_of_a_page_have_a_budget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    concepts, inputs = _image_library(tmp_path)
    thumbnails = report_examples.Thumbnails(concepts=concepts, inputs=inputs, budget=1)
    assert thumbnails.uri("striped/000.png", input_=False) is not None  # the first one is made
    assert thumbnails.uri("striped/001.png", input_=False) is None and thumbnails.over_budget == 1
    report = report_json.build_report(
        [record(examples={"concept": [f"striped/{k:03d}.png" for k in range(15)]}, results=[layer("a")])], env=ENV,
        settings={"concepts": str(concepts)})
    monkeypatch.setattr(report_examples, "THUMB_BUDGET", 1)
    page = report_html.render_html(report, mpl=None)
    assert page.count("<img") == 1 and 'id="thumbnail-budget"' in page and "11 example(s)" in page


def test_text_examples_are_sentences_and_tensors_their_indices() -> None:
    evil = '<img src=x onerror="alert(1)">'
    text = {"concept": ["adjectives.txt:1", "adjectives.txt:2"], "concept_texts": ["wonderful", evil],
            "inputs": ["positive.txt:1", "positive.txt:2"], "input_texts": ["a fine film", "a dull film"]}
    suspects = [{"kind": "concept", "set": "adjectives", "set_index": 0, "index": 1, "id": "adjectives.txt:2",
                 "score": 1.0, "held_out": 3}]
    tensors = {"concept": ["#0", "#1"], "inputs": ["#0", "#1", "#2", "#3"]}
    report = report_json.build_report(
        [record(examples=text, results=[_evidence_layer("a", 2, suspects)]),
         record(nodeid="t.py::test_tensors", examples=tensors, results=[_evidence_layer("a", 4, [])])], env=ENV)
    page = report_html.render_html(report, mpl=None)
    assert "<img src=x" not in page and "<q>&lt;img src=x onerror=&quot;alert(1)&quot;&gt;</q>" in page
    assert "<q>wonderful</q>" in page and "<q>a dull film</q>" in page
    assert '<span class="ex-id">#3</span>' in page and "<img" not in page


# -- concept similarity ------------------------------------------------------------------------


def _direction(*values: float) -> dict[str, Any]:
    return {"cav_direction": list(values), "cav_features": len(values)}


def test_concepts_of_one_layer_get_a_similarity_matrix_and_a_sentence_when_alike() -> None:
    records = [
        record(nodeid="t.py::a", concept="striped", results=[layer("conv3", **_direction(1.0, 0.0, 0.1))]),
        record(nodeid="t.py::b", concept="zigzagged", results=[layer("conv3", **_direction(0.9, 0.1, 0.1))]),
        record(nodeid="t.py::c", concept="dotted", results=[layer("conv3", **_direction(0.0, 1.0, 0.0))]),
        record(nodeid="t.py::d", concept="striped", results=[layer("conv3", **_direction(1.0, 0.0, 0.1))]),
        record(nodeid="t.py::e", concept="<b>", results=[layer("conv2", **_direction(1.0, 0.0))]),  # alone
    ]
    page = report_html.render_html(report_json.build_report(records, env=ENV), mpl=None)
    section = page[page.index('<section id="similarity">'):]
    section = section[:section.index("</section>")]
    assert section.count('<table class="similarity">') == 1 and "conv2" not in section
    assert "<th>striped</th><th>zigzagged</th><th>dotted</th>" in section  # each concept once
    assert ("<b>striped</b> and <b>zigzagged</b> are one direction on <b>conv3</b> (0.99): a relative test "
            "cannot separate them there.") in section
    assert "dotted</b> are one" not in section
    # another model's checks at a layer of the same name are another matrix
    other = [record(nodeid="t.py::f", concept=concept, model_fingerprint="ef" * 32,
                    results=[layer("conv3", **_direction(0.0, 0.0, 1.0))]) for concept in ("striped", "dotted")]
    page = report_html.render_html(report_json.build_report(records + other[:1], env=ENV), mpl=None)
    assert page.count('<table class="similarity">') == 1  # the other model has one concept there: no matrix
    page = report_html.render_html(report_json.build_report(records + other, env=ENV), mpl=None)
    assert page.count('<table class="similarity">') == 2
    assert "conv3 <span class=\"meta\">(model abababababab)</span>" in page and "(model efefefefefef)" in page


def test_no_similarity_section_without_directions() -> None:
    page = report_html.render_html(report_json.build_report([record(), record(concept="dotted")], env=ENV), mpl=None)
    assert 'id="similarity"' not in page


def test_inputs_that_all_share_one_cosine_are_not_ranked_and_pool_suspects_are_shown_once() -> None:
    examples = {"concept": ["c.txt:1"], "concept_texts": ["zebra"], "inputs": ["#0", "#1", "#2"],
                "random": [["r.txt:4"], ["r.txt:4"]], "random_texts": [["a pool line"], ["a pool line"]]}
    suspects = [{"kind": "random", "set": f"random[{k}]", "set_index": k + 1, "index": 0, "id": "r.txt:4",
                 "score": score, "held_out": 10} for k, score in ((0, 0.9), (1, 0.8))]
    flat = layer("head", input_cosines=[0.5821, 0.5822, 0.5820], input_shares=[1.0, 1.0, 1.0], suspects=suspects)
    page = report_html.render_html(report_json.build_report([record(examples=examples, results=[flat])], env=ENV),
                                   mpl=None)
    assert "Every input has the same cosine with the concept's CAVs here (+0.582)" in page
    assert "Inputs most along" not in page
    assert page.count("<q>a pool line</q>") == 1 and "score 0.90" in page and "in 2 random sets" in page
