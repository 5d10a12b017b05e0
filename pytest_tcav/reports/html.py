"""The human-readable report of a run: one self-contained HTML page (``--tcav-html``).

The page is rendered from the JSON report (:mod:`pytest_tcav.reports.json`), read
back as a :class:`~pytest_tcav.reports.json.StoredReport` whose checks are records
again, so the two never disagree.  It must open anywhere, offline and years later: CSS
is inline, plots are inline base64 PNGs, there is no JavaScript, no web font
and no link outside the page.  Every piece of text that comes from a user (test
ids, concept and folder names, messages) is escaped.

The stylesheet is ``report.css`` beside this module (package data), read when a
page is rendered.  Plots come from :mod:`pytest_tcav.reports.plots`, which
imports matplotlib, an optional extra, only when a page is rendered; they are
looked up there at call time.  Without matplotlib the page keeps every table
and says how to get the plots.
"""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from importlib.resources import files
from pathlib import Path
from typing import Any

from pytest_tcav.checks.records import CheckRecord, ComparedLayer, SideLayer, StabilityAccount, null_words
from pytest_tcav.engine.results import LayerResult
from pytest_tcav.reports import plots
from pytest_tcav.reports.examples import Thumbnails, examples_html
from pytest_tcav.reports.json import StoredCheck, StoredReport, atomic_write_text, jsonable, number
from pytest_tcav.reports.plots import finite_values, mean_sd
from pytest_tcav.reports.similarity import similarity_section
from pytest_tcav.reports.terminal import shown_concept
from pytest_tcav.tables import format_p

#: Keys of a check that the page shows in its own places; any other key is listed under "More".
_SHOWN = {
    "id", "test", "index", "concept", "target", "layers", "expectation", "direction", "require", "score_range",
    "alpha", "results", "outcome", "error", "message", "xfail", "model_fingerprint", "concept_fingerprint",
    "settings", "verdict", "status", "caught", "before", "after", "stability", "against", "margin",
    "power_warning", "examples",
}
#: A record's fields that a report does not have (``test`` stands for ``nodeid``; ``seq`` is dropped).
_NOT_IN_REPORT = {"nodeid", "seq"}


def stylesheet() -> str:
    """The page's CSS, from ``report.css``: a file of its own so it can be read and edited as CSS."""
    return files("pytest_tcav.reports").joinpath("report.css").read_text(encoding="utf-8")


def esc(value: Any) -> str:
    """Any value as escaped HTML text (quotes too, so it is safe inside attributes)."""
    return html.escape("" if value is None else str(value), quote=True)


# -- numbers -------------------------------------------------------------------------------


def fmt(value: Any, digits: int = 3) -> str:
    x = number(value)
    if x is None:
        return "n/a"
    if math.isnan(x):
        return "n/a"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:.{digits}f}"


def fmt_p(value: Any) -> str:
    """:func:`format_p` for a report's value, which may be missing or the string "NaN"."""
    x = number(value)
    return "n/a" if x is None or math.isnan(x) else format_p(x)


# -- HTML pieces -----------------------------------------------------------------------


#: Where a long layer name may wrap: after its dots, underscores, slashes and brackets.
_BREAKS = re.compile(r"([._/\]])")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], *, numeric: AbstractSet[int] = frozenset(),
           css: str = "", keyed: bool = False, verdict: int | None = None, labels: bool = False) -> str:
    """A table from already-escaped cells, in a box that scrolls sideways on narrow screens.

    ``keyed``: the first column names the row (a layer) and stays in view when the
    table scrolls; ``verdict`` is the index of the verdict column, which stays in
    view beside it (both sticky, report.css).  ``labels``: each cell carries its
    column's name (``data-label``), which narrow screens show when the table turns
    into one card per row.
    """
    def cls(k: int) -> str:
        names = ["num"] if k in numeric else []
        if keyed and k == 0:
            names.append("key")
        if k == verdict:
            names.append("verdict")
        return f' class="{" ".join(names)}"' if names else ""

    def content(k: int, cell: str) -> str:
        if not (keyed and k == 0):
            return cell
        return '<span class="key-name">' + _BREAKS.sub(r"\1<wbr>", cell) + "</span>"

    head = "".join(f"<th{cls(k)}>{content(k, h)}</th>" for k, h in enumerate(header))
    body = "".join(
        "<tr>" + "".join(f"<td{cls(k)}" + (f' data-label="{header[k]}"' if labels else "") + f">{content(k, c)}</td>"
                         for k, c in enumerate(row)) + "</tr>"
        for row in rows
    )
    table_cls = f' class="{css}"' if css else ""
    return f'<div class="scroll"><table{table_cls}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _verdict_cell(r: LayerResult) -> str:
    """The layer's verdict; a record written before verdicts existed has only ``significant``."""
    significant = r.significant
    verdict = r.verdict or ("significant" if significant is True else
                            "not significant" if significant is False else None)
    css = {"significant": "sig", "not significant": "nonsig", "inconclusive": "inconclusive"}.get(str(verdict))
    return f'<span class="{css}">{esc(verdict)}</span>' if css else "n/a"


def layer_table(results: Sequence[LayerResult], null: str = "random sets") -> str:
    """Per layer: verdict, score and the null's scores, statistic vs null, p-values, CAV accuracy.

    The verdict comes right after the layer's name, and both stay in view when
    the table scrolls sideways (a phone, or a narrow window).
    """
    rows = []
    for r in results:
        random_scores = mean_sd(finite_values(r.null_scores))
        rows.append((
            esc(r.layer),
            _verdict_cell(r),
            fmt(r.score, 2),
            f"{random_scores[0]:.2f} ± {random_scores[1]:.2f}" if random_scores else "n/a",
            fmt(r.statistic, 4),
            f"{fmt(r.null_mean, 4)} ± {fmt(r.null_sd, 4)}",
            fmt(r.t_statistic, 2),
            fmt_p(r.p_value),
            fmt_p(r.p_corrected),
            fmt(r.cav_accuracy, 2),
            fmt(r.effect, 2),
            fmt(r.detectable_effect, 2),
            fmt_p(r.equivalence_p_corrected) if r.equivalence_p_corrected is not None else "-",
        ))
    return _table(("layer", "verdict", "score", f"{null}' score", "statistic", "null mean ± sd", "t", "p",
                   "p corrected", "CAV accuracy", "effect", "detectable effect", "equivalence p"), rows,
                  numeric=set(range(2, 13)), css="layers", keyed=True, verdict=1)


def distribution_table(r: LayerResult, null: str = "random set") -> str:
    """One layer's per-set numbers: the concept against random set k, and null member k (a random set, a
    pseudo-concept or a relabeling: with pseudo-concepts the two columns have their own lengths)."""
    columns = [finite_values(values) for values in (r.concept_scores, r.concept_statistics, r.cav_accuracies,
                                                    r.null_statistics, r.null_scores)]
    n = max((len(c) for c in columns), default=0)
    if n == 0:
        return ""
    rows = []
    for k in range(n):
        rows.append((str(k), *(f"{c[k]:.4f}" if k < len(c) else "" for c in columns)))
    return (f"<p><b>{esc(r.layer)}</b></p>"
            + _table(("k", "concept score (vs random set k)", "concept statistic", "CAV accuracy",
                      f"null statistic ({null} k)", "null score"), rows, numeric=set(range(1, 6)),
                     css="distribution"))


def _arrow(before: str, after: str) -> str:
    if not before and not after:
        return ""
    return after if before == after else f"{before or '–'} → {after or '–'}"


#: The numbers of a side shown "before → after": how to read one from a side, how to show it.
_SIDE_COLUMNS: tuple[tuple[Callable[[SideLayer], Any], Callable[[Any], str]], ...] = (
    (lambda side: side.score, lambda v: fmt(v, 2)),
    (lambda side: side.statistic, lambda v: fmt(v, 4)),
    (lambda side: side.p_corrected, fmt_p),
    (lambda side: side.cav_accuracy, lambda v: fmt(v, 2)),
    (lambda side: side.significant, lambda v: "" if v is None else ("significant" if v else "not significant")),
)


def _side_cell(side: SideLayer | None, read: Callable[[SideLayer], Any], show: Callable[[Any], str]) -> str:
    value = read(side) if side is not None else None
    return "" if value is None else show(value)


def stability_table(before: Mapping[str, SideLayer], after: Mapping[str, SideLayer],
                    comparisons: Sequence[ComparedLayer] | None = None) -> str:
    """Per layer, "before → after" of each number, then the comparison's own columns (test, moved...).

    ``comparisons`` is a stability record's per-layer comparison; its numbers
    other than the ``*_before``/``*_after`` pairs already shown become columns.
    """
    compared = {c.layer: c.to_dict() for c in comparisons or []}
    layers = list(dict.fromkeys([*before, *after, *compared]))
    extra = [k for k in dict.fromkeys(k for numbers in compared.values() for k in numbers)
             if k != "layer" and not k.endswith(("_before", "_after"))]
    rows = []
    for name in layers:
        b, a, c = before.get(name), after.get(name), compared.get(name, {})
        cells = [esc(name)]
        for read, show in _SIDE_COLUMNS:
            cells.append(esc(_arrow(_side_cell(b, read, show), _side_cell(a, read, show))))
        cells.insert(1, cells.pop())  # the verdict, right after the layer
        bs = mean_sd(finite_values(b.concept_scores)) if b is not None else None
        as_ = mean_sd(finite_values(a.concept_scores)) if a is not None else None
        cells.append(esc(_arrow(f"{bs[0]:.2f} ± {bs[1]:.2f}" if bs else "", f"{as_[0]:.2f} ± {as_[1]:.2f}"
                                if as_ else "")))
        cells += [_stability_value(key, c.get(key)) for key in extra]
        rows.append(cells)
    header = ["layer", "verdict", "score", "statistic", "p corrected", "CAV accuracy",
              "score per random set", *(f"comparison: {k}" for k in extra)]
    return _table([esc(h) for h in header], rows, numeric=set(range(2, 6)), css="stability", keyed=True,
                  verdict=1)


def _stability_value(key: str, value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "<b>yes</b>" if value else "no"
    if key.startswith("p_") or key.endswith("_p"):
        return fmt_p(value)
    if number(value) is not None:
        return fmt(value, 3)
    return esc(value)


def stability_summary(stability: StabilityAccount | None) -> str:
    """One line about the baseline: name, file, what was done with it, tolerances, model change."""
    if stability is None:
        return ""
    labels = ((stability.baseline, "baseline"), (stability.path, "file"), (stability.action, "action"),
              (stability.tolerance, "score tolerance"), (stability.statistic_tolerance, "statistic tolerance"),
              (stability.model_changed, "model changed"), (stability.moved, "moved layers"),
              (stability.obtained, "obtained file"))
    items = []
    for value, label in labels:
        if value is None or value == [] or value == "":
            continue
        if isinstance(value, bool):
            value = "yes" if value else "no"
        elif isinstance(value, list):
            value = ", ".join(map(str, value))
        items.append(f"<dt>{esc(label)}</dt><dd>{esc(value)}</dd>")
    return f'<dl class="settings">{"".join(items)}</dl>' if items else ""


def _value_html(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return f"<pre>{esc(json.dumps(value, indent=2, allow_nan=False, default=str))}</pre>"
    return esc(value)


def _claim(check: StoredCheck) -> str:
    record = check.record
    expectation = record.expectation
    layers = record.layers or [r.layer for r in record.results]
    scope = "any of" if record.require == "any" else "all of"
    text = f"concept <b>{esc(shown_concept(record))}</b> for target <b>{esc(record.target)}</b>"
    if expectation:
        text += f": expected <b>{esc(expectation)}</b>"
        if record.direction:
            text += f" ({esc(record.direction)})"
        text += f" on {scope} {esc(', '.join(map(str, layers)))}"
        if record.score_range:
            low, high = ([*record.score_range] + [None, None])[:2]
            text += f", TCAV score in [{esc(low)}, {esc(high)}]"
        if record.margin is not None:
            text += f", effect shown below the margin {fmt(record.margin, 2)}"
    else:
        text += f", direction {esc(record.direction)}, layers {esc(', '.join(map(str, layers)))}"
    if check.verdict:
        text += f" — found <b>{esc(check.verdict)}</b>"
    return f'<p class="claim">{text}</p>'


def _settings(record: CheckRecord) -> str:
    items: list[tuple[str, Any]] = [("alpha", record.alpha)]
    if record.settings is not None:
        items += record.settings.items()
    items += [("model fingerprint", record.model_fingerprint),
              ("concept fingerprint", record.concept_fingerprint)]
    shown = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in items if v not in (None, ""))
    return f'<dl class="settings">{shown}</dl>' if shown else ""


def _image(png: str | None, alt: str, caption: str) -> str:
    if not png:
        return ""
    return (f'<figure><img alt="{esc(alt)}" src="data:image/png;base64,{png}">'
            f"<figcaption>{caption}</figcaption></figure>")


def _plot_or_note(make: Any, *args: Any) -> tuple[str | None, str]:
    """A plot, or a note saying why it is missing: a bad value in one check must not lose the page."""
    try:
        return make(*args), ""
    except Exception as exc:  # noqa: BLE001 - any plotting failure degrades to the tables
        return None, f'<p class="notice">This plot could not be drawn ({esc(type(exc).__name__)}: {esc(exc)}).</p>'


def check_section(number_: int, check: StoredCheck, mpl: tuple[Any, Any] | None,
                  thumbnails: Thumbnails | None = None) -> str:
    """One check: claim, verdict, message, plots, per-layer table, examples, stability, distributions, settings."""
    record = check.record
    result = str(check.status or record.outcome or "unknown")
    label = {"passed": "passed", "failed": "FAILED", "error": "ERROR", "xfailed": "xfailed",
             "caught": "caught by its test"}.get(result, result)
    title = check.test or _untitled(record)
    if check.index:
        title = f"{title} (check {int(check.index) + 1})"
    parts = [f'<section class="check {esc(result)}" id="check-{number_}">',
             f'<h2>{esc(title)}<span class="badge {esc(result)}">{esc(label)}</span></h2>', _claim(check)]
    if record.message or record.error:
        error = f'<strong>{esc(record.error)}</strong>: ' if record.error else ""
        parts.append(f'<div class="message">{error}{esc(record.message or "")}</div>')
    if record.power_warning:
        parts.append(f'<div class="message">Warning: {esc(record.power_warning)}</div>')
    results = record.results
    plural, single = null_words(record)
    if mpl is not None and results:
        png, note = _plot_or_note(plots.check_plot, record, mpl)
        parts.append(_image(png, f"TCAV scores and statistics per layer for {record.concept}",
                            "Left: TCAV score per layer (bar: mean over the random counterparts, whisker: "
                            f"sd) beside the {plural}' own scores. Right: the concept's statistic against "
                            f"each random counterpart vs the null statistics of the {plural}.") + note)
    if results:
        parts.append(layer_table(results, plural))
        parts.append(examples_html(record.examples, results, thumbnails or Thumbnails(),
                                   shown_concept(record)))
    before, after = record.before or {}, record.after or {}
    stability = record.stability
    comparisons = stability.layers if stability is not None else None
    if before or after or stability:
        parts.append("<h3>Stability: baseline (before) vs this run (after)</h3>")
        parts.append(stability_summary(stability))
        if mpl is not None and (before or after):
            png, note = _plot_or_note(plots.stability_plot, before, after, mpl)
            parts.append(_image(png, "baseline vs this run per layer",
                                "Left: TCAV score per layer, baseline and this run (whisker: sd over the random "
                                "sets). Right: the per-random-set statistics the two-sample test compares.")
                         + note)
        if before or after or comparisons:
            parts.append(stability_table(before, after, comparisons))
    distributions = "".join(distribution_table(r, single) for r in results)
    if distributions:
        parts.append(f"<details><summary>Per-set numbers</summary>{distributions}</details>")
    parts.append(_settings(record))
    extra = [(k, v) for k, v in jsonable(record.to_dict()).items() if k not in _SHOWN and k not in _NOT_IN_REPORT]
    if extra:
        rows = "".join(f"<tr><th>{esc(k)}</th><td>{_value_html(v)}</td></tr>" for k, v in extra)
        parts.append(f"<details><summary>More</summary><table class=\"extra\"><tbody>{rows}</tbody></table>"
                     "</details>")
    parts.append("</section>")
    return "\n".join(p for p in parts if p)


def _untitled(record: CheckRecord) -> str:
    """The title of a check made outside a test (the command line): what was scored."""
    return f"{shown_concept(record)} for target {record.target}"


def overview(checks: Sequence[StoredCheck]) -> str:
    """One row per check, linking to its section (the terminal summary's table)."""
    rows = []
    for k, check in enumerate(checks, 1):
        record = check.record
        results = record.results
        result = str(check.status or record.outcome or "unknown")
        expected = esc(record.expectation or "-")
        if record.direction:
            expected += f" ({esc(record.direction)})"
        if record.margin is not None:
            expected += f" (margin {fmt(record.margin, 2)})"
        rows.append((
            f'<a href="#check-{k}">{esc(check.test or _untitled(record))}</a>',
            f'<span class="badge {esc(result)}">{esc(result)}</span>',
            esc(check.verdict),
            esc(shown_concept(record)),
            esc(record.target),
            expected,
            "<br>".join(esc(r.layer) for r in results) or esc(", ".join(map(str, record.layers))),
            "<br>".join(fmt(r.score, 2) for r in results) or "-",
            "<br>".join(fmt_p(r.p_corrected) for r in results) or "-",
        ))
    return _table(("test", "result", "verdict", "concept", "target", "expected", "layers", "score", "p (corr.)"),
                  rows, numeric={7, 8}, css="overview", verdict=2, labels=True)


def render_html(report: StoredReport | Mapping[str, Any], *, mpl: tuple[Any, Any] | None | bool = True) -> str:
    """The page for a report (or its dictionary).  ``mpl=True`` loads matplotlib if it can; ``None`` draws no plots."""
    if not isinstance(report, StoredReport):
        report = StoredReport.from_dict(report)
    if mpl is True:
        mpl = plots.load_matplotlib()
    elif mpl is False:
        mpl = None
    checks = report.checks
    counts = ", ".join(f"{esc(v)} {esc(k)}" for k, v in report.counts.items())
    head = (f'<header><h1>TCAV concept checks</h1><p class="meta">{esc(report.count)} '
            f"check(s){': ' + counts if counts else ''} · created {esc(report.created)} · "
            f"{esc(report.generator_name)} {esc(report.generator_version)} via "
            f"{esc(report.via)} · device {esc(report.device)}</p></header>")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>pytest-tcav report</title>",
        f"<style>\n{stylesheet()}</style></head><body>",
        head,
    ]
    if mpl is None and checks:
        parts.append(f'<p class="notice" id="no-plots">{esc(plots.PLOT_HINT)}</p>')
    if checks:
        parts.append('<section id="overview"><h2>Overview</h2>' + overview(checks) + "</section>")
        parts.append(similarity_section([check.record for check in checks]))
        thumbnails = Thumbnails.from_settings(report.settings)
        sections = [check_section(k, check, mpl, thumbnails) for k, check in enumerate(checks, 1)]
        if thumbnails.over_budget:
            parts.append(f'<p class="notice" id="thumbnail-budget">{thumbnails.over_budget} example(s) are shown '
                         f"by name only: the page's thumbnails reached their limit of "
                         f"{thumbnails.budget // 1000} kB.</p>")
        parts.extend(sections)
    else:
        parts.append('<p id="no-checks">No concept checks ran.</p>')
    rows = [(esc(k), _value_html(v)) for k, v in report.environment.items()]
    rows += [(esc(f"setting: {k}"), _value_html(v)) for k, v in report.settings.items()]
    parts.append('<section id="environment"><h2>Environment</h2>'
                 + _table(("", "value"), rows, css="environment") + "</section>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_html(path: Path, report: StoredReport | Mapping[str, Any]) -> Path:
    """Render and write the page atomically; returns the path written."""
    return atomic_write_text(path, render_html(report))
