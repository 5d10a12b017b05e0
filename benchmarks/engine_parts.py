"""The engine's parts that are not model work, each timed against its slower alternative, in one run.

On the shapes of a 20 random sets x 30 images check (ResNet-18 ``layer2``:
30 examples x 100,352 features per set), each part is timed both ways on the
same data, and the two results are compared where they must be equal:

* **sgd**: the hinge SGD of a check's CAV groups (the concept against 20
  random sets, and the random pairs in tiles of 16: 230 CAVs), its epochs
  compiled (numba) against the numpy reference (``TCAV_COMPILED_SGD=0``); the
  CAVs must be equal bit for bit.  The sets are activation-like (non-negative,
  shifted by set) at ``--sgd-features`` features: the SGD's cost does not
  depend on the width, only on the examples and the epochs.
* **shuffles**: the same compiled SGD with each CAV's shuffles drawn 32
  epochs per call of its generator (``kernel_sgd.Shuffles``) against one
  epoch per call; the CAVs must be equal bit for bit.
* **finite**: the finiteness check of one set's activations, one sum first
  (``activations.all_finite``) against ``isfinite(...).all(1)``.
* **hashes**: the fingerprints and example digests of 21 sets of 30 images at
  224 px, in threads all at once (``examples.warm_hashes``) against one set
  after another; the hashes must be equal.
* **reread**: reading 63 activation-sized entries back from the disk cache by
  the store that wrote them (no second checksum) against a fresh store
  (each entry verified), and writing them first.
* **writes**: writing a check's 630 CAV entries (400 KB each, in batches of 35
  as CAV groups come) with the writer threads kept for the process and lock
  files only their owner writes, against threads started per batch and
  group-writable lock files (for which filelock creates a probe file first);
  both ways the batches are written in the background and the time ends when
  the last one is on disk (``DiskStore.flush``).

    python benchmarks/engine_parts.py [--sets 20] [--examples 30] [--features 100352] [--sgd-features 2000]
                                      [--repeats 3] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from bench_common import machine, print_json


def best_of(repeats: int, run: Callable[[], Any]) -> tuple[float, Any]:
    """The least wall time of ``repeats`` runs, and the last run's result."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - start)
    return best, result


def activation_sets(n: int, examples: int, features: int, seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.relu(torch.randn(examples, features, generator=gen) + 0.05 * k) for k in range(n)]


def check_trainer(sets: int, examples: int, features: int) -> Callable[[], list[torch.Tensor]]:
    """Training one layer's CAV groups of a check (the concept group and the tiles of random pairs): their weights."""
    from pytest_tcav.engine.block_gram import train_hinge_pairs
    from pytest_tcav.engine.trainers import HingeSGDTrainer
    from pytest_tcav.engine.work_units import cav_groups

    data = activation_sets(sets + 1, examples, features)
    trainer = HingeSGDTrainer()
    groups = cav_groups(sets, False)

    def train() -> list[torch.Tensor]:
        blocks: dict[Any, Any] = {}
        return [cav.weights for group in groups
                for cav in train_hinge_pairs(trainer, data.__getitem__, [examples] * (sets + 1), group,
                                             list(range(len(group))), blocks=blocks)]

    return train


def all_equal(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


def sgd_part(sets: int, examples: int, features: int, repeats: int) -> dict[str, Any]:
    train = check_trainer(sets, examples, features)
    saved = os.environ.get("TCAV_COMPILED_SGD")
    try:
        os.environ["TCAV_COMPILED_SGD"] = "1"
        train()  # numba compiles (or loads its cache) once per process: not timed
        fast, fast_weights = best_of(repeats, train)
        os.environ["TCAV_COMPILED_SGD"] = "0"
        slow, slow_weights = best_of(repeats, train)
    finally:
        if saved is None:
            os.environ.pop("TCAV_COMPILED_SGD", None)
        else:
            os.environ["TCAV_COMPILED_SGD"] = saved
    return {"part": "sgd", "new": "compiled epochs", "old": "numpy epochs", "new_s": fast, "old_s": slow,
            "equal": all_equal(fast_weights, slow_weights), "cavs": len(fast_weights)}


def shuffles_part(sets: int, examples: int, features: int, repeats: int) -> dict[str, Any]:
    """The compiled SGD with each CAV's shuffles drawn 32 epochs per call, and one epoch per call (as before)."""
    from pytest_tcav.engine import kernel_sgd

    train = check_trainer(sets, examples, features)
    train()  # numba compiles (or loads its cache) once per process: not timed
    kept = kernel_sgd.SHUFFLE_EPOCHS
    try:
        blocks_s, block_weights = best_of(repeats, train)
        kernel_sgd.SHUFFLE_EPOCHS = 1
        each_s, each_weights = best_of(repeats, train)
    finally:
        kernel_sgd.SHUFFLE_EPOCHS = kept
    return {"part": "shuffles", "new": f"{kept} epochs per draw", "old": "one epoch per draw", "new_s": blocks_s,
            "old_s": each_s, "equal": all_equal(block_weights, each_weights), "cavs": len(block_weights)}


def finite_part(examples: int, features: int, repeats: int) -> dict[str, Any]:
    from pytest_tcav.engine.activations import all_finite

    x = activation_sets(1, examples, features)[0]
    runs = 20
    new, verdict = best_of(repeats, lambda: [all_finite(x) for _ in range(runs)][-1])
    old, exact = best_of(repeats, lambda: [bool(torch.isfinite(x).all(1).all()) for _ in range(runs)][-1])
    return {"part": "finite", "new": "one sum first", "old": "isfinite(...).all(1)", "new_s": new / runs,
            "old_s": old / runs, "equal": verdict == exact}


def hashes_part(sets: int, examples: int, size: int, repeats: int) -> dict[str, Any]:
    from pytest_tcav.engine.examples import Concept, warm_hashes

    gen = torch.Generator().manual_seed(1)
    images = [torch.rand(examples, 3, size, size, generator=gen) for _ in range(sets + 1)]

    def together() -> list[tuple[str, frozenset[bytes]]]:
        made = [Concept(f"s{k}", x) for k, x in enumerate(images)]
        warm_hashes(made)
        return [(s.fingerprint, s.example_digests) for s in made]

    def one_by_one() -> list[tuple[str, frozenset[bytes]]]:
        return [(s.fingerprint, s.example_digests) for s in (Concept(f"s{k}", x) for k, x in enumerate(images))]

    new, warmed = best_of(repeats, together)
    old, plain = best_of(repeats, one_by_one)
    return {"part": "hashes", "new": "threads, all at once", "old": "one set after another", "new_s": new,
            "old_s": old, "equal": warmed == plain, "bytes": sum(x.nelement() * 4 for x in images)}


def reread_part(entries: int, examples: int, features: int, repeats: int) -> dict[str, Any]:
    from pytest_tcav.engine.fingerprints import make_key
    from pytest_tcav.storage.disk import DiskStore

    data = activation_sets(entries, examples, features, seed=2)
    keys = [make_key("activations", {"engine-parts": k}) for k in range(entries)]
    values = dict(zip(keys, ({"activations": x} for x in data)))
    folder = Path(tempfile.mkdtemp(prefix="tcav-parts-"))
    try:
        writer = DiskStore(folder)
        start = time.perf_counter()
        writer.fetch_many("activations", keys, lambda todo: {k: values[k] for k in todo})
        written = time.perf_counter() - start

        def read(store: DiskStore) -> dict[str, Any]:
            return store.fetch_many("activations", keys, lambda todo: {})

        new, again = best_of(repeats, lambda: read(writer))
        old, fresh = best_of(repeats, lambda: read(DiskStore(folder)))
        same = all(torch.equal(again[k]["activations"], fresh[k]["activations"]) for k in keys)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return {"part": "reread", "new": "by the store that wrote them", "old": "by a fresh store (verified)",
            "new_s": new, "old_s": old, "equal": same, "write_s": written,
            "bytes": sum(x.nelement() * 4 for x in data)}


def writes_part(entries: int, features: int, batch: int, repeats: int) -> dict[str, Any]:
    from concurrent.futures import ThreadPoolExecutor

    from pytest_tcav.engine.fingerprints import make_key
    from pytest_tcav.storage import layout, locks
    from pytest_tcav.storage.disk import DiskStore

    gen = torch.Generator().manual_seed(3)
    values = {make_key("cav", {"engine-parts": k}): {"weights": torch.rand(features, generator=gen)}
              for k in range(entries)}
    keys = list(values)

    def write_all() -> int:
        folder = Path(tempfile.mkdtemp(prefix="tcav-parts-"))
        try:
            store = DiskStore(folder)
            for start in range(0, entries, batch):
                store.fetch_many("cav", keys[start:start + batch], lambda todo: {k: values[k] for k in todo})
            store.flush()  # the batches are written in the background: wait for the last one
            return store.stats.writes["cav"]
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    new, written = best_of(repeats, write_all)
    kept_pool, private = layout.writer_pool, locks._shared_directory
    try:  # the former way: a pool per batch, lock files writable by the group
        layout.writer_pool = lambda: ThreadPoolExecutor(max_workers=16)  # type: ignore[assignment]
        locks._shared_directory = lambda directory: True  # type: ignore[assignment]
        old, written_before = best_of(repeats, write_all)
    finally:
        layout.writer_pool, locks._shared_directory = kept_pool, private  # type: ignore[assignment]
    return {"part": "writes", "new": "threads kept, private lock files", "old": "threads per batch, probed locks",
            "new_s": new, "old_s": old, "equal": written == written_before == entries}


def run(*, sets: int = 20, examples: int = 30, features: int = 100352, sgd_features: int = 2000, size: int = 224,
        repeats: int = 3) -> dict[str, Any]:
    parts = [
        sgd_part(sets, examples, sgd_features, repeats),
        shuffles_part(sets, examples, sgd_features, repeats),
        finite_part(examples, features, repeats),
        hashes_part(sets, examples, size, repeats),
        reread_part(3 * (sets + 1), examples, features // 3, repeats),
        writes_part(3 * (sets + sets * (sets - 1) // 2), features, 35, repeats),
    ]
    for part in parts:
        part["speedup"] = part["old_s"] / part["new_s"] if part["new_s"] > 0 else None
    return {"benchmark": "engine_parts", "sets": sets, "examples": examples, "features": features,
            "sgd_features": sgd_features, "size": size, "repeats": repeats, "parts": parts, "machine": machine()}


def report(r: dict[str, Any]) -> None:
    print(f"engine parts at {r['sets']} random sets x {r['examples']} examples, {r['features']} features "
          f"(SGD at {r['sgd_features']}), best of {r['repeats']}; {r['machine']['cores']} cores, torch threads "
          f"{r['machine']['torch_threads']}")
    print("| part | new | s | old | s | old / new | equal |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for p in r["parts"]:
        print(f"| {p['part']} | {p['new']} | {p['new_s']:.4f} | {p['old']} | {p['old_s']:.4f} | "
              f"{p['speedup']:.1f}x | {p['equal']} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", type=int, default=20, help="random sets (the concept is one more)")
    parser.add_argument("--examples", type=int, default=30, help="examples per set")
    parser.add_argument("--features", type=int, default=100352, help="features per example (ResNet-18 layer2)")
    parser.add_argument("--sgd-features", type=int, default=2000, help="features of the SGD part's sets")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON line too")
    args = parser.parse_args(argv)
    size = 224
    if args.quick:
        args.sets, args.examples, args.features, args.sgd_features, args.repeats, size = 3, 6, 960, 50, 1, 16
    record = run(sets=args.sets, examples=args.examples, features=args.features, sgd_features=args.sgd_features,
                 size=size, repeats=args.repeats)
    report(record)
    if args.json:
        print_json(record)
    return 0 if all(p["equal"] for p in record["parts"]) else 1


if __name__ == "__main__":
    sys.exit(main())
