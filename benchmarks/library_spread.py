"""How much the false-positive rate of one random library varies between libraries, for N random sets.

A user fixes one library (``random_0`` ... ``random_{N-1}``) and tests every
concept against it, so every check shares that library's luck: the null's mean
and spread are estimates from N sets.  This script measures the false-positive
rate *per library* and its spread across libraries, on the small CNNs of
``tests/helpers/synthetic.py`` (``texture_model``, ``shortcut_model``):

* for each model, ``--libraries`` independent libraries of ``max(--n)`` random
  sets (``synthetic.random_images``, 30 images each) and 40 inputs of class 1
  (each library is one user's setup); the libraries of N sets are the first N
  sets of each, so the N values are compared on the same draws (paired);
* per library, ``--pseudo`` pseudo-concepts drawn from the random sets' own
  distribution and not in the library, each tested one-sided (``positive``) at
  alpha 0.05 on ``conv1``-``conv3`` with the engine (``pytest_tcav.TCAV``; one
  engine per library, so the null's CAVs are trained once and every smaller N
  is served from its cache);
* per model, layer and N: the mean, 10th and 90th percentiles over libraries of
  the per-library rate (raw p-value per layer, uncorrected), the Holm family
  rate over the three layers, and two references: the spread a perfectly
  Gaussian set-effect model would give (the irreducible luck of estimating the
  null from N sets, by simulation), and that spread plus the binomial noise of
  ``--pseudo`` checks per library (what this measurement would show if the test
  behaved exactly as its derivation assumes);
* diagnostics of a layer whose average rate is above alpha (see
  :func:`diagnose`), and the cost of a check at each N (cold: a new library,
  its null trained; warm: one more concept).

Every raw number (p-values, statistics, nulls) is written to ``--out`` as JSON,
so the report can be redone with ``--from-json`` without measuring again.

    python benchmarks/library_spread.py [--models texture shortcut] [--libraries 8] [--pseudo 60]
                                        [--n 10 20 30 50] [--threads 1] [--out FILE] [--quick]
    python benchmarks/library_spread.py --from-json FILE [FILE ...]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository: its tests.helpers

from pytest_tcav import TCAV  # noqa: E402
from pytest_tcav.engine.statistics import adjust_p_values  # noqa: E402
from tests.helpers import synthetic  # noqa: E402

LAYERS = synthetic.LAYERS
SET_SIZE = synthetic.SET_SIZE
N_INPUTS = 40
ALPHA = 0.05
MODELS: dict[str, tuple[Callable[[], torch.nn.Module], Callable[[int, torch.Generator], torch.Tensor]]] = {
    "texture": (synthetic.texture_model, synthetic.stripes),
    "shortcut": (synthetic.shortcut_model, synthetic.patches),
}


# -- measurement ---------------------------------------------------------------------------------------


def one_library(model: torch.nn.Module, inputs_of: Callable, n_values: Sequence[int], n_pseudo: int,
                seed: int, set_size: int = SET_SIZE, n_inputs: int = N_INPUTS) -> dict[str, Any]:
    """Every pseudo-concept of one library tested against its first N sets, for each N.

    The largest N goes first: its first test trains every pair's CAV in one
    batch, and the smaller libraries' tests of the same concept only score.
    """
    gen = torch.Generator().manual_seed(seed)
    library = [synthetic.random_images(set_size, gen) for _ in range(max(n_values))]
    inputs = inputs_of(n_inputs, gen)
    engine = TCAV(model, seed=0, alpha=ALPHA)
    out: dict[str, Any] = {str(n): {"p": [], "p_rank": [], "statistic": [], "null": None} for n in n_values}
    for _ in range(n_pseudo):
        concept = synthetic.random_images(set_size, gen)
        for n in sorted(n_values, reverse=True):
            result = engine.test(concept, target=1, inputs=inputs, layers=LAYERS, random_sets=library[:n],
                                 direction="positive")
            record = out[str(n)]
            record["p"].append([layer.p_value for layer in result.layers])
            record["p_rank"].append([layer.p_value_rank for layer in result.layers])
            record["statistic"].append([layer.statistic for layer in result.layers])
            record["null"] = [layer.null_statistics for layer in result.layers]
    return out


def check_cost(model: torch.nn.Module, inputs_of: Callable, n_values: Sequence[int], seed: int,
               warm_checks: int = 3, set_size: int = SET_SIZE, n_inputs: int = N_INPUTS) -> dict[str, Any]:
    """Seconds per check at each N, each N on a fresh engine: the first check (the null's CAVs trained too)
    and the median of ``warm_checks`` further concepts (their own N CAVs per layer only)."""
    cost: dict[str, Any] = {}
    for n in n_values:
        gen = torch.Generator().manual_seed(seed + n)
        library = [synthetic.random_images(set_size, gen) for _ in range(n)]
        inputs = inputs_of(n_inputs, gen)
        engine = TCAV(model, seed=0, alpha=ALPHA)
        times = []
        for _ in range(1 + warm_checks):
            concept = synthetic.random_images(set_size, gen)
            start = time.perf_counter()
            engine.test(concept, target=1, inputs=inputs, layers=LAYERS, random_sets=library)
            times.append(time.perf_counter() - start)
        cost[str(n)] = {"cold_s": times[0], "warm_s": float(np.median(times[1:])) if warm_checks else None,
                        "cavs_per_layer_cold": n + n * (n - 1) // 2, "cavs_per_layer_warm": n}
    return cost


def measure(model_name: str, libraries: int, n_pseudo: int, n_values: Sequence[int], seed: int,
            out: Path | None = None, set_size: int = SET_SIZE, n_inputs: int = N_INPUTS,
            warm_checks: int = 3, model: torch.nn.Module | None = None) -> dict[str, Any]:
    """One model's record; written to ``out`` after each library, so an interrupted run keeps its data.

    ``model``: the trained model, if the caller has it (the smoke test's session fixture).
    """
    make_model, inputs_of = MODELS[model_name]
    model = make_model() if model is None else model
    record: dict[str, Any] = {"model": model_name, "layers": LAYERS, "alpha": ALPHA, "set_size": set_size,
                              "n_inputs": n_inputs, "n_values": list(n_values), "pseudo": n_pseudo,
                              "seed": seed, "threads": torch.get_num_threads(), "libraries": []}
    start = time.perf_counter()
    for k in range(libraries):
        record["libraries"].append(one_library(model, inputs_of, n_values, n_pseudo, seed + 1000 * k,
                                               set_size, n_inputs))
        record["measure_s"] = time.perf_counter() - start
        if out is not None:
            out.write_text(json.dumps(record))
    record["cost"] = check_cost(model, inputs_of, n_values, seed + 999_999, warm_checks, set_size, n_inputs)
    if out is not None:
        out.write_text(json.dumps(record))
    return record


# -- references: what a test that behaves as derived would show -----------------------------------------


def gaussian_library_rates(n: int, libraries: int = 20000, alpha: float = ALPHA, seed: int = 0) -> np.ndarray:
    """Per-library false-positive rates under the derivation's model with Gaussian set effects.

    Set effects ``e ~ N(0, 1)``, no pair noise: the null is ``e_i - mean(e)``,
    a concept's statistic ``e_c - mean(e)``; its rate given the library is
    ``P(e_c > mean(e) + t_crit * sd(e) * sqrt(1 + 1/N))``.  Averaged over
    libraries this is exactly alpha; its spread is the luck no test on N sets avoids.
    """
    rng = np.random.default_rng(seed)
    effects = rng.standard_normal((libraries, n))
    crit = stats.t.ppf(1 - alpha, n - 1)
    threshold = effects.mean(1) + crit * effects.std(1, ddof=1) * np.sqrt(1 + 1 / n)
    return stats.norm.sf(threshold)


def with_binomial_noise(rates: np.ndarray, checks: int, seed: int = 1) -> np.ndarray:
    """The rates as ``checks`` pseudo-concepts per library would measure them (treated as independent)."""
    return np.random.default_rng(seed).binomial(checks, rates) / checks


# -- report ------------------------------------------------------------------------------------------------


def _spread(values: Sequence[float] | np.ndarray) -> tuple[float, float, float]:
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), float(np.percentile(arr, 10)), float(np.percentile(arr, 90))


def summarise(record: dict[str, Any]) -> dict[str, Any]:
    """Per layer and N: per-library rates and their spread, the Holm family rate, the references, the cost."""
    n_pseudo = record["pseudo"]
    summary: dict[str, Any] = {"model": record["model"], "libraries": len(record["libraries"]),
                               "pseudo": n_pseudo, "per_n": {}}
    for n in record["n_values"]:
        p = np.array([lib[str(n)]["p"] for lib in record["libraries"]])  # libraries x checks x layers
        per_library = (p < ALPHA).mean(1)  # libraries x layers
        holm = np.array([[min(adjust_p_values(list(check), "holm")) < ALPHA for check in lib] for lib in p])
        ideal = gaussian_library_rates(n)
        entry: dict[str, Any] = {
            "per_library": {layer: per_library[:, k].round(4).tolist() for k, layer in enumerate(LAYERS)},
            "spread": {layer: _spread(per_library[:, k]) for k, layer in enumerate(LAYERS)},
            # libraries are independent (checks within one are not): the standard error of the mean rate
            "standard_error": {layer: float(per_library[:, k].std(ddof=1) / np.sqrt(len(per_library)))
                               if len(per_library) > 1 else float("nan") for k, layer in enumerate(LAYERS)},
            "holm_per_library": holm.mean(1).round(4).tolist(),
            "holm_spread": _spread(holm.mean(1)),
            "gaussian_ideal": _spread(ideal),
            "gaussian_ideal_with_binomial": _spread(with_binomial_noise(ideal, p.shape[1])),
        }
        if "cost" in record:
            entry["cost"] = record["cost"][str(n)]
        summary["per_n"][str(n)] = entry
    return summary


def diagnose(record: dict[str, Any]) -> dict[str, Any]:
    """Why a layer's average rate may sit above alpha, from the stored statistics.

    Per layer and N, pooled over libraries and concepts:

    * ``z``: each concept's standardised distance from its library's null,
      ``(S_c - mean) / (sd * sqrt(1 + 1/N))``; under the derivation it is
      t-distributed on N - 1 degrees of freedom, so ``var_ratio`` (its variance
      over the t's) near 1 means the null's spread is the right yardstick, above 1
      that concept statistics vary more than the null predicts;
    * ``null_kurtosis`` / ``null_skew``: excess kurtosis and skewness of the
      standardised null values (heavy tails of the set effects show here, 0 for a normal);
    * ``t_rate`` vs ``rank_rate`` and ``rank_level``: the t-test's rate next to the
      rank test's, which assumes no distribution (its exact level at this N is
      ``rank_level``; the rank test cannot reject at all below N = 20);
    * ``shift_sd``: the spread over libraries of the mean z of their concepts: the
      library's luck in its null mean (plus the noise of ``pseudo`` concepts).
    """
    out: dict[str, Any] = {}
    for n in record["n_values"]:
        libs = record["libraries"]
        stat = np.array([lib[str(n)]["statistic"] for lib in libs])  # L x K x layers
        null = np.array([lib[str(n)]["null"] for lib in libs])  # L x layers x N
        p = np.array([lib[str(n)]["p"] for lib in libs])
        p_rank = np.array([lib[str(n)]["p_rank"] for lib in libs])
        mean = null.mean(2)  # L x layers
        sd = null.std(2, ddof=1)
        z = (stat - mean[:, None, :]) / (sd[:, None, :] * np.sqrt(1 + 1 / n))
        null_std = (null - mean[:, :, None]) / sd[:, :, None]
        t_var = (n - 1) / (n - 3) if n > 3 else float("inf")
        rank_level = np.floor(ALPHA * (n + 1) - 1e-12) / (n + 1)
        per_layer = {}
        for k, layer in enumerate(LAYERS):
            zk = z[:, :, k]
            per_layer[layer] = {
                "t_rate": float((p[:, :, k] < ALPHA).mean()),
                "rank_rate": float((p_rank[:, :, k] < ALPHA).mean()),
                "rank_level": float(rank_level),
                "z_mean": float(zk.mean()),
                "var_ratio": float(zk.var(ddof=1) / t_var),
                "z_kurtosis": float(stats.kurtosis(zk.ravel())),
                "null_skew": float(stats.skew(null_std[:, k, :].ravel())),
                "null_kurtosis": float(stats.kurtosis(null_std[:, k, :].ravel())),
                "within_library_var_ratio": float(np.mean(zk.var(1, ddof=1)) / t_var),
                "shift_sd": float(zk.mean(1).std(ddof=1)),
            }
        out[str(n)] = per_layer
    return out


def smoothed_rates(record: dict[str, Any], n: int) -> np.ndarray:
    """Per library and layer, the rate without the binomial noise of a few checks (libraries x layers).

    The library's threshold on the statistic (null mean + t_crit * sd * sqrt(1 + 1/N)) against a
    normal fitted to its pseudo-concepts' statistics: the tail probability is the library's rate if
    those statistics are normal given the library (their measured kurtosis is near 0 from N = 20 on).
    """
    stat = np.array([lib[str(n)]["statistic"] for lib in record["libraries"]])  # L x K x layers
    null = np.array([lib[str(n)]["null"] for lib in record["libraries"]])  # L x layers x N
    threshold = null.mean(2) + stats.t.ppf(1 - ALPHA, n - 1) * null.std(2, ddof=1) * np.sqrt(1 + 1 / n)
    return stats.norm.sf((threshold - stat.mean(1)) / stat.std(1, ddof=1))


def pooled(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Per N, every (model, layer, library) rate together: the docs' one-line answer per N.

    ``above_10`` is the share of library-layers whose rate exceeds 10%: counted (with the binomial
    noise of ``pseudo`` checks), smoothed (:func:`smoothed_rates`), and in the Gaussian reference
    (with the same binomial noise, and without).
    """
    out: dict[str, Any] = {}
    for n in records[0]["n_values"]:
        rates = np.concatenate([
            (np.array([lib[str(n)]["p"] for lib in record["libraries"]]) < ALPHA).mean(1).ravel()
            for record in records
        ])
        smooth = np.concatenate([smoothed_rates(record, n).ravel() for record in records])
        truth = gaussian_library_rates(n)
        ideal = with_binomial_noise(truth, records[0]["pseudo"])
        out[str(n)] = {"count": int(rates.size), "spread": _spread(rates), "above_10": float((rates > 0.1).mean()),
                       "smoothed": _spread(smooth), "smoothed_above_10": float((smooth > 0.1).mean()),
                       "ideal_with_binomial": _spread(ideal), "ideal_above_10": float((ideal > 0.1).mean()),
                       "ideal_spread": _spread(truth), "ideal_true_above_10": float((truth > 0.1).mean())}
    return out


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def report(records: list[dict[str, Any]]) -> None:
    for record in records:
        summary = summarise(record)
        print(f"\n== {record['model']} model: {summary['libraries']} libraries x {summary['pseudo']} pseudo-concepts "
              f"per N, sets of {record['set_size']}, {record['n_inputs']} inputs, one-sided positive, alpha "
              f"{ALPHA}, threads {record['threads']} (measured in {record.get('measure_s', 0):.0f} s)")
        print("per-library false-positive rate (raw p per layer): mean [10th, 90th percentile over libraries]")
        header = " | ".join(["N", *LAYERS, "Holm, 3 layers", "Gaussian ideal", "ideal + binomial",
                             "s/check cold", "s/check warm"])
        print(f"| {header} |")
        print("|" + " --- |" * (len(LAYERS) + 6))
        for n, entry in summary["per_n"].items():
            cells = [n]
            for layer in LAYERS:
                mean, lo, hi = entry["spread"][layer]
                cells.append(f"{_pct(mean)} [{_pct(lo)}, {_pct(hi)}]")
            for key in ("holm_spread", "gaussian_ideal", "gaussian_ideal_with_binomial"):
                mean, lo, hi = entry[key]
                cells.append(f"{_pct(mean)} [{_pct(lo)}, {_pct(hi)}]")
            cost = entry.get("cost") or {}
            cells.append(f"{cost['cold_s']:.2f}" if cost else "-")
            cells.append(f"{cost['warm_s']:.2f}" if cost.get("warm_s") is not None else "-")
            print("| " + " | ".join(cells) + " |")
        for n, entry in summary["per_n"].items():
            means = ", ".join(f"{layer} {_pct(entry['spread'][layer][0])} ± {_pct(entry['standard_error'][layer])}"
                              for layer in LAYERS)
            rates = "; ".join(f"{layer} {entry['per_library'][layer]}" for layer in LAYERS)
            print(f"  N={n} mean over libraries ± standard error: {means}; per library: {rates}")
        print("diagnostics (pooled over libraries and concepts):")
        for n, per_layer in diagnose(record).items():
            for layer, d in per_layer.items():
                print(f"  N={n} {layer}: t {_pct(d['t_rate'])}, rank {_pct(d['rank_rate'])} (rank level "
                      f"{_pct(d['rank_level'])}); z mean {d['z_mean']:+.3f}, var ratio {d['var_ratio']:.2f} "
                      f"(within library {d['within_library_var_ratio']:.2f}), z kurtosis {d['z_kurtosis']:+.2f}; "
                      f"null skew {d['null_skew']:+.2f}, kurtosis {d['null_kurtosis']:+.2f}; "
                      f"library shift sd {d['shift_sd']:.2f}")
    if len(records) > 1 or len(records[0]["libraries"]) > 1:
        print("\npooled over models, layers and libraries: per-library rate mean [10th, 90th percentile], "
              "share of library-layers above 10%")
        for n, d in pooled(records).items():
            cells = []
            for label, key, above in (("counted", "spread", "above_10"), ("smoothed", "smoothed", "smoothed_above_10"),
                                      ("Gaussian ideal + binomial", "ideal_with_binomial", "ideal_above_10"),
                                      ("Gaussian ideal", "ideal_spread", "ideal_true_above_10")):
                mean, lo, hi = d[key]
                cells.append(f"{label} {_pct(mean)} [{_pct(lo)}, {_pct(hi)}] >10%: {_pct(d[above])}")
            print(f"  N={n} ({d['count']} library-layers): " + "; ".join(cells))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--libraries", type=int, default=8, help="independent libraries per model")
    parser.add_argument("--pseudo", type=int, default=60, help="pseudo-concepts per library")
    parser.add_argument("--n", type=int, nargs="+", default=[10, 20, 30, 50], help="random sets per library")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    parser.add_argument("--out", type=Path, help="write the raw record here (one JSON file per model: "
                                                 "MODEL is replaced by the model's name)")
    parser.add_argument("--from-json", type=Path, nargs="+", help="report stored records; measure nothing")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test, figures meaningless")
    args = parser.parse_args(argv)
    if args.from_json:
        report([json.loads(path.read_text()) for path in args.from_json])
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    set_size, n_inputs, warm_checks = SET_SIZE, N_INPUTS, 3
    if args.quick:
        args.libraries, args.pseudo, args.n = 2, 3, [3, 5]
        set_size, n_inputs, warm_checks = 6, 4, 1
    records = []
    for name in args.models:
        out = Path(str(args.out).replace("MODEL", name)) if args.out else None
        records.append(measure(name, args.libraries, args.pseudo, args.n, args.seed, out, set_size=set_size,
                               n_inputs=n_inputs, warm_checks=warm_checks))
    report(records)
    return 0


if __name__ == "__main__":
    sys.exit(main())
