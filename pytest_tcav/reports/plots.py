"""The report page's plots: matplotlib figures drawn with the Agg canvas, as base64 PNGs.

matplotlib is an optional extra (``pip install 'pytest-tcav[report]'``): it is
imported only by :func:`load_matplotlib`, when a page is rendered, and only its
object-oriented API with the Agg canvas is used, never ``pyplot``, so rendering
a report does not change the backend of a test suite that uses matplotlib
itself.  PNGs are written without a ``Software`` tag, so the same report gives
the same bytes.  :mod:`pytest_tcav.reports.html` places the images and says
what to do when matplotlib is missing (:data:`PLOT_HINT`).
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

from pytest_tcav.checks.records import CheckRecord, SideLayer, null_words
from pytest_tcav.reports.json import number

PLOT_HINT = "Plots need matplotlib: install it with pip install 'pytest-tcav[report]' (or pip install matplotlib)."

CONCEPT_COLOUR = "#2b6cb0"
RANDOM_COLOUR = "#a0aec0"
BEFORE_COLOUR = "#b7791f"
AFTER_COLOUR = "#2b6cb0"


# -- numbers (the page's tables use them too) -------------------------------------------


def finite_values(raw: Any) -> list[float]:
    """The finite numbers of a per-layer list: a report may hold "NaN" strings or no list at all."""
    if not isinstance(raw, list):
        return []
    out = [number(v) for v in raw]
    return [v for v in out if v is not None and math.isfinite(v)]


def mean_sd(values: Sequence[float]) -> tuple[float, float] | None:
    """Mean and sample standard deviation (0 for one value); ``None`` for none, to show "n/a"."""
    if not values:
        return None
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


# -- plots -----------------------------------------------------------------------------


def load_matplotlib() -> tuple[Any, Any] | None:
    """matplotlib's ``Figure`` and Agg canvas, or ``None`` when matplotlib is not installed."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return None
    return Figure, FigureCanvasAgg


def _png(figure: Any, canvas_class: Any) -> str:
    canvas_class(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=96, metadata={"Software": None})
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _short(name: str, limit: int = 18) -> str:
    return name if len(name) <= limit else "…" + name[-(limit - 1):]


def check_plot(check: CheckRecord, mpl: tuple[Any, Any]) -> str | None:
    """Per layer: the TCAV score bar with the random sets' (left) and the statistic's distributions (right).

    Left, as in the TCAV tutorials: the concept's score (the mean over its
    random counterparts, with their standard deviation) beside the random
    sets' own scores, a star over significant layers.  Right, box plots of
    what the test compares: the concept's statistic against each random set,
    and the null statistics of the random sets.
    """
    layers = check.results
    if not layers:
        return None
    null_name = null_words(check)[0]
    Figure, Canvas = mpl
    has_boxes = any(finite_values(r.concept_statistics) or finite_values(r.null_statistics) for r in layers)
    width = max(6.0, 2.2 + 1.5 * len(layers)) * (2 if has_boxes else 1)
    figure = Figure(figsize=(min(width, 13.0), 3.4), layout="constrained")
    axes = figure.subplots(1, 2 if has_boxes else 1, squeeze=False)[0]
    positions = list(range(len(layers)))
    names = [_short(str(r.layer)) for r in layers]

    ax = axes[0]
    concept = [number(r.score) or 0.0 for r in layers]
    concept_err = [(mean_sd(finite_values(r.concept_scores)) or (0.0, 0.0))[1] for r in layers]
    random_stats = [mean_sd(finite_values(r.null_scores)) for r in layers]
    offset = 0.2 if any(random_stats) else 0.0
    ax.bar([p - offset for p in positions], concept, width=0.38 if offset else 0.6, yerr=concept_err,
           color=CONCEPT_COLOUR, capsize=3, label=f"{check.concept}")
    if offset:
        ax.bar([p + offset for p in positions], [s[0] if s else 0.0 for s in random_stats], width=0.38,
               yerr=[s[1] if s else 0.0 for s in random_stats], color=RANDOM_COLOUR, capsize=3,
               label=null_name)
    for p, r, height, err in zip(positions, layers, concept, concept_err):
        if r.significant:
            ax.text(p - offset, min(height + err + 0.03, 1.08), "*", ha="center", va="bottom", fontsize=14)
    ax.set_ylim(0, 1.32)  # headroom for the stars and a legend above bars of 1.0
    ax.set_xticks(positions, names)
    ax.set_ylabel("TCAV score")
    ax.set_title("score per layer (* significant)", fontsize=10)
    ax.legend(fontsize=8, loc="upper center", ncols=2, framealpha=0.8)

    if has_boxes:
        ax = axes[1]
        data, where, colours = [], [], []
        for p, r in zip(positions, layers):
            for raw, shift, colour in ((r.concept_statistics, -0.2, CONCEPT_COLOUR),
                                       (r.null_statistics, 0.2, RANDOM_COLOUR)):
                values = finite_values(raw)
                if values:
                    data.append(values)
                    where.append(p + shift)
                    colours.append(colour)
        boxes = ax.boxplot(data, positions=where, widths=0.34, patch_artist=True, manage_ticks=False)
        for patch, colour in zip(boxes["boxes"], colours):
            patch.set_facecolor(colour)
            patch.set_alpha(0.85)
        for median in boxes["medians"]:
            median.set_color("#1a202c")
        ax.axhline(0.0, color="#718096", linewidth=0.8, linestyle=":")
        ax.set_xticks(positions, names)
        ax.set_xlim(-0.6, len(layers) - 0.4)
        ax.set_ylabel("statistic (mean cosine)")
        ax.set_title(f"concept vs null ({null_name}) statistics", fontsize=10)
        handles = [boxes["boxes"][colours.index(c)] for c in (CONCEPT_COLOUR, RANDOM_COLOUR) if c in colours]
        labels = [lab for c, lab in ((CONCEPT_COLOUR, "concept"), (RANDOM_COLOUR, "null")) if c in colours]
        ax.legend(handles, labels, fontsize=8, loc="best", framealpha=0.8)
    return _png(figure, Canvas)


def stability_plot(before: Mapping[str, SideLayer], after: Mapping[str, SideLayer],
                   mpl: tuple[Any, Any]) -> str | None:
    """Per layer, the baseline beside this run: TCAV scores (left), per-random-set statistics (right).

    The right panel shows the distributions a stability check compares (its
    two-sample test is on the per-random-set statistics); the left one the
    scores its absolute tolerance applies to.
    """
    layers = list(dict.fromkeys([*before, *after]))
    if not layers:
        return None
    Figure, Canvas = mpl
    sides = ((before, -0.2, BEFORE_COLOUR, "baseline (before)"), (after, 0.2, AFTER_COLOUR, "this run (after)"))
    has_boxes = any(finite_values(_statistics(side.get(name))) for side, *_ in sides for name in layers)
    width = max(5.0, 2.0 + 1.5 * len(layers)) * (2 if has_boxes else 1)
    figure = Figure(figsize=(min(width, 13.0), 3.2), layout="constrained")
    axes = figure.subplots(1, 2 if has_boxes else 1, squeeze=False)[0]
    positions = list(range(len(layers)))
    names = [_short(n) for n in layers]
    ax = axes[0]
    for side, shift, colour, label in sides:
        heights = [number(_score(side.get(name))) for name in layers]
        errors = [(mean_sd(finite_values(_scores(side.get(name)))) or (0.0, 0.0))[1] for name in layers]
        ax.bar([p + shift for p in positions], [h if h is not None else 0.0 for h in heights], width=0.38,
               yerr=errors, color=colour, capsize=3, label=label)
    ax.set_xticks(positions, names)
    ax.set_ylim(0, 1.32)  # headroom for the stars and a legend above bars of 1.0
    ax.set_ylabel("TCAV score")
    ax.set_title("score: baseline vs this run", fontsize=10)
    ax.legend(fontsize=8, loc="upper center", ncols=2, framealpha=0.8)
    if has_boxes:
        ax = axes[1]
        for side, shift, colour, label in sides:
            data, where = [], []
            for p, name in zip(positions, layers):
                values = finite_values(_statistics(side.get(name)))
                if values:
                    data.append(values)
                    where.append(p + shift)
            if data:
                boxes = ax.boxplot(data, positions=where, widths=0.34, patch_artist=True, manage_ticks=False)
                for patch in boxes["boxes"]:
                    patch.set_facecolor(colour)
                    patch.set_alpha(0.85)
                for median in boxes["medians"]:
                    median.set_color("#1a202c")
                boxes["boxes"][0].set_label(label)
        ax.set_xticks(positions, names)
        ax.set_xlim(-0.6, len(layers) - 0.4)
        ax.set_ylabel("statistic per random set")
        ax.set_title("what the two-sample test compares", fontsize=10)
        ax.legend(fontsize=8, loc="best", framealpha=0.8)
    return _png(figure, Canvas)


def _score(side: SideLayer | None) -> Any:
    return side.score if side is not None else None


def _scores(side: SideLayer | None) -> Any:
    return side.concept_scores if side is not None else None


def _statistics(side: SideLayer | None) -> Any:
    return side.concept_statistics if side is not None else None
