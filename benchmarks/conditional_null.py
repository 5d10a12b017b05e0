"""The "pseudo" null conditional on one library against the random null, per library: false positives and power.

A user fixes one library of N random sets and tests every concept against it.
The random null (each random set in the concept's place, a prediction-interval
t-test of the concept's statistic against the N leave-one-out values) is
calibrated on average over libraries, but one atypical library biases every
check made with it.  The "pseudo" null judges the concept's statistic on each
layer against the statistics of K pseudo-concepts (fresh random data drawn like
a concept set, not in the library) tested against the *same* library with the
same model, layers and inputs: ``compare_to_null(stat, pseudo_stats, direction,
"t" | "rank")``.  This script measures, per library:

* the false-positive rate on M fresh pseudo-concepts (random data, not the
  null's pseudo-concepts, not in the library), one-sided ``positive`` at alpha
  0.05: per layer uncorrected, and the Holm family rate over the layers (the
  check's verdict), with its Clopper-Pearson 95% interval and whether it covers
  alpha; also the family rate for direction ``either``;
* for the methods random-t, random-rank, pseudo-t with K of ``--k`` (the first K
  of the ``--pseudo-null`` null pseudo-concepts) and pseudo-rank with the largest K;
* how atypical the library is: the mean fresh statistic in units of the random
  null, ``(mean(fresh) - mean(null)) / sd(null)`` per layer;
* power: the share of ``--planted`` concepts the model relies on (stripes for the
  texture model, the patch for the shortcut model, the red square for the
  user-shape model; target 1, positive) significant by Holm, at nominal alpha and
  at a *matched* false-positive rate (the per-layer p threshold whose family rate
  on the pooled fresh pseudo-concepts of that model and N is 5%, or the largest
  giving at most 5%).

Models and libraries: the small CNNs of ``tests/helpers/synthetic.py``
(``texture``, ``shortcut``; ``--libraries`` libraries each, layers conv1-conv3)
and ``user``: a third tiny CNN trained here on 32 px images (class 1: a red
square somewhere; backgrounds plain random colours with pixel noise; stripes in
half of the images of both classes), whose random data are plain noisy
backgrounds, tested on ``relu2`` and ``relu3``; its one library is atypical: of
``--candidates`` libraries drawn, the one whose first 10 sets have the highest
mean pixel value relative to the generator's mean.  Every library has max(N) = 20
sets; the N = 10 library is its first 10 (paired).  One engine per library
(``pytest_tcav.TCAV(model, seed=0, alpha=0.05)``): its null CAVs are trained once.
The statistic does not depend on ``direction``, so one ``engine.test`` per
(set, N) gives every method and direction; p-values are recomputed from the
stored statistics with ``pytest_tcav.engine.statistics.compare_to_null``.

Every raw number goes to ``--out`` (JSON, MODEL replaced by the model's name, written after each
library, so an interrupted run keeps what it measured); ``--first-library`` extends a run with the
next libraries' seeds, and ``--from-json`` merges the records of a model and redoes the report without
measuring.  The committed results (two processes on a shared 2-core machine, 1 thread each):

    python benchmarks/conditional_null.py --models texture --libraries 1 --fresh 150 --out R/conditional_null_MODEL.json
    python benchmarks/conditional_null.py --models user --fresh 200 --out R/conditional_null_MODEL.json
    # then, for MODEL in texture shortcut, libraries 1-19 in chunks (suffix _b, _c, _e; shortcut from 0):
    python benchmarks/conditional_null.py --models MODEL --first-library F --libraries L --fresh 60 --planted 15 \\
        --cost-checks 2 --out R/conditional_null_MODEL_b.json
    # power on weaker concepts: libraries 12-15, planted sets 30% planted images, 70% random
    python benchmarks/conditional_null.py --models MODEL --first-library 12 --libraries 4 --fresh 60 --planted 20 \\
        --planted-fraction 0.3 --cost-checks 2 --out R/conditional_null_MODEL_diluted.json
    cd R && python ../conditional_null.py --report conditional_null.txt --from-json conditional_null_*.json
    python benchmarks/conditional_null.py --quick   # toy sizes, a smoke test (< 60 s), figures meaningless

(R = benchmarks/results; see the head of ``benchmarks/results/conditional_null.txt`` for the exact runs.)

Options: ``--libraries 8 --pseudo-null 60 --fresh 100 --planted 20 --k 20 30 40 60 --n 10 20 --candidates 40``.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import stats
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository: its tests.helpers
sys.path.insert(0, str(Path(__file__).resolve().parent))  # library_spread, its neighbour

from library_spread import MODELS as SYNTHETIC_MODELS  # noqa: E402
from library_spread import N_INPUTS  # noqa: E402

from pytest_tcav import TCAV  # noqa: E402
from pytest_tcav.engine.statistics import adjust_p_values, compare_to_null  # noqa: E402
from tests.helpers import synthetic  # noqa: E402

ALPHA = 0.05
SET_SIZE = synthetic.SET_SIZE
USER_SIZE = 32
USER_LAYERS = ["relu2", "relu3"]
ROLES = ("null_pseudo", "fresh", "planted")
Maker = Callable[[int, torch.Generator], torch.Tensor]


# -- the user-shape model: 32 px, a red square decides the class ------------------------------------------


def user_backgrounds(n: int, gen: torch.Generator) -> torch.Tensor:
    """The user's random data: plain backgrounds of a random colour with pixel noise."""
    colour = torch.rand(n, 3, 1, 1, generator=gen).expand(n, 3, USER_SIZE, USER_SIZE)
    return (colour + 0.05 * torch.randn(n, 3, USER_SIZE, USER_SIZE, generator=gen)).clamp(0, 1)


def _add_stripes(images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    n = images.shape[0]
    ys = torch.arange(USER_SIZE).float().view(1, USER_SIZE, 1)
    xs = torch.arange(USER_SIZE).float().view(1, 1, USER_SIZE)
    angle = (torch.rand(n, 1, 1, generator=gen) - 0.5) * math.pi
    period = 4.0 + 4.0 * torch.rand(n, 1, 1, generator=gen)
    phase = torch.rand(n, 1, 1, generator=gen) * 2 * math.pi
    mask = (torch.sin(2 * math.pi * (ys * torch.cos(angle) + xs * torch.sin(angle)) / period + phase) > 0).float()
    fg = torch.rand(n, 3, 1, 1, generator=gen)
    return images + (fg - images) * mask.unsqueeze(1)


def _add_red_square(images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    out = images.clone()
    n = out.shape[0]
    side = torch.randint(6, 10, (n,), generator=gen)
    for i in range(n):
        s = int(side[i])
        y, x = (int(v) for v in torch.randint(0, USER_SIZE - s + 1, (2,), generator=gen))
        out[i, :, y : y + s, x : x + s] = torch.tensor([0.9, 0.08, 0.08]).view(3, 1, 1)
    return (out + 0.03 * torch.randn(out.shape, generator=gen)).clamp(0, 1)


def user_images(n: int, gen: torch.Generator, red: bool) -> torch.Tensor:
    """A class's images: noisy plain backgrounds, half of them striped; class 1 (``red``) with a red square."""
    images = user_backgrounds(n, gen)
    striped = torch.rand(n, generator=gen) < 0.5
    if striped.any():
        images[striped] = _add_stripes(images[striped], gen).clamp(0, 1)
    return _add_red_square(images, gen) if red else images


def user_inputs(n: int, gen: torch.Generator) -> torch.Tensor:
    return user_images(n, gen, red=True)


def red_squares(n: int, gen: torch.Generator) -> torch.Tensor:
    """The planted concept: red squares on plain noisy backgrounds."""
    return _add_red_square(user_backgrounds(n, gen), gen)


class UserCNN(nn.Module):
    """Three conv blocks with named ReLUs (the layers a user would name: relu2, relu3)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.relu1 = nn.Conv2d(3, 8, 3, padding=1), nn.ReLU()
        self.conv2, self.relu2, self.pool2 = nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)
        self.conv3, self.relu3, self.pool3 = nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.conv1(x))
        x = self.pool2(self.relu2(self.conv2(x)))
        x = self.pool3(self.relu3(self.conv3(x)))
        return self.head(x)


def user_model(seed: int = 0, per_class: int = 400) -> nn.Module:
    gen = torch.Generator().manual_seed(seed + 7)
    x = torch.cat([user_images(per_class, gen, red=False), user_images(per_class, gen, red=True)])
    y = torch.cat([torch.zeros(per_class), torch.ones(per_class)]).long()
    torch.manual_seed(seed)
    model = synthetic.train(UserCNN(), x, y, seed=seed)
    check = torch.Generator().manual_seed(seed + 1000)
    held_out = torch.cat([user_images(100, check, red=False), user_images(100, check, red=True)])
    with torch.no_grad():
        correct = (model(held_out).argmax(1) == torch.cat([torch.zeros(100), torch.ones(100)])).float()
    model.held_out_accuracy = (correct[:100].mean().item(), correct[100:].mean().item())  # type: ignore[assignment]
    return model


def pick_atypical_library(candidates: int, n_sets: int, seed: int, set_size: int,
                          first: int = 10) -> tuple[int, dict[str, Any]]:
    """The candidate library (seed) whose first ``first`` sets' mean pixel value is highest, in standard errors.

    The generator's mean and the standard error of a ``first``-set library's mean are estimated from
    400 further sets of the generator.
    """
    ref = torch.Generator().manual_seed(seed + 424242)
    set_means = np.array([user_backgrounds(set_size, ref).mean().item() for _ in range(400)])
    gen_mean, set_sd = float(set_means.mean()), float(set_means.std(ddof=1))
    rows = []
    for c in range(candidates):
        lib_seed = seed + 1000 * c
        gen = torch.Generator().manual_seed(lib_seed)
        means = [user_backgrounds(set_size, gen).mean().item() for _ in range(n_sets)]
        z_first = (np.mean(means[:first]) - gen_mean) / (set_sd / math.sqrt(first))
        z_all = (np.mean(means) - gen_mean) / (set_sd / math.sqrt(n_sets))
        rows.append({"seed": lib_seed, "mean_first": float(np.mean(means[:first])), "z_first": float(z_first),
                     "mean_all": float(np.mean(means)), "z_all": float(z_all)})
    best = max(range(candidates), key=lambda k: rows[k]["z_first"])
    info = {"generator_mean": gen_mean, "set_mean_sd": set_sd, "first": first, "candidates": rows, "chosen": best}
    return rows[best]["seed"], info


# -- measurement ---------------------------------------------------------------------------------------------


def model_spec(name: str) -> tuple[Callable[[], nn.Module], Maker, Maker, Maker, list[str]]:
    """(make model, planted concept, random data, inputs of class 1, layers) of a model."""
    if name == "user":
        return user_model, red_squares, user_backgrounds, user_inputs, USER_LAYERS
    make_model, planted = SYNTHETIC_MODELS[name]
    return make_model, planted, synthetic.random_images, planted, list(synthetic.LAYERS)


def one_library(model: nn.Module, planted: Maker, random_of: Maker, inputs_of: Maker, layers: list[str],
                n_values: Sequence[int], counts: dict[str, int], seed: int, set_size: int, n_inputs: int,
                cost_checks: int, progress: str = "") -> dict[str, Any]:
    """Every set of one library (null pseudo-concepts, fresh pseudo-concepts, planted) tested at each N.

    Each role draws from its own generator (the null's pseudo-concepts do not change with ``--fresh``).
    The largest N goes first: it trains the concept's CAVs, the smaller N only scores them.
    """
    gen = torch.Generator().manual_seed(seed)
    library = [random_of(set_size, gen) for _ in range(max(n_values))]
    inputs = inputs_of(n_inputs, gen)
    engine = TCAV(model, seed=0, alpha=ALPHA)
    record: dict[str, Any] = {"seed": seed, "library_pixel_mean": [float(s.mean()) for s in library],
                              "per_n": {str(n): {"null": None, **{r: {"statistic": [], "p": [], "p_rank": []}
                                                                    for r in ROLES}} for n in n_values},
                              "seconds": {str(n): [] for n in n_values}}
    start = time.perf_counter()
    for r, role in enumerate(ROLES):
        role_gen = torch.Generator().manual_seed(seed + 1 + r)
        make = planted if role == "planted" else random_of
        for _ in range(counts[role]):
            concept = make(set_size, role_gen)
            for n in sorted(n_values, reverse=True):
                t0 = time.perf_counter()
                result = engine.test(concept, target=1, inputs=inputs, layers=layers, random_sets=library[:n],
                                     direction="positive")
                record["seconds"][str(n)].append(time.perf_counter() - t0)
                entry = record["per_n"][str(n)]
                entry[role]["statistic"].append([layer.statistic for layer in result.layers])
                entry[role]["p"].append([layer.p_value for layer in result.layers])
                entry[role]["p_rank"].append([layer.p_value_rank for layer in result.layers])
                entry["null"] = [list(layer.null_statistics) for layer in result.layers]
        print(f"  {progress} {role} done ({counts[role]} sets) at {time.perf_counter() - start:.0f} s", flush=True)
    # the cost of one new set against the warm library at each N alone (no CAV of it cached)
    cost_gen = torch.Generator().manual_seed(seed + 9)
    record["cost_s"] = {}
    for n in n_values:
        times = []
        for _ in range(cost_checks):
            concept = random_of(set_size, cost_gen)
            t0 = time.perf_counter()
            engine.test(concept, target=1, inputs=inputs, layers=layers, random_sets=library[:n])
            times.append(time.perf_counter() - t0)
        record["cost_s"][str(n)] = times
    record["measure_s"] = time.perf_counter() - start
    return record


def diluted(planted: Maker, random_of: Maker, fraction: float) -> Maker:
    """Planted sets of which only ``fraction`` of the images carry the planted concept, the rest random data."""

    def make(n: int, gen: torch.Generator) -> torch.Tensor:
        k = round(fraction * n)
        return torch.cat([planted(k, gen), random_of(n - k, gen)])

    return make


def measure(name: str, args: argparse.Namespace, out: Path | None) -> dict[str, Any]:
    make_model, planted, random_of, inputs_of, layers = model_spec(name)
    if args.planted_fraction < 1:
        planted = diluted(planted, random_of, args.planted_fraction)
    t0 = time.perf_counter()
    model = make_model()
    train_s = time.perf_counter() - t0
    counts = {"null_pseudo": args.pseudo_null, "fresh": args.fresh, "planted": args.planted}
    record: dict[str, Any] = {"model": name, "layers": layers, "alpha": ALPHA, "set_size": args.set_size,
                              "n_inputs": args.n_inputs, "n_values": list(args.n), "counts": counts, "k": args.k,
                              "seed": args.seed, "threads": torch.get_num_threads(), "train_s": train_s,
                              "planted_fraction": args.planted_fraction,
                              "libraries": []}
    print(f"[{name}] model trained in {train_s:.1f} s", flush=True)
    if name == "user":
        record["held_out_accuracy"] = getattr(model, "held_out_accuracy", None)
        lib_seed, info = pick_atypical_library(args.candidates, max(args.n), args.seed + 77, args.set_size)
        record["atypical_choice"] = info
        seeds = [lib_seed]
        print(f"[user] held-out accuracy (class 0, class 1) {record['held_out_accuracy']}; atypical library "
              f"{info['chosen']} of {args.candidates}: first 10 sets' mean pixel "
              f"{info['candidates'][info['chosen']]['z_first']:+.2f} SE", flush=True)
    else:
        seeds = [args.seed + 1000 * k for k in range(args.first_library, args.first_library + args.libraries)]
    start = time.perf_counter()
    for k, seed in enumerate(seeds):
        record["libraries"].append(one_library(model, planted, random_of, inputs_of, layers, args.n, counts, seed,
                                               args.set_size, args.n_inputs, args.cost_checks,
                                               progress=f"[{name} library {k + 1}/{len(seeds)}]"))
        record["measure_s"] = time.perf_counter() - start
        print(f"[{name}] library {k + 1}/{len(seeds)} in {record['libraries'][-1]['measure_s']:.0f} s "
              f"(total {record['measure_s']:.0f} s)", flush=True)
        if out is not None:
            out.write_text(json.dumps(record))
    return record


# -- analysis ------------------------------------------------------------------------------------------------


def methods(record: dict[str, Any]) -> list[tuple[str, str, int]]:
    """(label, null, K): K is None-like 0 for the random null."""
    ks = [k for k in record["k"] if k <= record["counts"]["null_pseudo"]]
    out = [("random-t", "t", 0), ("random-rank", "rank", 0)]
    out += [(f"pseudo-t K={k}", "t", k) for k in ks]
    if ks:
        out.append((f"pseudo-rank K={max(ks)}", "rank", max(ks)))
    return out


def p_values(entry: dict[str, Any], role: str, test: str, k: int, direction: str) -> np.ndarray:
    """Per-layer p-values (sets x layers) of ``role``'s sets under one method."""
    stat = np.array(entry[role]["statistic"], dtype=float)
    if k == 0:
        nulls = [np.array(v) for v in entry["null"]]
    else:
        pseudo = np.array(entry["null_pseudo"]["statistic"], dtype=float)[:k]
        nulls = [pseudo[:, j] for j in range(stat.shape[1])]
    return np.array([[compare_to_null(float(s[j]), nulls[j], direction, test).p_value  # type: ignore[arg-type]
                      for j in range(len(s))] for s in stat])


def family_min(p: np.ndarray) -> np.ndarray:
    """The smallest Holm-adjusted p-value per set (the family rejects at alpha when it is < alpha)."""
    return np.array([min(adjust_p_values(list(row), "holm")) for row in p])


def cp(successes: int, trials: int) -> tuple[float, float]:
    ci = stats.binomtest(successes, trials).proportion_ci(0.95, method="exact")
    return float(ci.low), float(ci.high)


def matched_threshold(fresh_min: np.ndarray, target: float = ALPHA) -> float:
    """The largest c with share(fresh_min < c) <= target."""
    values = np.sort(fresh_min)
    k = int(math.floor(target * len(values) + 1e-9))
    return float(values[k]) if k < len(values) else 1.0


def analyse(record: dict[str, Any]) -> dict[str, Any]:
    """Per N and method: per-library and pooled rates, intervals, power; per library the atypicality."""
    out: dict[str, Any] = {"model": record["model"], "layers": record["layers"], "per_n": {}}
    for n in record["n_values"]:
        per_method: dict[str, Any] = {}
        mismatch = 0.0
        for label, test, k in methods(record):
            libs = []
            fresh_all, planted_all = [], []
            resampled = [resampled_fpr(lib["per_n"][str(n)], k, test) if k else float("nan")
                         for lib in record["libraries"]]
            for lib in record["libraries"]:
                entry = lib["per_n"][str(n)]
                p_fresh = p_values(entry, "fresh", test, k, "positive")
                p_either = p_values(entry, "fresh", test, k, "either")
                p_planted = p_values(entry, "planted", test, k, "positive")
                if k == 0:  # the engine's own p-values: the recomputation should agree
                    engine_p = np.array(entry["fresh"]["p" if test == "t" else "p_rank"], dtype=float)
                    mismatch = max(mismatch, float(np.nanmax(np.abs(p_fresh - engine_p))))
                fmin, emin, pmin = family_min(p_fresh), family_min(p_either), family_min(p_planted)
                hits = int((fmin < ALPHA).sum())
                lo, hi = cp(hits, len(fmin))
                libs.append({"layer_rate": (p_fresh < ALPHA).mean(0).tolist(), "family": hits / len(fmin),
                             "family_ci": (lo, hi), "covers": lo <= ALPHA <= hi,
                             "either": float((emin < ALPHA).mean()),
                             "power": float((pmin < ALPHA).mean()) if len(pmin) else float("nan")})
                fresh_all.append(fmin)
                planted_all.append(pmin)
            fresh_cat, planted_cat = np.concatenate(fresh_all), np.concatenate(planted_all)
            threshold = matched_threshold(fresh_cat)
            hits = int((fresh_cat < ALPHA).sum())
            per_method[label] = {
                "libraries": libs, "pooled_family": hits / len(fresh_cat), "pooled_ci": cp(hits, len(fresh_cat)),
                "resampled": resampled,
                "covering": sum(lib["covers"] for lib in libs),
                "pooled_layer_rate": np.mean([lib["layer_rate"] for lib in libs], 0).tolist(),
                "pooled_either": float(np.mean([lib["either"] for lib in libs])),
                "power": float((planted_cat < ALPHA).mean()) if len(planted_cat) else float("nan"),
                "matched_threshold": threshold, "matched_fpr": float((fresh_cat < threshold).mean()),
                "matched_power": float((planted_cat < threshold).mean()) if len(planted_cat) else float("nan"),
                "matched_le_fpr": float((fresh_cat <= threshold).mean()),
                "matched_le_power": float((planted_cat <= threshold).mean()) if len(planted_cat) else float("nan"),
                "fresh_min": fresh_cat, "planted_min": planted_cat,
            }
        atyp = []
        for lib in record["libraries"]:
            entry = lib["per_n"][str(n)]
            null = np.array(entry["null"], dtype=float)  # layers x N
            fresh = np.array(entry["fresh"]["statistic"], dtype=float)
            pseudo = np.array(entry["null_pseudo"]["statistic"], dtype=float)
            planted = np.array(entry["planted"]["statistic"], dtype=float)
            row = {"random_sd": ((fresh.mean(0) - null.mean(1)) / null.std(1, ddof=1)).tolist(),
                   "pseudo_sd": ((fresh.mean(0) - pseudo.mean(0)) / pseudo.std(0, ddof=1)).tolist(),
                   "sd_ratio": (pseudo.std(0, ddof=1) / null.std(1, ddof=1)).tolist(),
                   "pseudo_skew": stats.skew(pseudo, axis=0).tolist(),
                   "pseudo_kurtosis": stats.kurtosis(pseudo, axis=0).tolist(),
                   "pseudo_shapiro_p": [float(stats.shapiro(pseudo[:, j]).pvalue) if len(pseudo) >= 3
                                        else float("nan") for j in range(pseudo.shape[1])],
                   "planted_pseudo_sd": ((planted.mean(0) - pseudo.mean(0)) / pseudo.std(0, ddof=1)).tolist()
                   if len(planted) else None}
            atyp.append(row)
        costs = [lib.get("cost_s", {}).get(str(n), []) for lib in record["libraries"]]
        joint = [lib["seconds"][str(n)][1:] for lib in record["libraries"]]  # the first test is cold
        out["per_n"][str(n)] = {"methods": per_method, "atypicality": atyp, "engine_mismatch": mismatch,
                                "cost_alone_s": float(np.mean(np.concatenate(costs))) if any(costs) else None,
                                "cost_alone_median_s": float(np.median(np.concatenate(costs))) if any(costs) else None,
                                "cost_joint_s": float(np.mean(np.concatenate(joint))),
                                "cost_joint_median_s": float(np.median(np.concatenate(joint)))}
    return out


def resampled_fpr(entry: dict[str, Any], k: int, test: str, reps: int = 200, seed: int = 0) -> float:
    """A library's family FPR (positive) of the pseudo null with K sets, averaged over draws of that null.

    The null's and the fresh pseudo-concepts are exchangeable (the same generator, the same library), so
    their statistics are pooled and split at random, ``reps`` times, into K null sets and the rest as fresh
    ones: the rate the pseudo null gives on this library on average over its own K draws (one draw, as
    measured above, adds the luck of those K sets).  Vectorised: p = t.sf or the rank p-value per layer,
    Holm over the layers (the family rejects when the smallest p is below alpha / layers).
    """
    pool = np.concatenate([np.array(entry["null_pseudo"]["statistic"], dtype=float),
                           np.array(entry["fresh"]["statistic"], dtype=float)])
    rng = np.random.default_rng(seed)
    rates = []
    for _ in range(reps):
        order = rng.permutation(len(pool))
        null, fresh = pool[order[:k]], pool[order[k:]]
        if test == "t":
            t = (fresh - null.mean(0)) / (null.std(0, ddof=1) * math.sqrt(1 + 1 / k))
            p = stats.t.sf(t, k - 1)
        else:
            p = (1 + (null[None, :, :] >= fresh[:, None, :]).sum(1)) / (k + 1)
        rates.append(float((p.min(1) < ALPHA / pool.shape[1]).mean()))
    return float(np.mean(rates))


def pooled_synthetic(analyses: list[dict[str, Any]], n: str) -> dict[str, Any]:
    """Rates and matched power over every library of several models (the synthetic ones) at one N."""
    out: dict[str, Any] = {}
    for label in analyses[0]["per_n"][n]["methods"]:
        entries = [a["per_n"][n]["methods"][label] for a in analyses]
        fresh = np.concatenate([e["fresh_min"] for e in entries])
        planted = np.concatenate([e["planted_min"] for e in entries])
        hits = int((fresh < ALPHA).sum())
        threshold = matched_threshold(fresh)
        out[label] = {"family": hits / len(fresh), "ci": cp(hits, len(fresh)),
                      "resampled": float(np.mean([v for e in entries for v in e["resampled"]])),
                      "covering": sum(e["covering"] for e in entries),
                      "libraries": sum(len(e["libraries"]) for e in entries),
                      "either": float(np.mean([lib["either"] for e in entries for lib in e["libraries"]])),
                      "power": float((planted < ALPHA).mean()), "matched_threshold": threshold,
                      "matched_fpr": float((fresh < threshold).mean()),
                      "matched_power": float((planted < threshold).mean()),
                      "matched_le_fpr": float((fresh <= threshold).mean()),
                      "matched_le_power": float((planted <= threshold).mean())}
    return out


# -- report --------------------------------------------------------------------------------------------------


def _pct(x: float) -> str:
    return "-" if x != x else f"{100 * x:.1f}%"


def _le(d: dict[str, Any], label: str) -> str:
    """For a rank test (discrete p-values), the next level up too: power and FPR at p <= the threshold."""
    if "rank" not in label:
        return ""
    return f"; at p<=: {_pct(d['matched_le_power'])}, FPR {_pct(d['matched_le_fpr'])}"


def _table(header: list[str], rows: list[list[str]]) -> None:
    print("| " + " | ".join(header) + " |")
    print("|" + " --- |" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")


def report(records: list[dict[str, Any]]) -> None:
    analyses = [analyse(r) for r in records]
    print(f"alpha {ALPHA}, one-sided positive unless said; family = Holm over the layers, rejects if any layer does. "
          "'*' marks a library whose Clopper-Pearson 95% interval of the family rate excludes alpha.")
    for record, a in zip(records, analyses):
        counts = record["counts"]
        print(f"\n== {label_of(record)} model, layers {', '.join(record['layers'])}: {len(record['libraries'])} "
              f"libraries; per library {counts['null_pseudo']} null pseudo-concepts, {counts['fresh']} fresh, "
              f"{counts['planted']} planted; sets of {record['set_size']}, {record['n_inputs']} inputs; threads "
              f"{record['threads']}; model trained in {record['train_s']:.1f} s, measured in "
              f"{record.get('measure_s', 0):.0f} s")
        if record["model"] == "user":
            info = record["atypical_choice"]
            chosen = info["candidates"][info["chosen"]]
            zs = ", ".join(f"{c['z_first']:+.2f}" for c in info["candidates"])
            print(f"held-out accuracy (class 0, class 1): {record.get('held_out_accuracy')}")
            print(f"atypical library: candidate {info['chosen']} of {len(info['candidates'])} (seed {chosen['seed']}); "
                  f"mean pixel of its first {info['first']} sets {chosen['mean_first']:.4f} vs the generator's "
                  f"{info['generator_mean']:.4f}: {chosen['z_first']:+.2f} standard errors (all "
                  f"{max(record['n_values'])} sets: {chosen['z_all']:+.2f} SE); the candidates' z: {zs}")
        for n, per_n in a["per_n"].items():
            ms = per_n["methods"]
            labels = list(ms)
            print(f"\n-- {label_of(record)}, N={n}: family false-positive rate per library (positive) "
                  "[95% CP interval]; atypicality = mean fresh statistic in random-null SDs per layer")
            rows = []
            for i, atyp in enumerate(per_n["atypicality"]):
                cells = [str(i), " ".join(f"{z:+.2f}" for z in atyp["random_sd"])]
                for label in labels:
                    lib = ms[label]["libraries"][i]
                    lo, hi = lib["family_ci"]
                    cells.append(f"{_pct(lib['family'])} [{_pct(lo)}, {_pct(hi)}]{'' if lib['covers'] else '*'}")
                rows.append(cells)
            rows.append(["pooled", ""] + [f"{_pct(ms[x]['pooled_family'])} [{_pct(ms[x]['pooled_ci'][0])}, "
                                          f"{_pct(ms[x]['pooled_ci'][1])}]" for x in labels])
            rows.append(["cover 5%", ""] + [f"{ms[x]['covering']}/{len(ms[x]['libraries'])}" for x in labels])
            rows.append(["resampled", ""] + [_pct(float(np.mean(ms[x]["resampled"]))) for x in labels])
            rows.append(["either", ""] + [_pct(ms[x]["pooled_either"]) for x in labels])
            for j, layer in enumerate(record["layers"]):
                rows.append([f"{layer} raw", ""] + [_pct(ms[x]["pooled_layer_rate"][j]) for x in labels])
            rows.append(["power", ""] + [_pct(ms[x]["power"]) for x in labels])
            rows.append(["matched power", ""] + [f"{_pct(ms[x]['matched_power'])} (p<{ms[x]['matched_threshold']:.3g}"
                                                 f", FPR {_pct(ms[x]['matched_fpr'])})" + _le(ms[x], x)
                                                 for x in labels])
            _table(["library", "atypicality", *labels], rows)
            print("  rows 'either' (family rate, direction either) and '<layer> raw' (uncorrected, positive): "
                  "means over libraries; 'power': planted concepts significant (family, positive) at alpha; "
                  "'matched power': at the per-layer threshold giving this model's pooled family FPR <= 5% (rank "
                  "tests: p-values on a grid, so also the next level up, p <= threshold)")
            either = "; ".join(f"{label} " + " ".join(_pct(lib["either"]) for lib in ms[label]["libraries"])
                               for label in labels)
            print(f"  direction either, family rate per library: {either}")
            resampled = "; ".join(f"{label} " + " ".join(_pct(v) for v in ms[label]["resampled"])
                                  for label in labels if label.startswith("pseudo"))
            print("  'resampled': the pseudo null's family rate (positive) per library averaged over 200 random "
                  "splits of its null + fresh pseudo-concepts into K null sets and the rest (the rate given the "
                  f"library, without the luck of one K-set draw); per library: {resampled}")
            at = per_n["atypicality"]
            layers = record["layers"]
            for key, what in (("pseudo_sd", "mean fresh statistic in pseudo-null SDs (K max)"),
                              ("sd_ratio", "sd(pseudo statistics) / sd(random null)"),
                              ("pseudo_skew", "skew of the pseudo statistics"),
                              ("pseudo_kurtosis", "excess kurtosis of the pseudo statistics"),
                              ("planted_pseudo_sd", "mean planted statistic in pseudo-null SDs")):
                vals = np.array([row[key] for row in at], dtype=float)
                print(f"  {what}, per layer, mean [min, max] over libraries: " + "; ".join(
                    f"{layer} {vals[:, j].mean():+.2f} [{vals[:, j].min():+.2f}, {vals[:, j].max():+.2f}]"
                    for j, layer in enumerate(layers)))
            shapiro = np.array([row["pseudo_shapiro_p"] for row in at], dtype=float)
            print("  Shapiro-Wilk on the pseudo statistics: libraries with p < 0.05 per layer: " + ", ".join(
                f"{layer} {int((shapiro[:, j] < 0.05).sum())}/{len(shapiro)}" for j, layer in enumerate(layers)))
            print(f"  largest difference between the engine's random-null p-values and their recomputation: "
                  f"{per_n['engine_mismatch']:.2g}")
            alone = per_n["cost_alone_s"]
            median = per_n.get("cost_alone_median_s")
            print(f"  cost of one pseudo-concept pass (a new set against the warm library, N={n} alone), mean "
                  f"(median): {'-' if alone is None else f'{alone:.2f} s ({median:.2f} s)'}; in the measurement "
                  f"loop (largest N first, a smaller N reusing its CAVs): {per_n['cost_joint_s']:.2f} s "
                  f"({per_n.get('cost_joint_median_s', float('nan')):.2f} s)")
    groups: dict[float, list[dict[str, Any]]] = {}
    for record, a in zip(records, analyses):
        if record["model"] != "user":
            groups.setdefault(record.get("planted_fraction", 1.0), []).append(a)
    for fraction, synthetic_analyses in groups.items():
        if len(synthetic_analyses) < 2:
            continue
        for n in synthetic_analyses[0]["per_n"]:
            pooled = pooled_synthetic(synthetic_analyses, n)
            print(f"\n== pooled over the synthetic models ({', '.join(a['model'] for a in synthetic_analyses)}), "
                  f"planted sets {100 * fraction:.0f}% planted, N={n}: family rate positive [95% CP, treating checks "
                  "as independent], libraries whose interval covers 5%, family rate either, power at alpha, power at "
                  "matched FPR")
            _table(["method", "family FPR", "resampled", "cover 5%", "either", "power",
                    "matched power (threshold, FPR)"],
                   [[label, f"{_pct(d['family'])} [{_pct(d['ci'][0])}, {_pct(d['ci'][1])}]", _pct(d["resampled"]),
                     f"{d['covering']}/{d['libraries']}", _pct(d["either"]), _pct(d["power"]),
                     f"{_pct(d['matched_power'])} ({d['matched_threshold']:.3g}, {_pct(d['matched_fpr'])})"
                     + _le(d, label)]
                    for label, d in pooled.items()])


def label_of(record: dict[str, Any]) -> str:
    fraction = record.get("planted_fraction", 1.0)
    return record["model"] if fraction >= 1 else f"{record['model']} (planted sets {100 * fraction:.0f}% planted)"


def merge(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Records of the same model (a run and its extensions, ``--first-library``) as one: libraries concatenated.

    The libraries may differ in their number of fresh or planted sets; the null's K must be common.
    """
    merged: dict[str, dict[str, Any]] = {}
    for record in records:
        name = label_of(record)
        if name not in merged:
            merged[name] = record
            continue
        into = merged[name]
        if record["n_values"] != into["n_values"] or record["counts"]["null_pseudo"] != into["counts"]["null_pseudo"]:
            raise SystemExit(f"{name}: records with different N or K cannot be merged")
        seen = {lib["seed"] for lib in into["libraries"]}
        into["libraries"] += [lib for lib in record["libraries"] if lib["seed"] not in seen]
        into["measure_s"] = into.get("measure_s", 0) + record.get("measure_s", 0)
        for role in ("fresh", "planted"):
            values = {int(v) for v in str(into["counts"][role]).split("/")} | {int(record["counts"][role])}
            into["counts"][role] = "/".join(str(v) for v in sorted(values)) if len(values) > 1 else values.pop()
    return list(merged.values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["texture", "shortcut", "user"],
                        choices=["texture", "shortcut", "user"])
    parser.add_argument("--libraries", type=int, default=8, help="libraries per synthetic model (user: one)")
    parser.add_argument("--pseudo-null", type=int, default=60, help="pseudo-concepts of the null (K max)")
    parser.add_argument("--fresh", type=int, default=100, help="fresh pseudo-concepts per library (the FPR)")
    parser.add_argument("--planted", type=int, default=20, help="planted concepts per library (the power)")
    parser.add_argument("--planted-fraction", type=float, default=1.0,
                        help="share of a planted set's images that carry the planted concept (the rest random)")
    parser.add_argument("--k", type=int, nargs="+", default=[20, 30, 40, 60], help="pseudo-null sizes K")
    parser.add_argument("--n", type=int, nargs="+", default=[10, 20], help="random sets per library")
    parser.add_argument("--candidates", type=int, default=40, help="candidate libraries for the atypical one")
    parser.add_argument("--cost-checks", type=int, default=3, help="timed new sets per library and N")
    parser.add_argument("--first-library", type=int, default=0,
                        help="index of the first synthetic library (to extend a run: its seeds follow on)")
    parser.add_argument("--seed", type=int, default=31)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    parser.add_argument("--out", type=Path, help="raw record per model (MODEL replaced by the model's name)")
    parser.add_argument("--report", type=Path, help="also write the report here")
    parser.add_argument("--note", type=Path, help="a text file printed at the head of the report (the runs made)")
    parser.add_argument("--from-json", type=Path, nargs="+", help="report stored records; measure nothing")
    parser.add_argument("--quick", action="store_true", help="toy sizes: a smoke test, figures meaningless")
    args = parser.parse_args(argv)
    args.set_size, args.n_inputs = SET_SIZE, N_INPUTS
    if args.from_json:
        records = merge([json.loads(path.read_text()) for path in args.from_json])
    else:
        if args.threads:
            torch.set_num_threads(args.threads)
        if args.quick:
            args.libraries, args.pseudo_null, args.fresh, args.planted = 1, 5, 4, 2
            args.k, args.n, args.candidates, args.cost_checks = [3, 5], [3, 5], 3, 1
            args.set_size, args.n_inputs = 6, 4
        records = []
        for name in args.models:
            out = Path(str(args.out).replace("MODEL", name)) if args.out else None
            records.append(measure(name, args, out))
    buffer = io.StringIO()
    with redirect_stdout(buffer):
        if args.note is not None:
            print(args.note.read_text().rstrip() + "\n")
        report(records)
    print(buffer.getvalue())
    if args.report is not None:
        args.report.write_text(buffer.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main())
