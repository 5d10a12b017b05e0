"""Concept stability: "did the retrained model change what it relies on?"

:func:`check_stable` (behind :func:`~pytest_tcav.api.assert_concept_stable`)
measures a concept check on today's model and compares it with the baseline
file kept for it (:mod:`pytest_tcav.checks.baseline_file`); it fails when a
layer moved beyond the tolerance (the rule is in :func:`compare`, and
documented in docs/baselines.md).  Baselines are written only when asked
(``--tcav-update-baselines``), never created silently: a CI run with a
missing baseline fails.

This module imports neither torch nor scipy at import time (scipy only when
two baselines are compared): the session and the assertions import it.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_tcav.checks import raised, records
from pytest_tcav.checks.baseline_file import Baseline, atomic_write, load_baseline
from pytest_tcav.checks.baseline_names import BASELINE_DIR, SUFFIX, UPDATE_FLAG, baseline_path, obtained_path
from pytest_tcav.engine.spec import DEFAULT_TOLERANCE, settled
from pytest_tcav.errors import (
    BaselineError,
    ConceptStabilityFailure,
    ConfigurationError,
    shown_path,
)
from pytest_tcav.tables import format_p, render_table

if TYPE_CHECKING:
    from torch import nn

    from pytest_tcav.engine.results import TCAVResult
    from pytest_tcav.engine.spec import CheckSpec
    from pytest_tcav.session.session import TCAVSession

#: Relative size below which a difference of the statistic is rounding or floating-point noise.
RESOLUTION = 1e-5
#: Settings that must match for two measurements to be comparable at all.
COMPARABLE_SETTINGS = ("method", "direction", "seed", "random_sets")


# -- the comparison ------------------------------------------------------------------------


@dataclass(frozen=True)
class LayerComparison:
    """One layer, before (the baseline) and after (this run)."""

    layer: str
    score_before: float
    score_after: float
    statistic_before: float
    statistic_after: float
    significant_before: bool
    significant_after: bool
    p_value: float  # Welch's two-sided t-test of the per-random-set statistics, before vs after
    p_corrected: float  # corrected over the layers of the check
    score_moved: bool
    statistic_moved: bool

    @property
    def moved(self) -> bool:
        return self.score_moved or self.statistic_moved

    @property
    def score_change(self) -> float:
        return self.score_after - self.score_before

    def to_dict(self) -> dict[str, Any]:
        return {
            "layer": self.layer, "score_before": self.score_before, "score_after": self.score_after,
            "statistic_before": self.statistic_before, "statistic_after": self.statistic_after,
            "significant_before": self.significant_before, "significant_after": self.significant_after,
            "p_value": self.p_value, "p_corrected": self.p_corrected, "score_moved": self.score_moved,
            "statistic_moved": self.statistic_moved, "moved": self.moved,
        }


@dataclass(frozen=True)
class StabilityResult:
    """What :func:`assert_concept_stable` measured and how it compares with the baseline."""

    name: str
    path: Path
    result: TCAVResult
    before: Baseline | None
    layers: list[LayerComparison] = field(default_factory=list)
    tolerance: float = DEFAULT_TOLERANCE
    statistic_tolerance: float = 0.0
    alpha: float = 0.05
    correction: str = "holm"
    #: ``checked`` (compared with the file), ``created`` or ``updated`` (written by the update flag),
    #: or ``unchanged`` (the update flag found nothing to write).
    action: str = "checked"

    @property
    def moved_layers(self) -> list[str]:
        return [c.layer for c in self.layers if c.moved]

    @property
    def passed(self) -> bool:
        return not self.moved_layers

    @property
    def model_changed(self) -> bool:
        return self.before is not None and self.before.model_fingerprint != self.result.model_fingerprint

    def table(self) -> str:
        return format_comparison(self)


def welch_p(before: Sequence[float], after: Sequence[float]) -> tuple[float, bool]:
    """Two-sided Welch t-test p-value of the means, and whether the means differ beyond noise.

    Values are stored rounded (6 significant digits) and recomputed on other
    machines (about 1e-7 relative noise): a spread or a difference below
    :data:`RESOLUTION` times the values' scale is treated as zero, so an
    unchanged model never fails on rounding.  The spreads are floored at that
    resolution, so with no spread on either side a difference beyond the noise
    gives p = 0 and none gives p = 1, never NaN.  Both sides hold one statistic
    per random set, at least three (a side of one value has no spread, and is
    taken as unchanged).
    """
    from statistics import fmean, stdev

    from scipy import stats as scipy_stats

    a = [float(v) for v in before]
    b = [float(v) for v in after]
    if len(a) < 2 or len(b) < 2:
        return 1.0, False
    mean_a, mean_b = fmean(a), fmean(b)
    floor = RESOLUTION * max([abs(v) for v in a + b] + [1e-12])
    if abs(mean_b - mean_a) <= floor:
        return 1.0, False
    p = scipy_stats.ttest_ind_from_stats(mean_b, max(stdev(b), floor), len(b), mean_a, max(stdev(a), floor),
                                         len(a), equal_var=False).pvalue
    return float(min(1.0, p)), True


def layer_moved(significant: bool, score_change: float, statistic_change: float, differs: bool,
                p_corrected: float, *, alpha: float, tolerance: float,
                statistic_tolerance: float) -> tuple[bool, bool]:
    """Whether a layer's score moved and whether its statistic moved: the rule :func:`compare` states.

    One function, because ``pytest-tcav diff`` applies the same rule to two reports
    (:mod:`pytest_tcav.reports.diff`), and a diff and a baseline check must never disagree.
    """
    score_moved = significant and abs(score_change) > tolerance + 1e-9
    statistic_moved = differs and p_corrected < alpha and abs(statistic_change) > statistic_tolerance
    return score_moved, statistic_moved


def compare(before: Baseline, result: TCAVResult, *, tolerance: float, statistic_tolerance: float = 0.0,
            alpha: float = 0.05, correction: str = "holm") -> list[LayerComparison]:
    """Compare a result with its baseline, layer by layer.

    A layer has moved when

    * its TCAV score changed by more than ``tolerance`` (absolute) on a layer
      where the concept is significant before or after (where it is neither,
      the score is that of a direction the model does not use, and it swings
      between 0 and 1 with the random sets: a change there is noise), or
    * the statistic's distribution over the random sets shifted: Welch's
      two-sided t-test of the per-random-set statistics before vs after has a
      p-value below ``alpha`` after the ``correction`` over the layers of the
      check, and the mean statistic changed by more than ``statistic_tolerance``.
    """
    from pytest_tcav.engine.statistics import adjust_p_values

    rows = []
    for layer in result.layers:
        old = before.layer(layer.layer)
        if old is None:  # pragma: no cover - check_stable refuses missing layers first
            raise BaselineError(f"baseline {before.name!r} has no layer {layer.layer!r}")
        p, differs = welch_p(old.concept_statistics, layer.concept_statistics)
        rows.append((layer, old, p, differs))
    corrected = adjust_p_values([p for *_rest, p, _d in rows], correction)  # type: ignore[arg-type]
    out = []
    for (layer, old, p, differs), p_corr in zip(rows, corrected):
        score_moved, statistic_moved = layer_moved(
            old.significant or layer.significant, layer.score - old.score, layer.statistic - old.statistic,
            differs, p_corr, alpha=alpha, tolerance=tolerance, statistic_tolerance=statistic_tolerance)
        out.append(LayerComparison(
            layer=layer.layer, score_before=old.score, score_after=layer.score,
            statistic_before=old.statistic, statistic_after=layer.statistic,
            significant_before=old.significant, significant_after=layer.significant,
            p_value=p, p_corrected=float(p_corr), score_moved=score_moved, statistic_moved=statistic_moved,
        ))
    return out


def _verdict(significant: bool) -> str:
    return "significant" if significant else "not significant"


def format_comparison(stability: StabilityResult) -> str:
    """The before/after table of a stability check (one row per layer)."""
    header = ("layer", "score before → after", "change", "statistic before → after", "Welch p", "p corr",
              "verdict before → after", "")
    rows = [header]
    for c in stability.layers:
        verdict = (_verdict(c.significant_after) if c.significant_before == c.significant_after
                   else f"{_verdict(c.significant_before)} → {_verdict(c.significant_after)}")
        rows.append((
            c.layer,
            f"{c.score_before:.2f} → {c.score_after:.2f}",
            f"{c.score_change:+.2f}",
            f"{c.statistic_before:.4f} → {c.statistic_after:.4f}",
            format_p(c.p_value),
            format_p(c.p_corrected),
            verdict,
            "MOVED" if c.moved else "stable",
        ))
    lines = render_table(rows)
    before = stability.before
    r = stability.result
    if before is not None:
        model = (f"model changed ({before.model_fingerprint[:12]} → {r.model_fingerprint[:12]})"
                 if stability.model_changed else f"same model ({r.model_fingerprint[:12]})")
        caption = (f"baseline {stability.name!r} ({shown_path(stability.path)}, pytest-tcav {before.library_version}) "
                   f"vs this run: {model}; concept {r.concept!r}, target {r.target}, {r.n_random} random sets, "
                   f"method {r.method}, seed {r.seed}")
        if before.concept_fingerprint != r.concept_fingerprint:
            caption += "; the concept's examples changed since the baseline"
    else:
        caption = f"baseline {stability.name!r} ({shown_path(stability.path)})"
    return caption + "\n" + "\n".join(lines)


def _why_moved(stability: StabilityResult) -> str:
    parts = []
    for c in stability.layers:
        if not c.moved:
            continue
        what = []
        if c.score_moved:
            what.append(f"the TCAV score moved by {c.score_change:+.2f} (tolerance {stability.tolerance})")
        if c.statistic_moved:
            what.append(f"the statistic shifted from {c.statistic_before:.4f} to {c.statistic_after:.4f} over the "
                        f"{stability.result.n_random} random sets (Welch t-test, {stability.correction}-corrected "
                        f"p {format_p(c.p_corrected)} < {stability.alpha})")
        parts.append(f"on {c.layer} " + " and ".join(what))
    text = "; ".join(parts)
    obtained = shown_path(obtained_path(stability.path))
    return (f"Why: {text[0].upper() + text[1:]}. If the change is intended (a retrained model that should rely on "
            f"the concept differently), accept it: run pytest {UPDATE_FLAG} and commit "
            f"{shown_path(stability.path)}; the values measured now are in {obtained}.")


# -- the check -----------------------------------------------------------------------------

def resolve_directory(session: TCAVSession, baseline_dir: str | os.PathLike[str] | None) -> Path:
    """``baseline_dir`` (relative to the project root), else ``tcav_baselines/`` next to the running test."""
    if baseline_dir is not None:
        path = Path(baseline_dir)
        return (path if path.is_absolute() else session.config.root / path).resolve()
    test_path = session.current_test_path()
    folder = test_path.parent if test_path is not None else session.config.root
    return (Path(folder) / BASELINE_DIR).resolve()


def _check_tolerance(value: Any, name: str, upper: float | None) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"{name} must be a number, got {value!r}") from None
    if math.isnan(number) or number < 0 or (upper is not None and number > upper):
        bound = f"between 0 and {upper}" if upper is not None else "at least 0"
        raise ConfigurationError(f"{name} must be {bound}, got {value!r}")
    return number


def _incomparable(before: Baseline, result: TCAVResult, layers: list[str]) -> str | None:
    """Why the baseline cannot be compared with this result, or None."""
    now = Baseline.from_result(result, before.name).settings
    changed = [f"{key} {before.settings.get(key)!r} → {now[key]!r}" for key in COMPARABLE_SETTINGS
               if before.settings.get(key) != now[key]]
    missing = [name for name in layers if before.layer(name) is None]
    problems = []
    if changed:
        problems.append("its settings differ from this check's (" + ", ".join(changed) + ")")
    if missing:
        problems.append(f"it has no layer {', '.join(map(repr, missing))} "
                        f"(it has {', '.join(layer.layer for layer in before.layers)})")
    return " and ".join(problems) or None


def check_stable(session: TCAVSession, model: nn.Module, spec: CheckSpec) -> StabilityResult:
    """Run one stability check on ``session``, record it, write files as asked, raise on failure.

    ``spec`` is settled (:func:`~pytest_tcav.engine.spec.settle`) and has its ``stability`` part.
    """
    __tracebackhide__ = True
    assert spec.stability is not None, "a stability check's spec names its baseline"
    baseline, tolerance, statistic_tolerance, baseline_dir = (
        spec.stability.baseline, spec.stability.tolerance, spec.stability.statistic_tolerance,
        spec.stability.baseline_dir)
    layer_names = spec.layer_names
    entry = records.check_record(spec.concept, spec.target, layer_names, "stable", settled(spec.direction, "direction"))
    entry.stability = stability_entry = records.stability_info(baseline, tolerance, statistic_tolerance)

    def error(exc: BaseException, action: str = "error") -> BaseException:
        stability_entry.action = action
        return raised.recorded(session, entry, exc)

    try:
        tolerance = _check_tolerance(tolerance, "tolerance", 1.0)
        statistic_tolerance = _check_tolerance(statistic_tolerance, "statistic_tolerance", None)
        stability_entry.tolerance, stability_entry.statistic_tolerance = tolerance, statistic_tolerance
        directory = resolve_directory(session, baseline_dir)
        path = baseline_path(directory, baseline)
        stability_entry.path = str(path)
        name = path.name[: -len(SUFFIX)]
        stability_entry.baseline = name
        _claim(session, path, entry)
        result = session.measure(model, spec)
    except Exception as exc:  # any: a check that raised (in the model too) is still in the summary
        raise error(exc)  # noqa: B904  (the user's frames, not the engine's)
    entry = records.with_result(entry, result)
    test_id = session.current_nodeid()
    update = bool(getattr(session.config, "update_baselines", False))
    correction = result.correction
    stat_alpha = result.alpha
    new = Baseline.from_result(result, name, test=test_id)

    before: Baseline | None = None
    if path.exists():
        try:
            before = load_baseline(path, name)
            problem = _incomparable(before, result, layer_names)
            if problem:
                raise BaselineError(
                    f"baseline {name!r} ({shown_path(path)}) cannot be compared with this check: {problem}. "
                    f"If the new settings are intended, re-record it with pytest {UPDATE_FLAG}"
                )
        except BaselineError as exc:
            if not update:
                raise error(exc)  # noqa: B904  (the same error, without the reader's frames)
            before = None
    elif not update:
        raise error(BaselineError(
            f"no baseline {name!r} for this check (looked for {shown_path(path)}); baselines are only written on "
            f"request: run pytest {UPDATE_FLAG} to record this model's result as the baseline, review the "
            "file and commit it"
        ), action="missing")

    comparisons = (compare(before, result, tolerance=tolerance, statistic_tolerance=statistic_tolerance,
                           alpha=stat_alpha, correction=correction) if before is not None else [])
    stability = StabilityResult(name=name, path=path, result=result, before=before, layers=comparisons,
                                tolerance=tolerance, statistic_tolerance=statistic_tolerance, alpha=stat_alpha,
                                correction=correction)
    records.with_comparison(stability_entry, stability)
    records.with_sides(entry, before, new)
    obtained = obtained_path(path)
    try:
        if update:
            text = new.to_yaml()
            existing = path.read_text(encoding="utf-8") if path.exists() else None
            if existing == text or (before is not None and _same_measurement(before, new)):
                action = "unchanged"
            else:
                atomic_write(path, text)
                action = "created" if existing is None else "updated"
            obtained.unlink(missing_ok=True)
            stability = _with_action(stability, action)
            stability_entry.action = action
            session.record(records.finished(entry, "passed"))
            return stability
        if stability.passed:
            obtained.unlink(missing_ok=True)
            stability_entry.action = "checked"
            session.record(records.finished(entry, "passed"))
            return stability
        atomic_write(obtained, new.to_yaml())
    except OSError as exc:
        raise error(BaselineError(f"cannot write baseline files in {shown_path(directory)}: {exc}"))  # noqa: B904
    reason = _why_moved(stability)
    stability_entry.action = "checked"
    stability_entry.obtained = str(obtained)
    session.record(records.finished(entry, "failed", reason))
    moved = ", ".join(stability.moved_layers)
    headline = (f"concept {result.concept!r} moved for target {result.target} on {moved} since baseline "
                f"{name!r} (tolerance: TCAV score ±{tolerance}, statistic: Welch p < {stat_alpha} "
                f"{correction}-corrected)")
    raise ConceptStabilityFailure(f"{headline}\n\n{stability.table()}\n\n{reason}", stability, reason)


def _same_measurement(before: Baseline, new: Baseline) -> bool:
    """The same model, data, settings, layers and owner: differences can only be floating-point noise.

    The update flag then keeps the file as it is, so re-running it on another
    machine does not produce a diff of last digits.
    """
    return (before.model_fingerprint == new.model_fingerprint
            and before.concept_fingerprint == new.concept_fingerprint
            and before.settings == new.settings and before.test == new.test
            and before.library_version == new.library_version and before.format == new.format
            and [layer.layer for layer in before.layers] == [layer.layer for layer in new.layers])


def _with_action(stability: StabilityResult, action: str) -> StabilityResult:
    from dataclasses import replace

    return replace(stability, action=action)


def _claim(session: TCAVSession, path: Path, entry: records.CheckRecord) -> None:
    """Refuse a second check of one baseline file in a run (it would record two results in one file).

    The same test may check it again (a rerun of a flaky test) if it checks the same thing.
    """
    uses = session.baseline_uses
    nodeid = session.current_nodeid()
    what = json.dumps([entry.concept, entry.target, entry.layers, entry.direction])
    previous = uses.get(str(path))
    if previous is not None and previous != (nodeid, what):
        other = previous[0] or "a check outside a test"
        raise BaselineError(
            f"baseline {path.name!r} is already used in this run by {other}; give each check its own "
            "baseline name (e.g. with the concept or parameter in it)"
        )
    uses[str(path)] = (nodeid, what)
