"""A rerun with nothing changed, in a new process: pytest-tcav's warm disk cache against Captum's cached CAVs.

The tutorial shape (GoogLeNet with random weights at 224x224, layers
inception4c/4d/4e, one concept and four random sets of 20 images, 20 inputs,
target 340, gradients).  Four child processes, one after the other, each
building the same model and images from fixed seeds:

1. pytest-tcav, first run: a ``DiskStore`` in an empty folder fills it;
2. pytest-tcav, rerun: a new process, a new engine and store on the same folder;
3. Captum, first run: the tutorial's seven experimental sets, an empty ``save_path``;
4. Captum, rerun: a new process on the same ``save_path`` (it reloads its CAVs).

Each child times its own TCAV call (imports, model and images excluded, as
for a test suite where they are already there) and reports it with its
process's wall time.  Printed: the four times and the rerun ratio.  The
rerun of pytest-tcav must compute nothing (checked: its store's counts).

    python benchmarks/rerun.py [--images 20] [--inputs 20] [--size 224] [--threads N] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from bench_common import (
    LAYERS,
    TARGET,
    captum_run,
    googlenet,
    have_captum,
    machine,
    make_sets,
    print_json,
    tutorial_experimental_sets,
    warm_up,
)

HERE = Path(__file__).resolve().parent


def child(which: str, folder: str, images: int, inputs: int, size: int) -> dict[str, Any]:
    """One measured run in this process: ``ours`` (DiskStore under ``folder``) or ``captum`` (its save_path)."""
    random.seed(0)
    np.random.seed(0)
    model = googlenet()
    sets, input_images = make_sets(4, images, inputs, size)
    warm_up(model, input_images)
    if which == "captum":
        seconds, _, _ = captum_run(model, sets, input_images, folder.rstrip("/") + "/",
                                   tutorial_experimental_sets(len(sets)))
        return {"seconds": seconds}
    from pytest_tcav import TCAV, MemoryStore
    from pytest_tcav.storage.disk import DiskStore

    store = MemoryStore(backend=DiskStore(folder))
    start = time.perf_counter()
    result = TCAV(model, seed=0, store=store).test(sets[0][1], target=TARGET, inputs=input_images, layers=LAYERS,
                                                    random_sets=[images for _, images in sets[1:]])
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "computed": dict(store.computed), "disk": store.backend.stats.as_dict(),
            "p": [result.layer(layer).p_value for layer in LAYERS]}


def spawn(which: str, folder: str, args: argparse.Namespace) -> dict[str, Any]:
    command = [sys.executable, str(HERE / "rerun.py"), "--child", which, "--folder", folder,
               "--images", str(args.images), "--inputs", str(args.inputs), "--size", str(args.size)]
    if args.threads:
        command += ["--threads", str(args.threads)]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"child {which} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    record = json.loads(done.stdout.strip().splitlines()[-1])
    record["process_wall_s"] = wall
    return record


def run(args: argparse.Namespace) -> dict[str, Any]:
    tmp = tempfile.mkdtemp(prefix="tcav-rerun-")
    try:
        ours_cache = os.path.join(tmp, "tcav-cache")
        ours_first = spawn("ours", ours_cache, args)
        ours_rerun = spawn("ours", ours_cache, args)
        captum_first = captum_rerun = None
        if have_captum() and not args.skip_captum:
            captum_first = spawn("captum", os.path.join(tmp, "captum"), args)
            captum_rerun = spawn("captum", os.path.join(tmp, "captum"), args)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if sum(ours_rerun["computed"].values()) != 0 or ours_rerun["p"] != ours_first["p"]:
        raise RuntimeError(f"the rerun was not served from the cache: {ours_rerun}")
    return {
        "benchmark": "rerun",
        "images": args.images, "inputs": args.inputs, "size": args.size,
        "ours_first_s": ours_first["seconds"], "ours_rerun_s": ours_rerun["seconds"],
        "ours_rerun_disk": ours_rerun["disk"], "ours_first_computed": ours_first["computed"],
        "captum_first_s": captum_first["seconds"] if captum_first else None,
        "captum_rerun_s": captum_rerun["seconds"] if captum_rerun else None,
        "captum_rerun_over_ours_rerun": (captum_rerun["seconds"] / ours_rerun["seconds"]) if captum_rerun else None,
        "process_wall_s": {"ours_first": ours_first["process_wall_s"], "ours_rerun": ours_rerun["process_wall_s"],
                           "captum_first": captum_first["process_wall_s"] if captum_first else None,
                           "captum_rerun": captum_rerun["process_wall_s"] if captum_rerun else None},
        "machine": machine(),
    }


def report(r: dict[str, Any]) -> None:
    print(f"workload: GoogLeNet (random weights), {r['size']}x{r['size']}, layers {', '.join(LAYERS)}, "
          f"5 sets of {r['images']} images, {r['inputs']} inputs, target {TARGET}, "
          f"torch threads {r['machine']['torch_threads']}; each run in its own process")
    wall = r["process_wall_s"]
    print(f"pytest-tcav first run   {r['ours_first_s']:8.2f} s   (process {wall['ours_first']:.1f} s)")
    disk = r["ours_rerun_disk"]
    print(f"pytest-tcav rerun       {r['ours_rerun_s']:8.2f} s   (process {wall['ours_rerun']:.1f} s; "
          f"computed nothing, {sum(disk['hits'].values())} disk hits)")
    if r["captum_rerun_s"] is not None:
        print(f"captum first run        {r['captum_first_s']:8.2f} s   (process {wall['captum_first']:.1f} s)")
        print(f"captum rerun            {r['captum_rerun_s']:8.2f} s   (process {wall['captum_rerun']:.1f} s; "
              f"CAVs from its save_path)")
        print(f"captum rerun / ours     {r['captum_rerun_over_ours_rerun']:8.2f} x")
    else:
        print("captum                  skipped (not installed, or --skip-captum)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=20, help="images per concept and random set")
    parser.add_argument("--inputs", type=int, default=20)
    parser.add_argument("--size", type=int, default=224, help="image side in pixels")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--skip-captum", action="store_true", help="measure pytest-tcav only")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (6 images, 4 inputs, 64 px): a smoke test")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON line too")
    parser.add_argument("--child", choices=["ours", "captum"], help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.images, args.inputs, args.size = 6, 4, 64
    if args.child:
        print_json(child(args.child, args.folder, args.images, args.inputs, args.size))
        return 0
    record = run(args)
    report(record)
    if args.json:
        print_json(record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
