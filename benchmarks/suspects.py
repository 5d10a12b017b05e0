"""Suspect examples on planted data: recall, precision, and the scores that set the threshold.

A concept set of 30 examples, 5 of them impostors from another source, and
10 random sets, one of which holds 6 examples of the concept: how many of the
planted examples the engine flags (engine/evidence.py), how many clean ones it
flags, and the outlier scores of clean and planted examples, on images (the
texture model of tests/helpers/synthetic.py) and text (the word-bag model of
tests/helpers/text_model.py)::

    python -m benchmarks.suspects                  # seeds 0-4, both modalities
    python -m benchmarks.suspects --seeds 0 --modality text

docs/statistics.md ("Suspect examples") quotes its output.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from pytest_tcav.engine import evidence
from pytest_tcav.engine.examples import Concept
from pytest_tcav.engine.tcav import TCAV
from tests.helpers import synthetic, text_model

SET_SIZE = 30
N_IMPOSTORS = 5
N_RANDOM = 10
PLANTED_SET = 3  # random set (from 0) that holds concept examples
N_PLANTED = 6


@dataclass
class Planted:
    """One seed's data: which concept examples are impostors, which random examples are the concept's."""

    concept: Concept
    randoms: list[Concept]
    inputs: Any
    impostors: set[int]
    planted: set[int]  # indices in random set PLANTED_SET
    layers: list[str]
    model: torch.nn.Module
    tokenizer: Any = None


@dataclass
class Tally:
    flagged_impostors: int = 0
    impostors: int = 0
    flagged_planted: int = 0
    planted: int = 0
    false_concept: int = 0  # clean concept examples flagged
    false_random: int = 0  # clean random examples flagged
    clean_concept: int = 0
    clean_random: int = 0
    scores: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in
                                                                    ("impostor", "clean concept", "planted",
                                                                     "clean random")})

    def line(self) -> str:
        per30 = 30 * (self.false_concept + self.false_random) / max(1, self.clean_concept + self.clean_random)
        flagged = self.flagged_impostors + self.flagged_planted
        wrong = self.false_concept + self.false_random
        return (f"impostors {self.flagged_impostors}/{self.impostors}, planted {self.flagged_planted}/{self.planted}, "
                f"false flags {self.false_concept}/{self.clean_concept} concept + {self.false_random}/"
                f"{self.clean_random} random ({per30:.2f} per 30 clean), precision "
                f"{flagged / max(1, flagged + wrong):.2f}")


def image_data(seed: int, model: torch.nn.Module) -> Planted:
    """Striped concept with 5 smooth-noise impostors; random sets of dots and noise, one with 6 striped images."""
    gen = torch.Generator().manual_seed(1000 + seed)
    concept = synthetic.stripes(SET_SIZE, gen)
    impostors = set(torch.randperm(SET_SIZE, generator=gen)[:N_IMPOSTORS].tolist())
    for k in impostors:
        concept[k] = synthetic.noise(1, gen)[0]

    def clean(n: int) -> torch.Tensor:
        out = synthetic.noise(n, gen)
        dotted = torch.rand(n, generator=gen) < 0.5
        out[dotted] = synthetic.dots(int(dotted.sum()), gen)
        return out

    randoms = [clean(SET_SIZE) for _ in range(N_RANDOM)]
    planted = set(torch.randperm(SET_SIZE, generator=gen)[:N_PLANTED].tolist())
    for k in planted:
        randoms[PLANTED_SET][k] = synthetic.stripes(1, gen)[0]
    return Planted(Concept("striped", concept), [Concept(f"random_{j}", r) for j, r in enumerate(randoms)],
                   synthetic.stripes(20, gen), impostors, planted, list(synthetic.LAYERS), model)


def text_data(seed: int, model: torch.nn.Module) -> Planted:
    """Sentences with a positive word, 5 with a neutral noun instead; random sentences, one set with 6 positive."""
    gen = torch.Generator().manual_seed(2000 + seed)
    concept = text_model.sentences(text_model.POSITIVE, SET_SIZE, 10 * seed + 1)
    impostors = set(torch.randperm(SET_SIZE, generator=gen)[:N_IMPOSTORS].tolist())
    others = text_model.sentences(text_model.NEUTRAL, N_IMPOSTORS, 10 * seed + 2)
    for k, sentence in zip(sorted(impostors), others):
        concept[k] = sentence
    randoms = [text_model.sentences(text_model.RANDOM, SET_SIZE, 10 * seed + 3 + j) for j in range(N_RANDOM)]
    planted = set(torch.randperm(SET_SIZE, generator=gen)[:N_PLANTED].tolist())
    positives = text_model.sentences(text_model.POSITIVE, N_PLANTED, 10 * seed + 5)
    for k, sentence in zip(sorted(planted), positives):
        randoms[PLANTED_SET][k] = sentence
    inputs = text_model.sentences(text_model.POSITIVE, 20, 10 * seed + 6)
    return Planted(concept, randoms, inputs, impostors, planted, ["pooled", "embed"], model,  # type: ignore[arg-type]
                   tokenizer=text_model.tokenize)


def measure(data: Planted) -> dict[str, tuple[evidence.Misplaced, list[evidence.Misplaced]]]:
    """The engine's held-out placements per layer (what it flags from)."""
    captured: dict[str, Any] = {}
    original = evidence.placements

    def capture(*args: Any, **kwargs: Any) -> Any:
        captured.update(original(*args, **kwargs))
        return captured

    evidence.placements = capture  # type: ignore[assignment]
    try:
        engine = TCAV(data.model, tokenizer=data.tokenizer, pooling="mean" if data.tokenizer else "flatten")
        engine.test(data.concept, target=1, inputs=data.inputs, layers=data.layers,
                    random_sets=data.randoms)  # type: ignore[arg-type]
    finally:
        evidence.placements = original  # type: ignore[assignment]
    return captured


def tally(data: Planted, placed: tuple[evidence.Misplaced, list[evidence.Misplaced]], threshold: float | None,
          min_held_out: int | None, into: Tally, keep_scores: bool = False, kind: str = "both") -> None:
    """Count flags; ``threshold``/``min_held_out`` None: the defaults; ``kind``: which sets the sweep moves."""
    concept_side, per_random = placed
    sweep = (threshold, min_held_out) if kind in ("concept", "both") else (None, None)
    flags = set(evidence.flagged(concept_side, "concept", threshold=sweep[0], min_held_out=sweep[1]))
    into.impostors += len(data.impostors)
    into.flagged_impostors += len(flags & data.impostors)
    into.clean_concept += SET_SIZE - len(data.impostors)
    into.false_concept += len(flags - data.impostors)
    if keep_scores:
        for k, s in enumerate(concept_side.scores):
            into.scores["impostor" if k in data.impostors else "clean concept"].append(float(s))
    for j, placement in enumerate(per_random):
        planted = data.planted if j == PLANTED_SET else set()
        sweep = (threshold, min_held_out) if kind in ("random", "both") else (None, None)
        flags = set(evidence.flagged(placement, "random", threshold=sweep[0], min_held_out=sweep[1]))
        into.planted += len(planted)
        into.flagged_planted += len(flags & planted)
        into.clean_random += SET_SIZE - len(planted)
        into.false_random += len(flags - planted)
        if keep_scores:
            for k, s in enumerate(placement.scores):
                into.scores["planted" if k in planted else "clean random"].append(float(s))


def histogram(values: list[float]) -> str:
    v = np.array([x for x in values if not np.isnan(x)])
    edges = [0.0, 0.25, 0.5, 0.75, 1.0001]
    counts = np.histogram(v, bins=edges)[0]
    nan = sum(np.isnan(x) for x in values)
    return (" ".join(f"[{a:.2f},{min(b, 1):.2f}{')' if b < 1 else ']'}:{c}" for a, b, c in
                     zip(edges, edges[1:], counts)) + (f" none held out:{nan}" if nan else ""))


def run(modality: str, seeds: list[int], make: Callable[[int, torch.nn.Module], Planted],
        model: torch.nn.Module) -> None:
    results = []
    for seed in seeds:
        data = make(seed, model)
        start = time.perf_counter()
        placed = measure(data)
        results.append((data, placed, time.perf_counter() - start))
    layers = results[0][0].layers
    print(f"== {modality}: seeds {seeds}, {len(layers)} layers ({', '.join(layers)})")
    for layer in layers:
        scores = Tally()
        for data, placed, _ in results:
            tally(data, placed[layer], None, None, scores, keep_scores=True)
        print(f"-- {layer}: outlier scores (share of held-out CAVs placing the example on the other side)")
        for kind, values in scores.scores.items():
            print(f"   {kind:13s} {histogram(values)}")
        for kind in ("concept", "random"):
            for threshold in (0.5, 0.6, 0.75, 0.9, 1.0):
                for min_held in (1, 2, 3):
                    t = Tally()
                    for data, placed, _ in results:
                        tally(data, placed[layer], threshold, min_held, t, kind=kind)
                    default = (evidence.CONCEPT_THRESHOLD if kind == "concept" else evidence.RANDOM_THRESHOLD,
                               evidence.MIN_HELD_OUT[kind])
                    mark = "  <- default" if (threshold, min_held) == default else ""
                    print(f"   {kind} >= {threshold:.2f}, held out >= {min_held}: {t.line()}{mark}")
        per_seed = []
        for data, placed, _ in results:
            t = Tally()
            tally(data, placed[layer], None, None, t)
            per_seed.append(f"{t.flagged_impostors}/{t.impostors} {t.flagged_planted}/{t.planted} "
                            f"fp {t.false_concept}+{t.false_random}")
        print(f"   per seed at the defaults (impostors, planted, false flags concept+random): {'; '.join(per_seed)}")
    print(f"   test time per seed: {np.mean([r[2] for r in results]):.2f} s")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--modality", choices=("image", "text", "both"), default="both")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.modality in ("image", "both"):
        run("image", args.seeds, image_data, synthetic.texture_model())
    if args.modality in ("text", "both"):
        run("text", args.seeds, text_data, text_model.WordBagNet())


if __name__ == "__main__":
    main()
