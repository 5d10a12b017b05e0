"""Result objects of a TCAV significance test, and their plain-text table.

Results are plain data (numbers, strings, lists) so that they can cross
process boundaries under pytest-xdist, be written to JSON, and be compared bit
for bit between runs.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from pytest_tcav.reports.text import format_p, render_table


@dataclass(frozen=True)
class LayerResult:
    """Everything measured for one concept at one layer."""

    layer: str
    score: float  # TCAV score: mean over random sets of sign_count
    magnitude: float  # mean over random sets of Captum's magnitude
    statistic: float  # mean cosine between target gradients and the unit CAV
    null_mean: float  # mean of the random sets' statistics
    null_sd: float
    t_statistic: float
    p_value: float
    p_value_rank: float
    p_corrected: float
    cav_accuracy: float  # mean held-out accuracy of the concept's CAVs
    significant: bool
    concept_scores: list[float] = field(default_factory=list)  # sign_count per random set
    concept_statistics: list[float] = field(default_factory=list)  # cosine per random set
    concept_magnitudes: list[float] = field(default_factory=list)
    cav_accuracies: list[float] = field(default_factory=list)
    null_statistics: list[float] = field(default_factory=list)  # one per random set
    null_scores: list[float] = field(default_factory=list)  # sign_count of each random set vs the others


@dataclass(frozen=True)
class TCAVResult:
    """The outcome of testing one concept for one target on one or more layers."""

    concept: str
    target: str
    direction: str
    alpha: float
    correction: str
    null_test: str
    method: str
    n_random: int
    n_concept_examples: int
    n_inputs: int
    seed: int
    layers: list[LayerResult]
    model_fingerprint: str = ""
    concept_fingerprint: str = ""
    #: Relative TCAV: the concepts the concept was tested against (their union is the negative set);
    #: empty for the absolute test against random sets.
    against: list[str] = field(default_factory=list)

    def layer(self, name: str) -> LayerResult:
        for result in self.layers:
            if result.layer == name:
                return result
        raise KeyError(f"no result for layer {name!r}; layers: {[r.layer for r in self.layers]}")

    @property
    def significant_layers(self) -> list[str]:
        return [r.layer for r in self.layers if r.significant]

    @property
    def all_significant(self) -> bool:
        return all(r.significant for r in self.layers)

    @property
    def any_significant(self) -> bool:
        return any(r.significant for r in self.layers)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TCAVResult:
        layers = [LayerResult(**layer) for layer in data["layers"]]
        return cls(**{**data, "layers": layers})

    def table(self) -> str:
        return format_table(self)


def _fmt(value: float, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    text = f"{value:.{digits}f}"
    return text.lstrip("-") if float(text) == 0 else text  # no "-0.0000" for a tiny negative


def format_table(result: TCAVResult) -> str:
    """A fixed-width per-layer table for failure messages and the command line."""
    header = ("layer", "score", "stat", "random mean±sd", "t", "p", "p corr", "CAV acc", "verdict")
    rows = [header]
    for r in result.layers:
        rows.append(
            (
                r.layer,
                _fmt(r.score, 2),
                _fmt(r.statistic, 4),
                f"{_fmt(r.null_mean, 4)}±{_fmt(r.null_sd, 4)}",
                _fmt(r.t_statistic, 2),
                format_p(r.p_value, 4),
                format_p(r.p_corrected, 4),
                _fmt(r.cav_accuracy, 2),
                "significant" if r.significant else "not significant",
            )
        )
    lines = render_table(rows)
    versus = (f"against {' + '.join(map(repr, result.against))} ({result.n_random} seeded CAVs vs "
              f"{result.n_random} relabelings)" if result.against else f"{result.n_random} random sets")
    caption = (
        f"concept {result.concept!r}, target {result.target}, direction {result.direction}, "
        f"alpha {result.alpha} ({result.correction} over {len(result.layers)} layer(s)), "
        f"{versus}, {result.n_concept_examples} concept examples, "
        f"{result.n_inputs} inputs, method {result.method}, seed {result.seed}"
    )
    return caption + "\n" + "\n".join(lines)
