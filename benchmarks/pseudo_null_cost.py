"""What ``tcav_null = pseudo`` costs: the first check of a suite, later checks, and a later run.

A concept library on disk (the synthetic textures of ``tests/helpers/synthetic.py``:
``--random-sets`` random folders in use, enough spare random folders for ``--k``
pseudo-concepts that share no image), the texture model, 3 layers, a disk cache
in a temporary folder.  Measured, each in a fresh session:

* ``random``, first check (cold cache): the null's pair CAVs, the concept's CAVs;
* ``pseudo``, first check (cold cache): the same plus K pseudo-concept passes
  (each its activations and N CAVs per layer), stored under ``pseudo_null/``;
* ``pseudo``, a second check of the same target and settings in the same session:
  nothing more than the concept's own pass;
* ``pseudo``, the first check of a later run (a new session, the disk cache warm):
  the stored null is read back, the concept read from the cache.

Each line gives seconds and the ratio to the ``random`` first check.  Timings need a
quiet machine (the development machine has 2 cores).

    python benchmarks/pseudo_null_cost.py [--k 60] [--random-sets 10] [--threads 1] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository: its tests.helpers

from pytest_tcav import TCAVSession  # noqa: E402
from pytest_tcav.config import TCAVConfig  # noqa: E402
from tests.helpers import synthetic  # noqa: E402
from tests.helpers.tiny_model import save_images  # noqa: E402

LAYERS = synthetic.LAYERS
SIZE = synthetic.SET_SIZE


def write_library(root: Path, n_random: int, k: int) -> None:
    gen = torch.Generator().manual_seed(5)
    for j in range(n_random + k):  # the first n_random in use, the rest spare: k disjoint pseudo-concepts
        save_images(synthetic.random_images(SIZE, gen), root / "concepts" / f"random_{j}")
    save_images(synthetic.stripes(SIZE, gen), root / "concepts" / "striped")
    save_images(synthetic.dots(SIZE, gen), root / "concepts" / "dotted")
    save_images(synthetic.stripes(40, gen), root / "inputs" / "1")


def timed(session: TCAVSession, model: torch.nn.Module, concept: str, null: str) -> float:
    start = time.perf_counter()
    session.score(model, concept, target=1, layers=LAYERS, null=null)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--k", type=int, default=60)
    parser.add_argument("--random-sets", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="toy sizes: a smoke test, figures meaningless")
    parser.add_argument("--json", action="store_true", help="one JSON line of every figure")
    args = parser.parse_args(argv)
    if args.quick:
        args.k, args.random_sets = 3, 3
    torch.set_num_threads(args.threads)
    model = synthetic.texture_model()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_library(root, args.random_sets, args.k)

        def session(cache: str) -> TCAVSession:
            return TCAVSession(TCAVConfig(concepts=root / "concepts", inputs=root / "inputs",
                                          random_sets=args.random_sets, pseudo_concepts=args.k,
                                          cache_dir=root / cache))

        timed(session("cache-warm-up"), model, "dotted", "random")  # one-time costs (imports, kernels) first
        random_first = timed(session("cache-random"), model, "striped", "random")
        suite = session("cache-pseudo")
        pseudo_first = timed(suite, model, "striped", "pseudo")
        pseudo_second = timed(suite, model, "dotted", "pseudo")
        random_second = timed(session("cache-random"), model, "dotted", "random")  # a later run, warm cache
        pseudo_later = timed(session("cache-pseudo"), model, "dotted", "pseudo")
    print(f"texture model, {len(LAYERS)} layers, N = {args.random_sets} random sets, K = {args.k} pseudo-concepts, "
          f"{SIZE} examples per set, {args.threads} thread(s)")
    rows = [("random null, first check (cold cache)", random_first),
            ("pseudo null, first check (cold cache: K pseudo-concept passes, stored)", pseudo_first),
            ("pseudo null, second check in the same run", pseudo_second),
            ("random null, a later run's check (warm cache)", random_second),
            ("pseudo null, a later run's check (warm cache, null read back)", pseudo_later)]
    for label, seconds in rows:
        print(f"  {label:<72} {seconds:7.2f} s  x{seconds / random_first:5.2f}")
    per_pass = (pseudo_first - random_first) / args.k
    print(f"  one pseudo-concept pass, on average: {per_pass:.3f} s")
    if args.json:
        print(json.dumps({"k": args.k, "random_sets": args.random_sets, "threads": args.threads,
                          "load_average": os.getloadavg()[0], "per_pass_s": per_pass,
                          **{label: seconds for label, seconds in rows}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
