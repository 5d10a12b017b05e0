"""Cost as the work grows: time, forward/backward floor, CAVs and peak memory over random sets x examples.

Workload (defaults): torchvision ResNet-18 with seeded random weights at 224x224,
layers layer2, layer3, layer4, one concept and N random sets of K generated
images each, 20 inputs, target class 3, plain gradients; the grid is N in
10, 20, 50 by K in 20, 50, 100.  ``--models`` adds bigger models at small counts
(N = 10, K = 20 unless ``--big-points``): ResNet-50 and ViT-B/16 at 224 px, and a
BERT-base-sized encoder on 128 random tokens (sweep_models.py says which layers
and pooling, and why).

Each point runs in a child process of its own (this script with a hidden
``--child``), so its peak RSS (``ru_maxrss``) is that point's alone.  The child
builds the model and the sets, warms up (a forward and backward, then one tiny
``TCAV.test`` on other data with a throwaway store, so that first-call costs and
lazy imports are not timed), records its RSS (model, data and libraries), then
times one ``TCAV.test`` with the plugin's store over an empty disk cache in a
temporary folder (``session.default_store`` of the default settings: a memory
store in front of a ``DiskStore``), then the floor: the engine's own passes
alone, one no-grad pass over all (N+1)*K concept and random examples and one
forward/backward over the inputs (``bench_common.floor_run``).  The peak RSS is
read right after the test, before the floor runs.

Printed per point: time, floor, (time - floor) / floor ("beyond floor"), CAVs
trained and activations computed (the store's counts), peak RSS, RSS before the
test, the data's size, and with ``--device cuda`` the peak GPU memory.  Goal
(issue 13): beyond floor <= 25% at 50 random sets.  ``--memory`` runs only the
two memory-goal points (20 random sets x 30 images: peak RSS <= 2 GB; 50 x 50:
<= 3 GB; 1 GB = 1024 MiB here).  Runs unattended: a point that fails or runs
past ``--point-timeout`` is recorded with its error and the sweep goes on; ``--deadline`` bounds
the whole sweep.  With ``--json`` each point's record is printed as it completes (``{"point": ...}``)
and the whole sweep at the end (``{"benchmark": "sweep", ...}``).

    python benchmarks/sweep.py [--random-sets 10,20,50] [--examples 20,50,100] [--inputs 20] [--size 224]
        [--layers layer2,layer3,layer4] [--models resnet50,vit_b_16,bert_base] [--big-points 10x20]
        [--tokens 128] [--vit-pooling first] [--no-grid] [--memory] [--device cpu|cuda]
        [--threads N] [--point-timeout S] [--deadline S] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import gc
import json
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import torch
from bench_common import (
    current_rss_mb,
    examples_bytes,
    floor_run,
    machine,
    peak_rss_mb,
    print_json,
)
from sweep_models import WORKLOADS, build_model, make_data

__all__ = ["WORKLOADS", "goals", "main", "parse_args", "plan", "run_point"]

GOAL_BEYOND_FLOOR = 0.25
GOAL_AT_RANDOM_SETS = 50
#: The memory goals of issue 13: (random sets, images per set) -> peak RSS bound in MiB (2 GB and 3 GB).
MEMORY_GOALS = {(20, 30): 2048, (50, 50): 3072}
#: The ResNet-18 shape of issue 13 (20 x 30) should also run within 1.25x of its floor.
MEMORY_SHAPE_FLOOR_RATIO = 1.25


# -- one point, in its own process -----------------------------------------------------------------


def run_point(spec: dict[str, Any]) -> dict[str, Any]:
    """Measure one point in this process (the child's work; the smoke tests call it directly)."""
    from pytest_tcav import TCAV
    from pytest_tcav.config import TCAVConfig
    from pytest_tcav.engine import batches
    from pytest_tcav.session.session import default_store

    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    work = WORKLOADS[spec["model"]]
    layers = list(spec.get("layers") or work.layers)
    pooling = spec.get("pooling") or work.pooling
    device = torch.device(spec.get("device", "cpu"))
    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    n, k = int(spec["random_sets"]), int(spec["examples"])

    model = build_model(work.name, size=spec["size"], quick=spec.get("quick", False)).to(device)
    sets, inputs = make_data(work.name, random_sets=n, examples=k, inputs=spec["inputs"], size=spec["size"],
                             tokens=spec["tokens"])
    data_bytes = sum(examples_bytes(s) for s in sets) + examples_bytes(inputs)

    # Warm-up: kernels, allocator, lazy imports, the trainer's first call; other data, a throwaway store.
    floor_run(model, batches.take(inputs, slice(0, 2)), batches.take(inputs, slice(0, 2)), layers=layers,
              target=work.target, pooling=pooling, device=device, sync=sync)
    warm_sets, warm_inputs = make_data(work.name, random_sets=3, examples=5, inputs=2, size=spec["size"],
                                       tokens=spec["tokens"], seed=99)
    TCAV(model, pooling=pooling).test(warm_sets[0], target=work.target, inputs=warm_inputs, layers=layers,
                                      random_sets=warm_sets[1:])
    del warm_sets, warm_inputs
    gc.collect()
    record: dict[str, Any] = {
        "model": work.name, "random_sets": n, "examples": k, "inputs": spec["inputs"], "layers": layers,
        "pooling": pooling, "device": str(device), "threads": torch.get_num_threads(),
        "size": None if work.tokens else spec["size"], "tokens": spec["tokens"] if work.tokens else None,
        "data_mib": data_bytes / 2**20, "rss_before_test_mib": current_rss_mb(),
        "peak_rss_before_test_mib": peak_rss_mb(),
        "gpu": torch.cuda.get_device_name(device) if cuda else None,
        "cavs_expected": len(layers) * (n + n * (n - 1) // 2), "activations_expected": len(layers) * (n + 1),
    }

    folder = Path(tempfile.mkdtemp(prefix="tcav-sweep-"))
    try:
        config = TCAVConfig(cache_dir=folder / "tcav")  # the plugin's defaults, with an empty disk cache
        store = default_store(config)
        engine = TCAV(model, method=config.method, n_steps=config.n_steps, seed=config.seed,
                      batch_size=config.batch_size, alpha=config.alpha, correction=config.correction,
                      pooling=pooling, store=store)
        if cuda:
            torch.cuda.reset_peak_memory_stats(device)
        sync()
        start = time.perf_counter()
        result = engine.test(sets[0], target=work.target, inputs=inputs, layers=layers, random_sets=sets[1:])
        sync()
        record["seconds"] = time.perf_counter() - start
        record["peak_rss_mib"] = peak_rss_mb()
        if cuda:
            record["gpu_peak_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
        record["computed"] = dict(store.computed)
        record["cavs"] = store.computed.get("cav", 0)
        record["activations"] = store.computed.get("activations", 0)
        record["p_values"] = {r.layer: r.p_value for r in result.layers}
        record["verdicts"] = {r.layer: r.verdict for r in result.layers}
        disk = getattr(store.backend, "stats", None)
        record["disk"] = disk.as_dict() if disk is not None else None
        del engine, store, result
        gc.collect()
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    record["floor_s"] = floor_run(model, sets, inputs, layers=layers, target=work.target, pooling=pooling,
                                  device=device, sync=sync)
    if cuda:
        record["gpu_floor_peak_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    record["beyond_floor"] = (record["seconds"] - record["floor_s"]) / record["floor_s"]
    return record


def child_main(spec_json: str) -> int:
    """The child process: one point, one JSON line (or the error, as one JSON line, and exit status 1)."""
    spec = json.loads(spec_json)
    try:
        print_json({"point": run_point(spec)})
        return 0
    except Exception as exc:  # reported to the parent, which records it and goes on
        print_json({"point": {**point_label(spec), "error": f"{type(exc).__name__}: {exc}",
                              "traceback": traceback.format_exc(limit=8)}})
        return 1


# -- the sweep, in the parent ---------------------------------------------------------------------


def point_label(spec: dict[str, Any]) -> dict[str, Any]:
    return {"model": spec["model"], "random_sets": spec["random_sets"], "examples": spec["examples"]}


def run_child(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    """One point in a fresh interpreter; a crash, a kill or a timeout becomes a record with ``error``."""
    command = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)]
    start = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {**point_label(spec), "error": f"timed out after {timeout:.0f} s (--point-timeout or --deadline)"}
    lines = [line for line in done.stdout.splitlines() if line.startswith('{"point"')]
    record = json.loads(lines[-1])["point"] if lines else {**point_label(spec)}
    if done.returncode != 0 and "error" not in record:
        killed = " (killed: out of memory?)" if done.returncode in (-9, 137) else ""
        record["error"] = f"child exited with status {done.returncode}{killed}"
    if "error" in record:
        record["stderr_tail"] = done.stderr[-2000:]
    record["process_s"] = time.perf_counter() - start
    return record


def parse_counts(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def parse_points(text: str) -> list[tuple[int, int]]:
    """``10x20,20x20`` -> [(10, 20), (20, 20)]: random sets x examples per set."""
    points = []
    for item in text.split(","):
        n, _, k = item.strip().partition("x")
        points.append((int(n), int(k)))
    return points


def plan(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every point's spec, in the order they run: the ResNet-18 grid (or the memory points), then big models."""
    base = {"inputs": args.inputs, "size": args.size, "tokens": args.tokens, "device": args.device,
            "threads": args.threads, "quick": args.quick}
    layers = [x for x in args.layers.split(",") if x] if args.layers else None
    if args.memory:
        grid = list(MEMORY_GOALS)
    elif args.no_grid:
        grid = []
    else:
        grid = [(n, k) for n in parse_counts(args.random_sets) for k in parse_counts(args.examples)]
    specs = [{**base, "model": "resnet18", "random_sets": n, "examples": k, "layers": layers} for n, k in grid]
    for name in [x for x in (args.models or "").split(",") if x]:
        if name not in WORKLOADS:
            raise SystemExit(f"--models: unknown model {name!r}; choose from {', '.join(WORKLOADS)}")
        pooling = args.vit_pooling if name == "vit_b_16" else None
        specs += [{**base, "model": name, "random_sets": n, "examples": k, "pooling": pooling}
                  for n, k in parse_points(args.big_points)]
    return specs


def goals(points: list[dict[str, Any]], memory: bool) -> dict[str, Any]:
    """The issue's goals, judged on the points that ran (None where no point measures a goal)."""
    at_goal = [p for p in points if p["random_sets"] == GOAL_AT_RANDOM_SETS and "error" not in p]
    out: dict[str, Any] = {
        "beyond_floor": {
            "goal": f"beyond floor <= {GOAL_BEYOND_FLOOR:.0%} at {GOAL_AT_RANDOM_SETS} random sets",
            "worst": max((p["beyond_floor"] for p in at_goal), default=None),
            "met": all(p["beyond_floor"] <= GOAL_BEYOND_FLOOR for p in at_goal) if at_goal else None,
        },
    }
    if memory:
        rows = []
        for (n, k), bound in MEMORY_GOALS.items():
            p = next((p for p in points if p["model"] == "resnet18" and (p["random_sets"], p["examples"]) == (n, k)),
                     None)
            peak = p.get("peak_rss_mib") if p else None
            rows.append({"random_sets": n, "examples": k, "goal_mib": bound, "peak_rss_mib": peak,
                         "met": None if peak is None else peak <= bound,
                         "over_floor": (p["seconds"] / p["floor_s"]) if p and "floor_s" in p else None})
        out["memory"] = rows
    return out


def fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def report(record: dict[str, Any]) -> None:
    s = record["settings"]
    print(f"sweep on {s['device']}, {record['machine']['cores']} cores, torch threads per point "
          f"{s['threads'] or 'default'}; {s['inputs']} inputs; image side {s['size']} px, {s['tokens']} tokens")
    gpu = any("gpu_peak_mib" in p for p in record["points"])
    head = ["model", "N", "K", "time s", "floor s", "beyond floor", "CAVs", "activations", "peak RSS MiB",
            "RSS before MiB", "data MiB"] + (["GPU peak MiB"] if gpu else [])
    print("| " + " | ".join(head) + " |")
    print("|" + " --- |" * len(head))
    for p in record["points"]:
        if "error" in p:
            print(f"| {p['model']} | {p['random_sets']} | {p['examples']} | failed: {p['error']} |")
            continue
        cells = [p["model"], str(p["random_sets"]), str(p["examples"]), fmt(p["seconds"], ".2f"),
                 fmt(p["floor_s"], ".2f"), f"{p['beyond_floor']:+.0%}", f"{p['cavs']} of {p['cavs_expected']}",
                 str(p["activations"]), fmt(p["peak_rss_mib"], ".0f"), fmt(p["rss_before_test_mib"], ".0f"),
                 fmt(p["data_mib"], ".1f")] + ([fmt(p.get("gpu_peak_mib"), ".0f")] if gpu else [])
        print("| " + " | ".join(cells) + " |")
    g = record["goals"]["beyond_floor"]
    verdict = {None: "not measured (no point at that count ran)", True: "met", False: "not met"}[g["met"]]
    worst = f" (worst {g['worst']:+.0%})" if g["worst"] is not None else ""
    print(f"goal: {g['goal']}: {verdict}{worst}")
    for row in record["goals"].get("memory", []):
        verdict = {None: "not measured", True: "met", False: "not met"}[row["met"]]
        ratio = (f"; time / floor {row['over_floor']:.2f} (goal <= {MEMORY_SHAPE_FLOOR_RATIO})"
                 if row["over_floor"] is not None and (row["random_sets"], row["examples"]) == (20, 30) else "")
        print(f"memory goal, {row['random_sets']} random sets x {row['examples']} images: peak RSS "
              f"{fmt(row['peak_rss_mib'], '.0f')} MiB, goal <= {row['goal_mib']} MiB "
              f"({row['goal_mib'] // 1024} GB): {verdict}{ratio}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The options, with ``--memory`` and ``--quick`` applied to the sizes."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--random-sets", default="10,20,50", help="the grid's random-set counts N")
    parser.add_argument("--examples", default="20,50,100", help="the grid's examples per set K")
    parser.add_argument("--inputs", type=int, default=20)
    parser.add_argument("--size", type=int, default=224, help="image side in pixels")
    parser.add_argument("--tokens", type=int, default=128, help="sequence length of the BERT examples")
    parser.add_argument("--layers", default="", help="the ResNet-18 layers (default: layer2,layer3,layer4)")
    parser.add_argument("--models", default="", help="bigger models to add: resnet50, vit_b_16, bert_base")
    parser.add_argument("--big-points", default="10x20", help="the bigger models' points, NxK[,NxK...]")
    parser.add_argument("--vit-pooling", default="first", choices=["first", "mean", "flatten"])
    parser.add_argument("--no-grid", action="store_true", help="skip the ResNet-18 grid (only --models)")
    parser.add_argument("--memory", action="store_true",
                        help="only the memory-goal points, 20 x 30 (<= 2 GB) and 50 x 50 (<= 3 GB), at 224 px, "
                        "20 inputs, layer2-4 (the grid options are ignored)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (the model's device)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads in each point (0: torch's default)")
    parser.add_argument("--point-timeout", type=float, default=3600.0, help="seconds before a point is abandoned")
    parser.add_argument("--deadline", type=float, default=0.0,
                        help="seconds for the whole sweep: later points are not started, the running one is "
                             "stopped (0: none)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes (N 3,4, K 5, 2 inputs, 32 px, 16 tokens, tiny ViT/BERT): a smoke test")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON line too")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory:  # the issue's shape, whatever the other options say (--quick still shrinks it)
        args.inputs, args.size, args.layers = 20, 224, ""
    if args.quick:
        args.random_sets, args.examples, args.inputs, args.size, args.tokens = "3,4", "5", 2, 32, 16
        args.big_points = "3x5"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        return child_main(args.child)
    record: dict[str, Any] = {
        "benchmark": "sweep", "machine": machine(),
        "settings": {k: getattr(args, k) for k in ("random_sets", "examples", "inputs", "size", "tokens", "layers",
                                                   "models", "big_points", "vit_pooling", "memory", "device",
                                                   "threads", "quick")},
    }
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        record["skipped"] = "no CUDA device (torch.cuda.is_available() is False)"
        print(f"sweep skipped: {record['skipped']}")
        if args.json:
            print_json(record)
        return 0
    points = []
    specs = plan(args)
    started = time.perf_counter()
    for number, spec in enumerate(specs, 1):
        left = args.deadline - (time.perf_counter() - started) if args.deadline else args.point_timeout
        if left <= 1:
            point = {**point_label(spec), "error": f"not run: the sweep's --deadline ({args.deadline:.0f} s) passed"}
        else:
            point = run_child(spec, min(args.point_timeout, left))
        points.append(point)
        if args.json:  # every point as it comes, so that a sweep stopped from outside still leaves its figures
            print_json({"point": point})
        status = (f"failed: {point['error']}" if "error" in point else
                  f"{point['seconds']:.2f} s, floor {point['floor_s']:.2f} s, peak RSS {point['peak_rss_mib']:.0f} MiB")
        print(f"point {number}/{len(specs)}: {spec['model']} N={spec['random_sets']} K={spec['examples']}: {status}",
              flush=True)
    record["points"] = points
    record["machine"]["gpu"] = next((p["gpu"] for p in points if p.get("gpu")), None)
    record["goals"] = goals(points, args.memory)
    report(record)
    if args.json:
        print_json(record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
