"""The false-positive rate of one random library, measured: counts, exact intervals, what they imply.

A concept check compares a concept with a fixed library of random sets, so
every check of a suite shares that library's luck: its null is estimated from
``N`` sets, and one library's checks may run above alpha, another's below.
Calibration measures it: ``K`` pseudo-concepts (random images the tests do not
use, of the concept size) are tested exactly as concepts are, and the share
found significant is the library's false-positive rate.  This module is the
arithmetic on those verdicts, and the file they are kept in (``pytest-tcav
calibrate`` and the checks both read and write it); drawing and running the
pseudo-concepts is :mod:`pytest_tcav.checks.pseudo_concepts`, and what a check
does with the result is :func:`pytest_tcav.checks.significance.calibration_gate`.

Two different things make the numbers better, and the messages keep them
apart: more pseudo-concepts narrow the *interval* of the measurement (the rate
itself stays what it is); more random sets change the *rate* (a null estimated
from more sets is less at the mercy of its sets' luck).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pytest_tcav.atomic_files import atomic_write_text

#: Confidence level of the reported intervals.
LEVEL = 0.95
#: Where calibrations live under the disk cache folder (``tcav_cache_dir``).
FOLDER = "calibration"
#: The format of a stored calibration; another value is read as missing.
FORMAT = 1
#: Values of ``tcav_require_calibration``.
REQUIRE_MODES = ("off", "warn", "fail")


def clopper_pearson(count: int, total: int, level: float = LEVEL) -> tuple[float, float]:
    """The exact (Clopper-Pearson) interval of a binomial proportion: never narrower than its level claims."""
    from scipy import stats

    if total <= 0:
        return 0.0, 1.0
    tail = (1.0 - level) / 2.0
    low = 0.0 if count == 0 else float(stats.beta.ppf(tail, count, total - count + 1))
    high = 1.0 if count == total else float(stats.beta.ppf(1.0 - tail, count + 1, total - count))
    return low, high


def pseudo_concepts_needed(rate: float, bound: float, level: float = LEVEL, limit: int = 100_000) -> int | None:
    """The least ``K`` whose interval's upper end falls under ``bound`` if the rate stays at ``rate``.

    None when no ``K`` up to ``limit`` does (a rate at or above the bound never
    gets there: more pseudo-concepts only narrow the interval around it).
    """
    if not 0.0 <= rate < bound:
        return None

    def under(k: int) -> bool:
        return clopper_pearson(round(rate * k), k, level)[1] < bound

    if not under(limit):
        return None
    low, high = 1, limit
    while low < high:  # the upper end shrinks with K (up to rounding); the first K that gets under
        middle = (low + high) // 2
        if under(middle):
            high = middle
        else:
            low = middle + 1
    return low


@dataclass(frozen=True)
class LayerRate:
    """One layer's measurement: ``significant`` of ``total`` pseudo-concepts at ``alpha``, uncorrected."""

    layer: str
    significant: int
    total: int
    alpha: float
    low: float
    high: float

    @property
    def rate(self) -> float:
        return self.significant / self.total if self.total else 0.0

    @property
    def reading(self) -> str:
        """``above alpha`` (the whole interval is), ``below alpha``, or ``consistent with alpha``."""
        if self.low > self.alpha:
            return "above alpha"
        if self.high < self.alpha:
            return "below alpha"
        return "consistent with alpha"


def layer_rates(p_values: Mapping[str, Sequence[float]], alpha: float, level: float = LEVEL) -> list[LayerRate]:
    """Per layer, the pseudo-concepts significant at ``alpha`` (raw p-values: one layer's own rate)."""
    out = []
    for layer, values in p_values.items():
        count = sum(1 for p in values if p < alpha)
        low, high = clopper_pearson(count, len(values), level)
        out.append(LayerRate(layer, count, len(values), alpha, low, high))
    return out


def percent(value: float) -> str:
    return f"{100 * value:.1f}%"


def typical_shift(n_random: int, k: int) -> float:
    """Twice the standard deviation of the shift on a library typical of its random data, in null SDs.

    With exchangeable sets the library's mean is off the random data's by about ``1 / sqrt(N)`` null
    SDs and the K pseudo-concepts' mean by ``1 / sqrt(K)`` (docs/statistics.md, "Measuring your
    library's false-positive rate"), so a shift within ``2 * sqrt(1/N + 1/K)`` shows nothing atypical.
    """
    return 2.0 * math.sqrt(1.0 / max(1, n_random) + 1.0 / max(1, k))


def too_wide(spread: float, n_random: int, k: int, level: float = 0.05) -> bool:
    """Whether the pseudo-concepts vary significantly more than the random null (one-sided F-test at ``level``)."""
    if k < 2 or n_random < 2 or not math.isfinite(spread):
        return math.isinf(spread)
    from scipy import stats

    return spread * spread > float(stats.f.ppf(1.0 - level, k - 1, n_random - 1))


def luck_explains(shift: float, spread: float, n_random: int, k: int) -> bool:
    """Whether a library's shift and spread are what the luck of drawing ``n_random`` sets gives.

    A shift within :func:`typical_shift` and a spread not significantly wide (:func:`too_wide`) show
    nothing systematic: more random sets shrink that luck.  Beyond them the library (or the random data
    it was drawn from) differs from the random data the pseudo-concepts come from, and more sets of the
    same kind do not remove it.
    """
    return abs(shift) <= typical_shift(n_random, k) and not too_wide(spread, n_random, k)


def why_off(layer: str, shift: float, spread: float, n_random: int, k: int) -> str:
    """The reason a layer's rate is what it is, in words: where fresh random data sit against the random sets."""
    where = "above" if shift > 0 else "below" if shift < 0 else "at"
    bound = typical_shift(n_random, k)
    text = (f"on {layer}, fresh random data score on average {shift:+.2f} null SDs {where} your random sets "
            f"(within ±{bound:.2f} is typical of {n_random} random sets measured with {k} pseudo-concepts)")
    if abs(shift) > bound:
        text += ": your random sets are not typical of your random data"
    if too_wide(spread, n_random, k):
        text += (f"; fresh random data also vary {spread:.2f} times as much as the random sets do against each "
                 "other (the random null is too narrow)")
    return text


def implication(rate: LayerRate, n_random: int, level: float = LEVEL, *, shift: float | None = None,
                spread: float | None = None, pseudo_cost: int | None = None) -> str:
    """What a layer's measurement means for the checks on it, in one or two sentences.

    ``shift`` and ``spread`` (from the measurement, when known) say why a rate is
    off, and whether more random sets are what would lower it (:func:`luck_explains`);
    ``tcav_null = pseudo`` is the way out that works whatever the reason.
    """
    head = (f"checks on {rate.layer} run at about {percent(rate.rate)} ({round(100 * level)}% CI "
            f"{percent(rate.low)}-{percent(rate.high)}) against alpha {rate.alpha:g}")
    if rate.reading == "above alpha":
        cost = f"{pseudo_cost} pseudo-concept passes" if pseudo_cost else "K pseudo-concept passes"
        pseudo = (f"set tcav_null = pseudo: each check is then judged against pseudo-concepts tested on this very "
                  f"library, calibrated for it by construction ({cost} once per target and settings, stored "
                  f"and reused by every later check and run)")
        if shift is None or spread is None:
            return (f"{head}: this library of {n_random} random sets makes the layer's checks too liberal. "
                    f"More pseudo-concepts would only narrow the interval. To fix it, {pseudo}; or use more "
                    f"random sets (a null estimated from more sets depends less on their luck) and calibrate again.")
        k = pseudo_cost or rate.total
        reason = why_off(rate.layer, shift, spread, n_random, k)
        if luck_explains(shift, spread, n_random, k):
            return (f"{head}: {reason}, within the luck of {n_random} random sets. To fix it, {pseudo}; or use "
                    f"more random sets and calibrate again.")
        return (f"{head}: {reason}. More random sets of the same kind do not remove that. To fix it, {pseudo}.")
    bound = 2 * rate.alpha
    if rate.high < bound:
        return f"{head}; the interval already lies under {percent(bound)} (twice alpha)."
    needed = pseudo_concepts_needed(rate.rate, bound, level)
    more = (f"about {needed} pseudo-concepts (now {rate.total}) would bring the interval's upper end under "
            f"{percent(bound)} (twice alpha) if the rate stays at {percent(rate.rate)}"
            if needed is not None else
            f"at this rate no number of pseudo-concepts brings the interval under {percent(bound)}")
    return (f"{head}; {more}. More pseudo-concepts narrow the interval; more random sets (now {n_random}) "
            f"change the rate itself.")


# -- the stored calibration ---------------------------------------------------------------


@dataclass(frozen=True)
class Calibration:
    """A measured library: what it was measured for (identity), on what (fingerprints), and the rates."""

    target: str
    direction: str
    alpha: float
    #: What else the rate depends on: method, n_steps, seed, the number of random sets, the concept size.
    settings: dict[str, Any]
    #: Content fingerprints: the random sets in use (in order), the model, the inputs.
    library: str
    model: str
    inputs: str
    pseudo_concepts: int
    layers: list[LayerRate] = field(default_factory=list)
    #: Pseudo-concepts significant on any layer after the correction over the calibrated layers.
    family_significant: int = 0
    #: Per layer, the pseudo-concepts' mean statistic minus the random null's mean, in random-null SDs:
    #: about 0 on a library typical of the random data (empty in calibrations stored before it was kept).
    shifts: dict[str, float] = field(default_factory=dict)
    #: Per layer, the pseudo-concepts' SD over the random null's (about 1 when the null's spread is right).
    spreads: dict[str, float] = field(default_factory=dict)

    def layer(self, name: str) -> LayerRate | None:
        return next((r for r in self.layers if r.layer == name), None)

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, **asdict(self)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Calibration:
        values = {k: v for k, v in data.items() if k != "format"}
        values["layers"] = [LayerRate(**r) for r in data["layers"]]
        return cls(**values)


def identity_key(target: str, direction: str, alpha: float, settings: Mapping[str, Any]) -> str:
    """The file name of a calibration: what it answers for, without the fingerprints it was measured on.

    Fingerprints stay out of the name so that a changed model or random set
    finds the old file and is reported as *stale*, not as missing.
    """
    text = json.dumps({"target": target, "direction": direction, "alpha": float(alpha),
                       "settings": dict(settings)}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def calibration_path(cache_dir: Path, target: str, direction: str, alpha: float,
                     settings: Mapping[str, Any]) -> Path:
    return Path(cache_dir) / FOLDER / f"{identity_key(target, direction, alpha, settings)}.json"


def save(cache_dir: Path, calibration: Calibration) -> Path:
    """Write a calibration (atomically: a concurrent check reads the old file or the new one)."""
    path = calibration_path(cache_dir, calibration.target, calibration.direction, calibration.alpha,
                            calibration.settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(path, json.dumps(calibration.to_json(), indent=1, sort_keys=True) + "\n")


def load(cache_dir: Path, target: str, direction: str, alpha: float,
         settings: Mapping[str, Any]) -> Calibration | None:
    """The stored calibration for this identity; None when there is none or it cannot be read."""
    path = calibration_path(cache_dir, target, direction, alpha, settings)
    try:
        data = json.loads(path.read_text())
        if data.get("format") != FORMAT:
            return None
        return Calibration.from_json(data)
    except (OSError, ValueError, KeyError, TypeError):
        return None


@dataclass(frozen=True)
class Status:
    """What a check's calibration says: ``ok``, ``missing``, ``stale`` or ``above`` alpha, and why."""

    state: str
    message: str
    rates: list[LayerRate] = field(default_factory=list)


def status(calibration: Calibration | None, *, library: str, model: str, inputs: str,
           layers: Sequence[str], target: str, direction: str) -> Status:
    """Whether a stored calibration covers a check on ``layers`` with these fingerprints."""
    what = f"target {target}, direction {direction}"
    advice = "run pytest-tcav calibrate (docs/statistics.md, 'Measuring your library')"
    if calibration is None:
        return Status("missing", f"no calibration of the random library for {what}: {advice}")
    changed = [name for name, old, new in (("the random sets", calibration.library, library),
                                            ("the model", calibration.model, model),
                                            ("the inputs", calibration.inputs, inputs)) if old != new]
    if changed:
        return Status("stale", f"the calibration for {what} is stale ({' and '.join(changed)} changed "
                               f"since it was measured): {advice}")
    rates = [calibration.layer(name) for name in layers]
    missing = [name for name, r in zip(layers, rates) if r is None]
    if missing:
        return Status("missing", f"the calibration for {what} does not cover layer(s) {', '.join(missing)}: "
                                 f"{advice} with those layers")
    found = [r for r in rates if r is not None]
    above = [r for r in found if r.reading == "above alpha"]
    if above:
        detail = ", ".join(f"{r.layer} {percent(r.rate)} (CI {percent(r.low)}-{percent(r.high)})" for r in above)
        return Status("above", f"the random library's measured false-positive rate lies above alpha "
                               f"{calibration.alpha:g} on {detail}; use more random sets and calibrate again",
                      found)
    return Status("ok", "", found)
