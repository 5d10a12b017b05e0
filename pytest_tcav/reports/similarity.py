"""The report page's concept similarity: cosines between the concepts' mean CAVs, layer by layer.

Two concepts whose CAVs point the same way at a layer are one direction there:
the model's activations do not tell them apart, and a relative test
(``against=``) of one against the other cannot separate them.  For the checks
of one run that tested the same model (the same model fingerprint) at the same
layer, the page shows a small matrix of the cosines between their concepts'
mean CAVs (:func:`~pytest_tcav.engine.results.concept_cosine`), and a sentence
for each pair at or above :data:`HIGH`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

from pytest_tcav.checks.records import CheckRecord
from pytest_tcav.engine.results import LayerResult, concept_cosine

#: A cosine from which two concepts are called one direction at the layer.
HIGH = 0.8
#: The most concepts one matrix shows (the first ones in the report's order).
MATRIX_CAP = 12


def _esc(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


@dataclass(frozen=True)
class LayerGroup:
    """The concepts measured at one layer of one model in a run, each with its layer result (first check wins)."""

    layer: str
    model: str
    concepts: list[tuple[str, LayerResult]]

    def cosines(self) -> list[list[float | None]]:
        results = [r for _, r in self.concepts]
        return [[concept_cosine(a, b) for b in results] for a in results]

    def high_pairs(self, threshold: float = HIGH) -> list[tuple[str, str, float]]:
        matrix = self.cosines()
        names = [name for name, _ in self.concepts]
        pairs = [(names[i], names[j], value) for i in range(len(names)) for j in range(i + 1, len(names))
                 if (value := matrix[i][j]) is not None and value >= threshold]
        return sorted(pairs, key=lambda p: -p[2])


def layer_groups(records: Sequence[CheckRecord]) -> list[LayerGroup]:
    """Per (model, layer) in the order first met: the distinct concepts with a mean CAV, when two or more."""
    groups: dict[tuple[str, str], dict[str, LayerResult]] = {}
    for record in records:
        for result in record.results:
            if not result.cav_direction:
                continue
            key = (record.model_fingerprint or "", str(result.layer))
            groups.setdefault(key, {}).setdefault(str(record.concept), result)
    return [LayerGroup(layer=layer, model=model, concepts=list(concepts.items())[:MATRIX_CAP])
            for (model, layer), concepts in groups.items() if len(concepts) >= 2]


def _cell(value: float | None) -> str:
    if value is None:
        return '<td class="num">n/a</td>'
    level = min(4, int(abs(value) * 5))  # 0..4: how strongly the two point the same (or opposite) way
    sign = "pos" if value >= 0 else "neg"
    return f'<td class="num sim {sign}{level}">{value:+.2f}</td>'


def matrix_table(group: LayerGroup) -> str:
    names = [name for name, _ in group.concepts]
    head = "<th></th>" + "".join(f"<th>{_esc(n)}</th>" for n in names)
    rows = "".join(f"<tr><th>{_esc(name)}</th>" + "".join(_cell(v) for v in row) + "</tr>"
                   for name, row in zip(names, group.cosines()))
    return (f'<div class="scroll"><table class="similarity"><thead><tr>{head}</tr></thead>'
            f"<tbody>{rows}</tbody></table></div>")


def sentence(first: str, second: str, layer: str, value: float) -> str:
    return (f"<b>{_esc(first)}</b> and <b>{_esc(second)}</b> are one direction on <b>{_esc(layer)}</b> "
            f"({value:.2f}): a relative test cannot separate them there.")


def similarity_section(records: Sequence[CheckRecord]) -> str:
    """The page's concept similarity section; empty when no layer of a model has two concepts with a mean CAV."""
    groups = layer_groups(records)
    if not groups:
        return ""
    several_models = len({g.model for g in groups}) > 1
    parts = ['<section id="similarity"><h2>Concept similarity</h2>',
             "<p>Cosine between the concepts' mean CAVs at each layer, for the checks of one model (1: the same "
             "direction; 0: unrelated). A relative test cannot separate concepts that are one direction.</p>"]
    for group in groups:
        title = _esc(group.layer)
        if several_models and group.model:
            title += f' <span class="meta">(model {_esc(group.model[:12])})</span>'
        parts.append(f'<div class="sim-layer"><h3>{title}</h3>{matrix_table(group)}')
        pairs = group.high_pairs()
        if pairs:
            parts.append("<ul>" + "".join(f"<li>{sentence(a, b, group.layer, v)}</li>" for a, b, v in pairs)
                         + "</ul>")
        parts.append("</div>")
    parts.append("</section>")
    return "".join(parts)
