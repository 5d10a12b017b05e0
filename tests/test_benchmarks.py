"""Smoke tests of the benchmark scripts: each one's core runs at tiny sizes, so that they do not rot.

Nothing here is timed or compared to a time: the figures come from running the
scripts themselves (benchmarks/README.md).  GoogLeNet runs at 32x32 on sets of
five images, on one thread.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import bench_common  # noqa: E402
import calibration_equivalence  # noqa: E402
import engine_parts  # noqa: E402
import gpu_tutorial_shape  # noqa: E402
import import_cost  # noqa: E402
import library_spread  # noqa: E402
import relative_calibration  # noqa: E402
import rerun  # noqa: E402
import significance  # noqa: E402
import sweep  # noqa: E402
import vs_captum  # noqa: E402

TINY = dict(images=5, inputs=2, size=32)


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.mark.slow  # over a second
def test_tutorial_shape_against_captum() -> None:
    pytest.importorskip("captum")
    record = vs_captum.run(**TINY)
    json.dumps(record)
    assert record["computed"] == {"gradients": 3, "cav": 30, "activations": 15}
    assert record["experimental_sets"] == 7 and record["captum_over_ours"] > 0 and record["process_peak_rss_mb"] > 0
    assert record["worst_sign_count_inputs"] <= record["n_inputs"]
    vs_captum.report(record)


@pytest.mark.slow  # over a second
@pytest.mark.filterwarnings("ignore:Precision loss occurred:RuntimeWarning")  # scipy, on tiny identical scores
def test_significance_shape_against_captums_recipe() -> None:
    pytest.importorskip("captum")
    record = significance.run(random_sets=3, **TINY)
    json.dumps(record)
    assert record["ours_cavs_per_layer"] == 3 + 3 and record["captum_experimental_sets"] == 3 + 2
    assert set(record["captum_p"]) == set(record["ours_p"]) == set(bench_common.LAYERS)
    assert record["computed"]["cav"] == 3 * 6
    significance.report(record)


def test_significance_shape_without_captum() -> None:
    record = significance.run(random_sets=3, captum=False, **TINY)
    assert record["captum_s"] is None and record["captum_over_ours"] is None
    significance.report(record)


@pytest.mark.slow  # over a second
def test_rerun_children(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The rerun's children, in this process: the second run of ours computes nothing."""
    first = rerun.child("ours", str(tmp_path / "cache"), **TINY)
    again = rerun.child("ours", str(tmp_path / "cache"), **TINY)
    assert sum(first["computed"].values()) > 0 and sum(again["computed"].values()) == 0
    assert again["p"] == first["p"] and sum(again["disk"]["hits"].values()) > 0
    assert rerun.main(["--child", "ours", "--folder", str(tmp_path / "cache"), "--images", "5", "--inputs", "2",
                       "--size", "32"]) == 0
    assert sum(json.loads(capsys.readouterr().out.strip())["computed"].values()) == 0
    if bench_common.have_captum():
        assert rerun.child("captum", str(tmp_path / "captum"), **TINY)["seconds"] > 0


@pytest.mark.slow  # over a second
def test_gpu_script_prints_one_json_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert gpu_tutorial_shape.main(["--device", "cpu", "--images", "5", "--inputs", "2", "--size", "32",
                                    "--repeat", "1"]) == 0
    (line,) = capsys.readouterr().out.strip().splitlines()
    record = json.loads(line)
    assert record["errors"] == {} and record["device"] == "cpu"
    assert record["ours_first_s"] > 0 and record["ours_rerun_s"] > 0 and record["floor_s"] > 0
    if bench_common.have_captum():
        assert record["captum_first_s"] > 0 and record["captum_rerun_s"] > 0


def test_gpu_script_without_a_gpu_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    args = argparse.Namespace(device="cuda", images=5, inputs=2, size=32, repeat=1, skip_captum=True)
    record = gpu_tutorial_shape.measure(args)
    assert "skipped" in record and "ours_first_s" not in record


@pytest.mark.slow  # over a second
def test_gpu_script_records_a_failing_stage(monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("captum broke")

    monkeypatch.setattr(gpu_tutorial_shape, "captum_run", broken)
    assert gpu_tutorial_shape.main(["--device", "cpu", "--images", "5", "--inputs", "2", "--size", "32",
                                    "--repeat", "1"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["ours_first_s"] > 0
    if bench_common.have_captum():
        assert record["errors"]["captum_first"] == "RuntimeError: captum broke"
        assert record["captum_first_s"] is None


def test_gpu_script_gives_cuda_an_index(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 2)
    assert gpu_tutorial_shape.resolve_device("cuda") == torch.device("cuda", 2)
    assert gpu_tutorial_shape.resolve_device("cuda:1") == torch.device("cuda", 1)
    assert gpu_tutorial_shape.resolve_device("cpu") == torch.device("cpu")


@pytest.mark.slow  # over a second
def test_import_cost() -> None:
    record = import_cost.run(repeat=1)
    json.dumps(record)
    assert record["plugin_import"]["heavy_loaded"] == []  # the claim docs/architecture.md makes
    assert "torch" not in record["diff_import"]["heavy_loaded"]
    assert record["pytest_run"]["ratio_median"] > 0
    import_cost.report(record)


@pytest.mark.slow  # trains a model
def test_library_spread_core(texture_model: torch.nn.Module, tmp_path: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    """Two libraries, three pseudo-concepts, N = 3 and 5: every record the report and the diagnostics read."""
    out = tmp_path / "spread.json"
    record = library_spread.measure("texture", libraries=2, n_pseudo=3, n_values=[3, 5], seed=1, out=out,
                                    set_size=6, n_inputs=4, warm_checks=1, model=texture_model)
    assert json.loads(out.read_text()) == json.loads(json.dumps(record))
    assert len(record["libraries"]) == 2 and set(record["cost"]) == {"3", "5"}
    for library in record["libraries"]:
        assert len(library["5"]["p"]) == 3 and len(library["5"]["null"][0]) == 5
        assert len(library["3"]["null"][0]) == 3
    summary = library_spread.summarise(record)
    mean, low, high = summary["per_n"]["5"]["spread"]["conv1"]
    assert 0 <= low <= mean <= high <= 1
    assert set(library_spread.diagnose(record)["3"]) == set(library_spread.LAYERS)
    assert library_spread.main(["--from-json", str(out)]) == 0
    assert "per-library false-positive rate" in capsys.readouterr().out


def test_gaussian_reference_is_calibrated_on_average() -> None:
    """The derivation's Gaussian model: exactly alpha over libraries, with a spread that shrinks with N."""
    small = library_spread.gaussian_library_rates(10, libraries=20000)
    large = library_spread.gaussian_library_rates(50, libraries=20000)
    assert abs(small.mean() - 0.05) < 0.002 and abs(large.mean() - 0.05) < 0.002
    assert np.percentile(large, 90) - np.percentile(large, 10) < np.percentile(small, 90) - np.percentile(small, 10)


@pytest.mark.slow  # over a second
def test_relative_calibration_core() -> None:
    """Two exchangeable pairs and one planted draw on an untrained SmallCNN (no training: seconds)."""
    from tests.helpers import synthetic

    torch.manual_seed(0)
    model = synthetic.SmallCNN().eval()
    counts = relative_calibration.false_positives(model, synthetic.random_images, synthetic.stripes, 2, seed=1)
    assert counts["n"] == 2 and 0 <= counts["positive"] <= 2 and counts["layer"].shape == (3,)
    hits, per_layer = relative_calibration.power(model, synthetic.stripes, [synthetic.dots, synthetic.noise],
                                                 synthetic.stripes, "positive", 1, seed=2)
    assert 0 <= hits <= 1 and per_layer.shape == (3,)
    assert relative_calibration.rate(1, 20).startswith("1/20 = 0.050 [0.001, 0.249]")


@pytest.mark.slow  # over a second
def test_calibration_equivalence_quick(capsys: pytest.CaptureFixture[str]) -> None:
    """``--quick``: every part runs and prints its rates with intervals (the figures are meaningless)."""
    assert calibration_equivalence.main(["--quick"]) == 0
    out = capsys.readouterr().out
    for part in ("(a) false equivalence", "(b) pass rate at zero effect", "(c) the CAV gate", "(d) relative TCAV"):
        assert part in out
    assert "pooled: " in out and "] [" in out  # a Clopper-Pearson interval, then the assertion's count
    assert calibration_equivalence.rate(1, 20) == "1/20 = 0.050 [0.001, 0.249]"


@pytest.mark.slow  # over a second
def test_sweep_quick_runs_each_point_in_a_child(capsys: pytest.CaptureFixture[str]) -> None:
    """``--quick``: two ResNet-18 points, each in its own process, every figure of the table present."""
    assert sweep.main(["--quick", "--threads", "1", "--json"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    record = json.loads(lines[-1])
    assert [json.loads(line)["point"] for line in lines if line.startswith('{"point"')] == record["points"]
    assert [(p["random_sets"], p["examples"]) for p in record["points"]] == [(3, 5), (4, 5)]
    for point in record["points"]:
        assert "error" not in point, point
        assert point["cavs"] == point["cavs_expected"] == 3 * (point["random_sets"] * (point["random_sets"] + 1) // 2)
        assert point["activations"] == point["activations_expected"] and point["threads"] == 1
        assert point["seconds"] > 0 and point["floor_s"] > 0 and point["beyond_floor"] > -1
        assert point["peak_rss_mib"] >= point["rss_before_test_mib"] > 0 and point["data_mib"] > 0
    assert record["goals"]["beyond_floor"]["met"] is None  # no point at 50 random sets
    assert any(line.startswith("| resnet18 | 3 | 5 |") for line in lines)
    assert "goal: beyond floor <= 25% at 50 random sets: not measured" in "\n".join(lines)


@pytest.mark.slow  # over a second
@pytest.mark.parametrize("model", ["resnet50", "vit_b_16", "bert_base"])
def test_sweep_big_models_at_tiny_configs(model: str) -> None:
    """One point of each bigger model, in this process, at tiny sizes with the full model's layer names."""
    spec = {"model": model, "random_sets": 3, "examples": 5, "inputs": 2, "size": 32, "tokens": 16,
            "device": "cpu", "threads": 1, "quick": True}
    point = sweep.run_point(spec)
    json.dumps(point)
    assert point["cavs"] == point["cavs_expected"] == 2 * 6 and point["activations"] == 2 * 4
    assert point["pooling"] == sweep.WORKLOADS[model].pooling and point["floor_s"] > 0
    assert set(point["p_values"]) == set(sweep.WORKLOADS[model].layers)


def test_sweep_memory_preset_and_its_goals(capsys: pytest.CaptureFixture[str]) -> None:
    """``--memory`` plans exactly the issue's two points at its shape, and judges each against its bound."""
    specs = sweep.plan(sweep.parse_args(["--memory", "--size", "64", "--inputs", "5", "--random-sets", "7"]))
    assert [(s["random_sets"], s["examples"], s["size"], s["inputs"], s["layers"]) for s in specs] == [
        (20, 30, 224, 20, None), (50, 50, 224, 20, None)]
    assert sweep.WORKLOADS["resnet18"].layers == ("layer2", "layer3", "layer4")
    points = [{"model": "resnet18", "random_sets": 20, "examples": 30, "peak_rss_mib": 1900.0, "seconds": 12.0,
               "floor_s": 10.0, "beyond_floor": 0.2},
              {"model": "resnet18", "random_sets": 50, "examples": 50, "error": "timed out"}]
    goals = sweep.goals(points, memory=True)
    assert [(row["goal_mib"], row["met"]) for row in goals["memory"]] == [(2048, True), (3072, None)]
    assert goals["beyond_floor"]["met"] is None
    assert sweep.goals([{**points[0], "random_sets": 50, "beyond_floor": 0.3}], False)["beyond_floor"]["met"] is False


def test_sweep_without_a_gpu_says_so(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert sweep.main(["--device", "cuda", "--json"]) == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert "skipped" in record and "points" not in record


def test_floor_chunks_are_the_concatenation() -> None:
    sets = [torch.arange(n * 2.0).view(n, 2) + 100 * n for n in (3, 5, 1, 4)]
    chunks = list(bench_common.concatenated_chunks(sets, 4))
    assert [len(c) for c in chunks] == [4, 4, 4, 1] and torch.equal(torch.cat(chunks), torch.cat(sets))
    tokens = [{"input_ids": torch.full((n, 3), n), "attention_mask": torch.ones(n, 3)} for n in (2, 3)]
    joined = list(bench_common.concatenated_chunks(tokens, 4))
    assert [c["input_ids"][:, 0].tolist() for c in joined] == [[2, 2, 3, 3], [3]]


@pytest.mark.slow  # over a second
def test_engine_parts_compares_each_part_both_ways(capsys: pytest.CaptureFixture[str]) -> None:
    """Each part's new and old way run on the same data and agree (the SGD's CAVs bit for bit)."""
    assert engine_parts.main(["--quick", "--json"]) == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [p["part"] for p in record["parts"]] == ["sgd", "shuffles", "finite", "hashes", "reread", "writes"]
    assert all(p["equal"] and p["new_s"] > 0 and p["old_s"] > 0 for p in record["parts"])


@pytest.mark.slow  # over a second
def test_pseudo_null_cost_quick(capsys: pytest.CaptureFixture[str]) -> None:
    """``--quick``: every line of the cost table and the JSON line (the figures are meaningless)."""
    import pseudo_null_cost

    assert pseudo_null_cost.main(["--quick", "--json"]) == 0
    out = capsys.readouterr().out
    assert "pseudo null, first check (cold cache" in out and "a later run's check (warm cache, null read back)" in out
    assert json.loads(out.strip().splitlines()[-1])["k"] == 3


@pytest.mark.slow  # trains a model
def test_conditional_null_quick(capsys: pytest.CaptureFixture[str]) -> None:
    """``--quick`` on one model: the per-library table of every method and the pooled rows."""
    import conditional_null

    assert conditional_null.main(["--quick", "--models", "shortcut"]) == 0
    out = capsys.readouterr().out
    assert "pseudo-rank K=5" in out and "| pooled |" in out and "| cover 5% |" in out

