"""What changed between two runs: two ``--tcav-json`` reports compared check by check.

A reviewer of a retrained model wants the few checks whose outcome changed,
not two reports to read side by side.  :func:`diff_reports` matches the
checks of two reports by test id, concept and target (the *n*-th such check of
a test with the *n*-th, so a test that checks one concept twice still pairs
up) and their layers by name, and sorts each pair into one of:

``verdict``
    the check's verdict or outcome changed, or a layer's significance flipped;
``layers``
    the check asked for other layers (one appeared or vanished);
``moved``
    same verdicts, but the effect moved beyond the run-to-run noise (below);
``appeared`` / ``vanished``
    the check is in only one report;
``unchanged``
    everything else.

The noise rule is the one ``assert_concept_stable`` applies to a baseline
(``docs/baselines.md``), because a report carries what a baseline carries: per
layer, the TCAV score, the statistic and its value against every random set.
A layer moved when its TCAV score changed by more than ``tolerance`` on a layer
where the concept is significant in either run (where it is significant in
neither, the score belongs to a direction the model does not use and swings
with the random sets), or when the per-random-set statistics shifted: Welch's
t-test of the two runs' values, corrected over the check's layers, below the
check's ``alpha``.  The spread of the statistic over the random sets is the
noise a rerun with other random sets would show, so only a shift beyond it
counts; a rerun with the same seed and data reproduces the numbers up to float
rounding, which the Welch helper treats as no change.

This module is pure (reports read back as records in, a :class:`ReportDiff` and text out) and
sits below ``checks/`` in the layers, so the two statistical functions are
passed in: the command passes the baseline comparison's own ``welch_p`` and
``adjust_p_values``, so a diff and a stability check can never disagree.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pytest_tcav.checks.records import CheckRecord, Settings
from pytest_tcav.engine.results import LayerResult
from pytest_tcav.reports.json import StoredCheck, StoredReport, jsonable, number
from pytest_tcav.reports.terminal import shown_concept
from pytest_tcav.tables import format_p, render_table

#: ``welch(before, after) -> (p, differs)``: :func:`pytest_tcav.checks.stability.welch_p`.
Welch = Callable[[Sequence[float], Sequence[float]], "tuple[float, bool]"]
#: ``adjust(p_values, method) -> corrected``: :func:`pytest_tcav.engine.statistics.adjust_p_values`.
Adjust = Callable[[Sequence[float], Any], "list[float]"]
#: ``moved(significant, score_change, statistic_change, differs, p_corrected, *, alpha, tolerance,
#: statistic_tolerance) -> (score_moved, statistic_moved)``: :func:`pytest_tcav.checks.stability.layer_moved`.
Moved = Callable[..., "tuple[bool, bool]"]

#: Check-level changes, in the order the summary counts them.
CHANGES = ("verdict", "layers", "moved", "appeared", "vanished", "unchanged")
#: Settings of a check whose difference makes the numbers of two runs hard to compare.
COMPARED_SETTINGS = ("method", "seed", "n_random", "n_concept_examples", "n_inputs", "null_test")
DEFAULT_TOLERANCE = 0.1  # the same default as assert_concept_stable's
SCHEMA = "pytest-tcav/diff"
VERSION = 1
_LABELS = {"verdict": "VERDICT", "layers": "layers", "moved": "MOVED", "appeared": "new", "vanished": "gone",
           "unchanged": ""}


@dataclass(frozen=True)
class LayerDiff:
    """One layer of a matched check: its numbers in both runs and what moved."""

    layer: str
    old: LayerResult | None
    new: LayerResult | None
    welch_p: float | None = None
    welch_p_corrected: float | None = None
    score_moved: bool = False
    statistic_moved: bool = False

    @property
    def change(self) -> str:
        if self.old is None:
            return "appeared"
        if self.new is None:
            return "vanished"
        if bool(self.old.significant) != bool(self.new.significant):
            return "verdict"
        return "moved" if self.score_moved or self.statistic_moved else "unchanged"

    def to_dict(self) -> dict[str, Any]:
        def side(read: Callable[[LayerResult], Any]) -> dict[str, Any]:
            return {"old": None if self.old is None else read(self.old),
                    "new": None if self.new is None else read(self.new)}

        return {"layer": self.layer, "change": self.change, "significant": side(lambda r: r.significant),
                "score": side(lambda r: r.score), "statistic": side(lambda r: r.statistic),
                "p_corrected": side(lambda r: r.p_corrected), "cav_accuracy": side(lambda r: r.cav_accuracy),
                "welch_p": self.welch_p,
                "welch_p_corrected": self.welch_p_corrected, "score_moved": self.score_moved,
                "statistic_moved": self.statistic_moved}


@dataclass(frozen=True)
class CheckDiff:
    """One check, matched across the two reports (``old`` or ``new`` is None when it is in one only)."""

    test: str | None
    concept: str
    target: str
    old: StoredCheck | None
    new: StoredCheck | None
    layers: list[LayerDiff] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def change(self) -> str:
        if self.old is None:
            return "appeared"
        if self.new is None:
            return "vanished"
        kinds = {layer.change for layer in self.layers}
        if ("verdict" in kinds or self.old.verdict != self.new.verdict
                or self.old.status != self.new.status):
            return "verdict"
        if kinds & {"appeared", "vanished"}:
            return "layers"
        return "moved" if "moved" in kinds else "unchanged"

    @property
    def name(self) -> str:
        return self.test or "(outside a test)"

    def to_dict(self) -> dict[str, Any]:
        def side(read: Callable[[StoredCheck], Any]) -> dict[str, Any]:
            return {"old": None if self.old is None else read(self.old),
                    "new": None if self.new is None else read(self.new)}

        return {"test": self.test, "concept": self.concept, "target": self.target, "change": self.change,
                "id": side(lambda c: c.id), "verdict": side(lambda c: c.verdict), "status": side(lambda c: c.status),
                "model_fingerprint": side(lambda c: c.record.model_fingerprint), "notes": list(self.notes),
                "layers": [layer.to_dict() for layer in self.layers]}


@dataclass(frozen=True)
class ReportDiff:
    """Every check of two reports, paired, with the rule they were compared by."""

    old_name: str
    new_name: str
    checks: list[CheckDiff]
    tolerance: float = DEFAULT_TOLERANCE
    statistic_tolerance: float = 0.0

    @property
    def changed(self) -> bool:
        return any(check.change != "unchanged" for check in self.checks)

    def counts(self) -> dict[str, int]:
        counts = Counter(check.change for check in self.checks)
        return {change: counts[change] for change in CHANGES}


# -- comparing --------------------------------------------------------------------------


def _key(check: StoredCheck) -> tuple[str | None, str, str]:
    return check.test, shown_concept(check.record), str(check.record.target)


def _paired(old: Sequence[StoredCheck], new: Sequence[StoredCheck]) -> list[tuple[Any, Any]]:
    """Checks of both reports paired by (test, concept, target, n-th occurrence), in the new report's order."""

    def keyed(checks: Sequence[StoredCheck]) -> dict[tuple[Any, ...], StoredCheck]:
        seen: Counter[tuple[Any, ...]] = Counter()
        out = {}
        for check in checks:
            key = _key(check)
            out[key + (seen[key],)] = check
            seen[key] += 1
        return out

    before, after = keyed(old), keyed(new)
    pairs: list[tuple[Any, Any]] = [(before.get(key), check) for key, check in after.items()]
    pairs += [(check, None) for key, check in before.items() if key not in after]
    return pairs


def _numbers(values: Any) -> list[float]:
    found = (number(v) for v in values or [])
    return [v for v in found if v is not None and v == v]  # NaN is no measurement


def _diff_layers(old: CheckRecord, new: CheckRecord, *, welch: Welch, adjust: Adjust, moved: Moved,
                 tolerance: float, statistic_tolerance: float) -> list[LayerDiff]:
    """The rule of :func:`pytest_tcav.checks.stability.compare`, on report layers."""
    before = {str(r.layer): r for r in old.results}
    after = {str(r.layer): r for r in new.results}
    both = [name for name in after if name in before]
    tests = [welch(_numbers(before[name].concept_statistics), _numbers(after[name].concept_statistics))
             for name in both]
    correction = new.settings.correction if new.settings is not None else None
    corrected = adjust([p for p, _ in tests], correction or "holm") if tests else []
    alpha = number(new.alpha) or number(old.alpha) or 0.05
    compared: dict[str, LayerDiff] = {}
    for name, (p, differs), p_corr in zip(both, tests, corrected):
        a, b = before[name], after[name]
        score_a, score_b = number(a.score), number(b.score)
        stat_a, stat_b = number(a.statistic), number(b.statistic)
        # a number missing from either report is no measured change
        score_change = score_b - score_a if score_a is not None and score_b is not None else 0.0
        stat_change = stat_b - stat_a if stat_a is not None and stat_b is not None else 0.0
        score_moved, statistic_moved = moved(bool(a.significant or b.significant), score_change,
                                             stat_change, bool(differs), p_corr, alpha=alpha, tolerance=tolerance,
                                             statistic_tolerance=statistic_tolerance)
        compared[name] = LayerDiff(name, a, b, float(p), float(p_corr), score_moved, statistic_moved)
    out = [compared.get(name) or LayerDiff(name, None, after[name]) for name in after]
    return out + [LayerDiff(name, before[name], None) for name in before if name not in after]


def _compared_settings(settings: Settings | None) -> tuple[Any, ...]:
    """The settings of :data:`COMPARED_SETTINGS`, in its order (None where a report has none)."""
    s = settings if settings is not None else Settings()
    return s.method, s.seed, s.n_random, s.n_concept_examples, s.n_inputs, s.null_test


def _notes(old: CheckRecord, new: CheckRecord) -> list[str]:
    """What differs besides the model, and makes the two runs' numbers hard to compare."""
    notes = []
    changed = [f"{key} {a!r} → {b!r}" for key, a, b in zip(COMPARED_SETTINGS, _compared_settings(old.settings),
                                                            _compared_settings(new.settings)) if a != b]
    changed += [f"{key} {a!r} → {b!r}" for key, a, b in (("direction", old.direction, new.direction),
                                                          ("alpha", old.alpha, new.alpha),
                                                          ("expectation", old.expectation, new.expectation))
                if a != b]
    if changed:
        notes.append("settings differ: " + ", ".join(changed))
    if old.concept_fingerprint and old.concept_fingerprint != new.concept_fingerprint:
        notes.append("the concept's examples changed")
    return notes


def diff_reports(old: StoredReport | Mapping[str, Any], new: StoredReport | Mapping[str, Any], *, welch: Welch,
                 adjust: Adjust, moved: Moved,
                 tolerance: float = DEFAULT_TOLERANCE, statistic_tolerance: float = 0.0,
                 old_name: str = "old", new_name: str = "new") -> ReportDiff:
    """Compare two reports (:func:`pytest_tcav.cli.stored.load_report` reads them back) check by check.

    A report's dictionary (:func:`~pytest_tcav.reports.json.build_report`) is read as one first.
    """
    old = old if isinstance(old, StoredReport) else StoredReport.from_dict(old)
    new = new if isinstance(new, StoredReport) else StoredReport.from_dict(new)
    out = []
    for a, b in _paired(old.checks, new.checks):
        test, concept, target = _key(b if b is not None else a)
        if a is None or b is None:
            side: StoredCheck = a if a is not None else b
            layers = [LayerDiff(str(r.layer), None if a is None else r, None if b is None else r)
                      for r in side.record.results]
            out.append(CheckDiff(test, concept, target, a, b, layers))
            continue
        layers = _diff_layers(a.record, b.record, welch=welch, adjust=adjust, moved=moved, tolerance=tolerance,
                              statistic_tolerance=statistic_tolerance)
        out.append(CheckDiff(test, concept, target, a, b, layers, _notes(a.record, b.record)))
    return ReportDiff(old_name, new_name, out, tolerance, statistic_tolerance)


# -- rendering --------------------------------------------------------------------------

HEADER = ("test", "concept", "target", "layer", "verdict", "score", "p corr", "Welch p", "result", "change")


def _pair(old: str | None, new: str | None) -> str:
    if old is None:
        return new or "-"
    if new is None:
        return old
    return old if old == new else f"{old} → {new}"


def _fmt(value: Any, spec: str) -> str | None:
    x = number(value)
    return None if x is None else format(x, spec)


def _p(value: Any) -> str | None:
    x = number(value)
    return None if x is None or x != x else format_p(x)


def _layer_verdict(layer: LayerResult | None) -> str | None:
    if layer is None:
        return None
    return "significant" if layer.significant else "not significant"


def _rows(check: CheckDiff) -> list[tuple[str, ...]]:
    a, b = check.old, check.new
    status = _pair(a.status if a is not None else None, b.status if b is not None else None)
    label = _LABELS[check.change]
    if not check.layers or (a is not None and b is not None
                            and not (a.record.results and b.record.results)):  # an error: no layers to compare
        verdict = _pair(a.verdict if a is not None else None, b.verdict if b is not None else None)
        return [(check.name, check.concept, check.target, "-", verdict, "-", "-", "-", status, label)]
    rows: list[tuple[str, ...]] = []
    for layer in check.layers:
        old, new = layer.old, layer.new
        verdict = _pair(_layer_verdict(old), _layer_verdict(new))
        if check.old is not None and check.new is not None and (old is None or new is None):
            verdict = f"{verdict} (layer {'added' if old is None else 'removed'})"
        score = _pair(_fmt(old.score, ".2f") if old else None, _fmt(new.score, ".2f") if new else None)
        p_corr = _pair(_p(old.p_corrected) if old else None, _p(new.p_corrected) if new else None)
        welch = "-" if layer.welch_p_corrected is None else format_p(layer.welch_p_corrected)
        rows.append((check.name, check.concept, check.target, layer.layer, verdict, score, p_corr, welch, status,
                     label))
    return rows


def _summary(diff: ReportDiff) -> str:
    counts = diff.counts()
    words = {"verdict": "verdict(s) changed", "layers": "with other layers", "moved": "moved",
             "appeared": "new", "vanished": "gone", "unchanged": "unchanged"}
    parts = [f"{counts[c]} {words[c]}" for c in CHANGES if counts[c]]
    return f"{len(diff.checks)} concept check(s) compared: {', '.join(parts) or 'none in either report'}"


def flipped(diff: ReportDiff) -> list[str]:
    """``concept for target`` of each check whose verdict changed, once each, in table order."""
    names = [f"{c.concept} for {c.target}" for c in diff.checks if c.change == "verdict"]
    return list(dict.fromkeys(names))


def rule_text(diff: ReportDiff) -> str:
    """The noise rule in one sentence, for the reader of a table."""
    statistic = f" by more than {diff.statistic_tolerance}" if diff.statistic_tolerance else ""
    return (f"moved: the TCAV score changed by more than {diff.tolerance} on a layer significant in either run, "
            f"or the per-random-set statistics shifted{statistic} (Welch t-test, corrected over the check's "
            f"layers, p below the check's alpha)")


def _shown(diff: ReportDiff, everything: bool) -> list[CheckDiff]:
    return [c for c in diff.checks if everything or c.change != "unchanged"]


def render_text(diff: ReportDiff, *, everything: bool = False) -> str:
    """A plain table of the changed checks (all with ``everything``), a count, the notes and the rule."""
    lines = [f"pytest-tcav diff: {diff.old_name} → {diff.new_name}"]
    shown = _shown(diff, everything)
    if shown:
        lines += render_table([HEADER, *(row for check in shown for row in _rows(check))])
    lines.append(_summary(diff))
    if flipped(diff):
        lines.append("verdicts changed: " + ", ".join(flipped(diff)))
    lines += [f"note: {check.name} ({check.concept}, {check.target}): {note}"
              for check in shown for note in check.notes]
    lines.append(rule_text(diff))
    return "\n".join(lines) + "\n"


def _md(cell: str) -> str:
    """A table cell for GitHub-flavoured markdown: no row breaks, no column breaks, no raw HTML."""
    cell = " ".join(cell.split()).replace("\\", "\\\\").replace("|", "\\|")
    return cell.replace("<", "&lt;").replace(">", "&gt;") or " "


def render_markdown(diff: ReportDiff, *, everything: bool = False) -> str:
    """A pull-request comment: a heading with the count, the table, notes and the rule."""
    shown = _shown(diff, everything)
    counts = diff.counts()
    if not diff.changed:
        title = "no concept check changed"
    else:
        title = f"{counts['verdict']} verdict(s) changed" if counts["verdict"] else "concept checks changed"
    lines = [f"### Concept tests: {title}", "",
             f"`{_md(diff.old_name)}` → `{_md(diff.new_name)}`: {_md(_summary(diff))}.", ""]
    if flipped(diff):
        lines += ["Verdicts changed: " + ", ".join(f"**{_md(name)}**" for name in flipped(diff)) + ".", ""]
    if shown:
        lines.append("| " + " | ".join(HEADER) + " |")
        lines.append("|" + "---|" * len(HEADER))
        for check in shown:
            for row in _rows(check):
                cells = [f"`{_md(row[0])}`", *(_md(cell) for cell in row[1:])]
                cells[-1] = f"**{cells[-1]}**" if cells[-1].strip() else cells[-1]
                lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    notes = [f"- `{_md(c.name)}` ({_md(c.concept)}, {_md(c.target)}): {_md(n)}" for c in shown for n in c.notes]
    if notes:
        lines += [*notes, ""]
    lines.append(f"<sub>{_md(rule_text(diff))}.</sub>")
    return "\n".join(lines) + "\n"


def to_json(diff: ReportDiff, *, everything: bool = True) -> dict[str, Any]:
    """The diff for machines (JSON types only; non-finite numbers as strings, as in the report)."""
    return jsonable({
        "schema": SCHEMA, "version": VERSION, "old": diff.old_name, "new": diff.new_name,
        "changed": diff.changed,
        "rule": {"tolerance": diff.tolerance, "statistic_tolerance": diff.statistic_tolerance},
        "summary": {"checks": len(diff.checks), **diff.counts()},
        "checks": [c.to_dict() for c in _shown(diff, everything)],
    })


__all__ = ["CHANGES", "CheckDiff", "LayerDiff", "ReportDiff", "diff_reports", "flipped", "render_markdown",
           "render_text", "rule_text", "to_json"]
