"""Result objects of a TCAV significance test, and their plain-text table.

Results are plain data (numbers, strings, lists) so that they can cross
process boundaries under pytest-xdist, be written to JSON, and be compared bit
for bit between runs.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from pytest_tcav.tables import format_p, render_table


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
    # Added with the equivalence test (issue 12); derived when read from an older dict.
    #: (statistic - null_mean) / null_sd: the effect in units of the random sets' spread (the margin's unit)
    effect: float = math.nan
    #: the smallest effect the significance test finds with 80% power at this alpha and correction
    detectable_effect: float = math.nan
    #: each random set's mean held-out CAV accuracy against the others (what chance is for the CAV gate)
    null_cav_accuracies: list[float] = field(default_factory=list)
    #: one-sided p-value of "the concept's CAVs do no better than random sets' CAVs" (the CAV gate)
    cav_p_value: float = math.nan
    #: "significant", "not significant" or "inconclusive" (the layer cannot tell the concept from random images)
    verdict: str = ""
    #: p-value of "the effect is at least the margin" (None without a margin), raw and corrected over the layers
    equivalence_p: float | None = None
    equivalence_p_corrected: float | None = None
    # Evidence per example (docs/reports.md); empty in results written before them.
    #: per input (in the order of ``ExampleIds.inputs``): its share of the concept's CAVs (one per random set)
    #: along which its target gradient points (positive product); their mean is ``score``
    input_shares: list[float] = field(default_factory=list)
    #: per input: its mean cosine with the concept's unit CAVs; their mean is ``statistic``
    input_cosines: list[float] = field(default_factory=list)
    #: per concept example: the share of its held-out concept CAVs that place it among the random examples
    #: (NaN: held out by none); see docs/statistics.md, "Suspect examples"
    concept_outlier_scores: list[float | None] = field(default_factory=list)
    #: the examples flagged as suspect, most suspect first: ``{"kind": "concept" | "random", "set": set name,
    #: "set_index": 0 for the concept, r for random set r (from 1), "index": in its set, "id", "score"}``
    suspects: list[dict[str, Any]] = field(default_factory=list)
    #: the concept's mean unit CAV, or its seeded sketch when the layer is wider than SKETCH_DIM
    #: (:func:`concept_cosine` compares two of them)
    cav_direction: list[float] = field(default_factory=list)
    #: the layer's width (the CAV's features): ``cav_direction`` is a sketch when it exceeds SKETCH_DIM
    cav_features: int = 0

    def __post_init__(self) -> None:
        # Results written before these fields existed (baselines, stored reports) still load;
        # what they lack is derived from what they have.  (Imported here: this module is plain
        # data that the plugin and `pytest-tcav diff` read without numpy or scipy.)
        if math.isnan(self.effect) or (math.isnan(self.cav_p_value) and self.cav_accuracies):
            from pytest_tcav.engine.equivalence import cav_gate_p, effect_size

            if math.isnan(self.effect):
                object.__setattr__(self, "effect", effect_size(self.statistic, self.null_mean, self.null_sd))
            if math.isnan(self.cav_p_value) and self.cav_accuracies:
                object.__setattr__(self, "cav_p_value", cav_gate_p(self.cav_accuracies, self.null_cav_accuracies))
        if not self.verdict:
            object.__setattr__(self, "verdict", "significant" if self.significant else "not significant")

    @property
    def inconclusive(self) -> bool:
        return self.verdict == "inconclusive"


@dataclass(frozen=True)
class ExampleIds:
    """What the examples of a test are called, set by set, in the engine's order.

    An id is a file path relative to its library or folder (``striped/a.png``),
    ``FILE:LINE`` for a line of a ``.txt`` file, ``NAME#i`` for example ``i``
    of a random pool without names, and ``#k`` (the index in its set) for
    examples given as tensors.  ``*_texts`` hold the sentences of text sets
    (empty otherwise).
    """

    inputs: list[str] = field(default_factory=list)
    concept: list[str] = field(default_factory=list)
    random: list[list[str]] = field(default_factory=list)
    #: the random sets' names (``random_3``, ``random_pool[3]``), in the order of ``random``
    random_sets: list[str] = field(default_factory=list)
    input_texts: list[str] = field(default_factory=list)
    concept_texts: list[str] = field(default_factory=list)
    random_texts: list[list[str]] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: Any) -> ExampleIds | None:
        if isinstance(data, ExampleIds) or data is None:
            return data
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


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
    #: the equivalence margin in null SDs (None: no equivalence test)
    margin: float | None = None
    #: layers whose mean CAV accuracy is below this are inconclusive (None: only the chance test)
    min_cav_accuracy: float | None = None
    #: what the examples are called (None: not recorded, as in relative tests and older results)
    examples: ExampleIds | None = None
    #: What the concept was judged against: "random" (the random sets' spread; for a relative test, its
    #: relabelings) or "pseudo" (pseudo-concepts on the same library: engine/conditional_null.py).
    null: str = "random"
    #: For ``null="pseudo"``: which measurement (K, fingerprint, when), in words.
    null_source: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.examples, dict):
            object.__setattr__(self, "examples", ExampleIds.from_dict(self.examples))
        # An older dict has no detectable effect: it follows from the settings and per-set numbers.
        if not any(math.isnan(r.detectable_effect) and r.concept_statistics for r in self.layers):
            return
        from pytest_tcav.engine.equivalence import detectable_effect, spread_ratio

        filled = []
        for r in self.layers:
            if math.isnan(r.detectable_effect) and r.concept_statistics:
                ratio = spread_ratio(r.concept_statistics, r.null_sd)
                value = detectable_effect(len(r.concept_statistics), ratio, self.alpha, len(self.layers),
                                          self.correction, self.direction)
                r = replace(r, detectable_effect=value)
            filled.append(r)
        object.__setattr__(self, "layers", filled)

    def equivalent(self, layer: LayerResult) -> bool:
        """Whether the data show the layer's effect below the margin (False without a margin)."""
        return layer.equivalence_p_corrected is not None and layer.equivalence_p_corrected < self.alpha

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


def null_kind(result: TCAVResult) -> str:
    """``random``, ``pseudo``, or ``relabelings`` (a relative test's null)."""
    return "relabelings" if result.against else result.null


def null_label(result: TCAVResult) -> str:
    """What the null column is called: the random sets, the pseudo-concepts, or a relative test's relabelings."""
    return {"relabelings": "relabeled"}.get(null_kind(result), null_kind(result))


def describe_null(result: TCAVResult) -> str:
    """What the verdict's null was, for reports: the random sets, the pseudo-concepts (which measurement),
    or a relative test's relabelings of the concepts it compared."""
    if result.against:
        names = " + ".join(repr(name) for name in result.against)
        return f"{result.n_random} relabelings of the examples of {result.concept!r} and {names}"
    if result.null == "pseudo":
        return result.null_source or "pseudo-concepts"
    return f"{result.n_random} random sets"


def format_table(result: TCAVResult) -> str:
    """A fixed-width per-layer table for failure messages and the command line.

    ``effect`` and ``detect.`` are in units of the null's spread (the random
    sets', the pseudo-concepts' or, for a relative test, the relabelings'): the
    concept's distance from them, and the smallest distance this configuration
    finds with 80% power.  With a margin, ``equiv p`` is the corrected p-value of
    "the effect is at least the margin".
    """
    header = ["layer", "score", "stat", f"{null_label(result)} mean±sd", "t", "p", "p corr", "CAV acc", "effect",
              "detect."]
    if result.margin is not None:
        header.append("equiv p")
    header.append("verdict")
    rows = [tuple(header)]
    for r in result.layers:
        row = [
            r.layer,
            _fmt(r.score, 2),
            _fmt(r.statistic, 4),
            f"{_fmt(r.null_mean, 4)}±{_fmt(r.null_sd, 4)}",
            _fmt(r.t_statistic, 2),
            format_p(r.p_value, 4),
            format_p(r.p_corrected, 4),
            _fmt(r.cav_accuracy, 2),
            _fmt(r.effect, 2),
            _fmt(r.detectable_effect, 2),
        ]
        if result.margin is not None:
            row.append(format_p(r.equivalence_p_corrected, 4) if r.equivalence_p_corrected is not None else "n/a")
        row.append(r.verdict)
        rows.append(tuple(row))
    lines = render_table(rows)
    versus = (f"against {' + '.join(map(repr, result.against))} ({result.n_random} seeded CAVs vs "
              f"{result.n_random} relabelings)" if result.against else f"{result.n_random} random sets")
    if result.null == "pseudo" and not result.against:
        versus += f", null: {result.null_source or 'pseudo-concepts'}"
    margin = f", margin {result.margin:g}" if result.margin is not None else ""
    caption = (
        f"concept {result.concept!r}, target {result.target}, direction {result.direction}, "
        f"alpha {result.alpha} ({result.correction} over {len(result.layers)} layer(s)){margin}, "
        f"{versus}, {result.n_concept_examples} concept examples, "
        f"{result.n_inputs} inputs, method {result.method}, seed {result.seed}"
    )
    return caption + "\n" + "\n".join(lines)


#: Widest CAV direction kept as it is; a wider layer's is sketched to this many numbers (:func:`cav_direction`).
SKETCH_DIM = 2048


def concept_cosine(a: LayerResult, b: LayerResult) -> float | None:
    """The cosine between two concepts' mean CAVs at one layer (None when they cannot be compared).

    Both results must come from the same layer width (and for a meaningful
    answer, the same layer and model: the caller knows which checks those are).
    At most :data:`SKETCH_DIM` features the directions are the mean unit CAVs
    themselves and the cosine is exact up to rounding; a wider layer's
    directions are sketches (the features hashed, with seeded signs, into
    :data:`SKETCH_DIM` buckets), whose cosine estimates the true one with a
    standard deviation of 0.022 at a true cosine of 0, 0.014 at 0.6, 0.004 at
    0.9 (measured on 50,000 features; docs/reports.md).
    """
    if not a.cav_direction or not b.cav_direction or a.cav_features != b.cav_features \
            or len(a.cav_direction) != len(b.cav_direction):
        return None
    dot = math.fsum(x * y for x, y in zip(a.cav_direction, b.cav_direction))
    norm = math.sqrt(math.fsum(x * x for x in a.cav_direction)) * math.sqrt(math.fsum(y * y for y in b.cav_direction))
    if not norm > 0:
        return None
    return max(-1.0, min(1.0, dot / norm))
