"""The Gram products of tiles of sets, with each feature slice joined by a fresh ``torch.cat`` or into one buffer.

``block_gram`` computes the Gram blocks between tiles of sets one slice of
``FEATURE_SLICE`` features at a time.  Each slice of a tile's sets must be
one contiguous matrix for the product.  Until this change each slice was
joined with ``torch.cat``. That call is an OpenMP parallel region on a few
megabytes, and a fresh allocation each time. Now each slice is joined into a
buffer kept for the whole tile product (``torch.cat(out=)``,
``block_gram._SideBySide``).  This script times both ways on the tile
products of the significance shape (the concept, then 10 random sets of 20
examples in tiles of 8 and 2 sets, at GoogLeNet's inception4c/4d/4e widths),
alternating the two ways, and checks that the products are equal bit for bit.

``--busy N`` runs N processes that spin on the CPU while it measures, as other
jobs do on a shared machine.  Under that load each parallel region can wait for
a descheduled thread, and that is where the significance shape lost its
seconds.  The script exits 1 if the two ways' products differ.

    python benchmarks/tile_slices.py [--random-sets 10] [--examples 20] [--widths 100352,103488,163072]
                                     [--repeats 5] [--busy N] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import time
from typing import Any

import numpy as np
import torch
from bench_common import machine, print_json

from pytest_tcav.engine import block_gram
from pytest_tcav.engine.trainers import HingeSGDTrainer


def _spin(stop: Any) -> None:
    while not stop.is_set():
        sum(range(10_000))


def tile_products(sets: list[torch.Tensor], tiles: list[list[int]], joined: bool) -> list[np.ndarray]:
    """Every tile pair's product (the engine's slices, sums and operand order), slices joined one way or the other."""
    out = []
    width = int(sets[0].shape[1])
    step = block_gram.FEATURE_SLICE
    for i in range(len(tiles)):
        for j in range(i, len(tiles)):
            left_sets, right_sets = [sets[a] for a in tiles[i]], [sets[b] for b in tiles[j]]
            product = np.zeros((sum(len(x) for x in left_sets), sum(len(x) for x in right_sets)))
            if joined:
                for start in range(0, width, step):
                    left = torch.cat([x[:, start : start + step] for x in left_sets])
                    right = left if i == j else torch.cat([x[:, start : start + step] for x in right_sets])
                    product += block_gram._block(left, right)
            else:
                left_slices = block_gram._SideBySide(left_sets)
                right_slices = left_slices if i == j else block_gram._SideBySide(right_sets)
                for start in range(0, width, step):
                    stop = min(width, start + step)
                    left = left_slices.slice(start, stop)
                    right = left if i == j else right_slices.slice(start, stop)
                    product += block_gram._block(left, right)
            out.append(product)
    return out


def run(random_sets: int = 10, examples: int = 20, widths: tuple[int, ...] = (100352, 103488, 163072),
        repeats: int = 5, busy: int = 0) -> dict[str, Any]:
    gen = torch.Generator().manual_seed(0)
    layers = {w: [torch.relu(torch.randn(examples, w, generator=gen)) for _ in range(random_sets + 1)]
              for w in widths}
    tiles = HingeSGDTrainer().gram_tiles([examples] * (random_sets + 1)) or [[a] for a in range(random_sets + 1)]
    stop = multiprocessing.Event()
    spinners = [multiprocessing.Process(target=_spin, args=(stop,), daemon=True) for _ in range(busy)]
    for p in spinners:
        p.start()
    seconds: dict[str, list[float]] = {"cat": [], "buffer": []}
    equal = True
    try:
        for _ in range(repeats):
            results = {}
            for way in ("cat", "buffer"):
                start = time.perf_counter()
                results[way] = [p for sets in layers.values() for p in tile_products(sets, tiles, way == "cat")]
                seconds[way].append(time.perf_counter() - start)
            equal = equal and all(np.array_equal(a, b) for a, b in zip(results["cat"], results["buffer"], strict=True))
    finally:
        stop.set()
        for p in spinners:
            p.join()
    return {"benchmark": "tile_slices", "random_sets": random_sets, "examples": examples, "widths": list(widths),
            "tiles": tiles, "repeats": repeats, "busy": busy, "equal": equal,
            "cat_s": seconds["cat"], "buffer_s": seconds["buffer"],
            "cat_best": min(seconds["cat"]), "buffer_best": min(seconds["buffer"]),
            "cat_median": statistics.median(seconds["cat"]), "buffer_median": statistics.median(seconds["buffer"]),
            "machine": machine()}


def report(r: dict[str, Any]) -> None:
    print(f"tile products of 1 + {r['random_sets']} sets x {r['examples']} examples at widths "
          f"{', '.join(map(str, r['widths']))}; tiles {r['tiles']}; {r['repeats']} alternated runs; "
          f"{r['busy']} spinning processes; {r['machine']['cores']} cores, torch threads "
          f"{r['machine']['torch_threads']}")
    print(f"torch.cat per slice      best {r['cat_best']:.3f} s   median {r['cat_median']:.3f} s")
    print(f"one reused buffer       best {r['buffer_best']:.3f} s   median {r['buffer_median']:.3f} s")
    print(f"equal bit for bit        {r['equal']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--random-sets", type=int, default=10)
    parser.add_argument("--examples", type=int, default=20, help="examples per set")
    parser.add_argument("--widths", default="100352,103488,163072", help="features per layer, comma-separated")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--busy", type=int, default=0, help="processes spinning on the CPU while it measures")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON line too")
    args = parser.parse_args(argv)
    widths = tuple(int(w) for w in args.widths.split(","))
    if args.quick:
        args.random_sets, args.examples, widths, args.repeats = 4, 6, (20000,), 1
    record = run(args.random_sets, args.examples, widths, args.repeats, args.busy)
    report(record)
    if args.json:
        print_json(record)
    return 0 if record["equal"] else 1


if __name__ == "__main__":
    sys.exit(main())
