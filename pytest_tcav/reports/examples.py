"""The report page's examples: thumbnails of images, the sentences of text, the identities of the rest.

A check's result names its examples (:class:`~pytest_tcav.engine.results.ExampleIds`:
a file's path relative to its library or inputs folder, ``FILE:LINE`` with its
sentence for a line of a text file, ``#k`` for a tensor's example k).  What a
reviewer of a failed check asks next is which examples those were: this
module turns the per-layer evidence (the inputs most and least along the
concept, the suspect examples) into strips a person can look at.

Images are found from their ids under the run's ``tcav_concepts`` and
``tcav_inputs`` folders (the report's settings ``concepts`` and ``inputs``),
only inside them, and drawn as small thumbnails (:data:`THUMB_SIZE` pixels, PNG
or JPEG, whichever is smaller) embedded as ``data:`` URIs, so the page stays
self-contained.  A file that is gone when the page is rendered (a report
rendered elsewhere, later) is shown by its id alone.  The page's thumbnails
share a byte budget (:data:`THUMB_BUDGET`): past it, ids only, and the page
says so; each strip shows at most :data:`STRIP_CAP` examples.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from html import escape
from pathlib import Path
from typing import Any

from pytest_tcav.engine.results import ExampleIds, LayerResult

#: Thumbnail edge in pixels (images are shrunk to fit, never enlarged; the page shows them in a box this size).
THUMB_SIZE = 56
#: The most examples one strip shows (the rest are counted).
STRIP_CAP = 6
#: The most concept examples shown at the top of a check's examples.
CONCEPT_CAP = 12
#: Bytes of thumbnails one page may hold (base64 text); past it examples are shown by id.
THUMB_BUDGET = 2_000_000
#: The longest sentence shown in full (longer ones are cut, the whole one in the tooltip).
SENTENCE_CAP = 160
#: File suffixes drawn as images.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")


def _esc(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


def is_image_id(example_id: str) -> bool:
    return example_id.lower().endswith(IMAGE_SUFFIXES)


def encode_thumbnail(path: Path, size: int = THUMB_SIZE) -> str | None:
    """A ``data:`` URI of the image at ``path`` shrunk to fit ``size`` pixels; None when it cannot be read.

    Both PNG and JPEG are made and the smaller kept: PNG wins for the small,
    flat images of synthetic data sets, JPEG for photographs.  No metadata is
    written, so the same file gives the same bytes.
    """
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.load()
            picture = image.convert("RGBA" if image.mode in ("RGBA", "LA", "P") else "RGB")
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    picture.thumbnail((size, size))
    if picture.mode == "RGBA":  # JPEG has no alpha: flatten on white
        background = Image.new("RGB", picture.size, (255, 255, 255))
        background.paste(picture, mask=picture.getchannel("A"))
        picture = background
    png, jpeg = io.BytesIO(), io.BytesIO()
    picture.save(png, format="PNG", optimize=True)
    picture.save(jpeg, format="JPEG", quality=80)
    kind, data = min((("png", png.getvalue()), ("jpeg", jpeg.getvalue())), key=lambda item: len(item[1]))
    return f"data:image/{kind};base64," + base64.b64encode(data).decode("ascii")


@dataclass
class Thumbnails:
    """The page's thumbnails: ids resolved under the run's folders, each file encoded once, a byte budget.

    ``concepts`` and ``inputs`` are the run's library and inputs folders (None:
    unknown).  A concept or random example's id is looked up in ``concepts``, an
    input's in ``inputs``; the path must stay inside the folder.
    """

    concepts: Path | None = None
    inputs: Path | None = None
    budget: int = THUMB_BUDGET
    used: int = 0
    #: examples shown by id because the budget was spent
    over_budget: int = 0
    _made: dict[Path, str | None] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any], budget: int | None = None) -> Thumbnails:
        def folder(key: str) -> Path | None:
            value = settings.get(key)
            return Path(value) if isinstance(value, str) and value else None

        return cls(concepts=folder("concepts"), inputs=folder("inputs"),
                   budget=THUMB_BUDGET if budget is None else budget)

    def path(self, example_id: str, *, input_: bool) -> Path | None:
        """The image file of an example id, when it is one and is there."""
        if not is_image_id(example_id):
            return None
        root = self.inputs if input_ else self.concepts
        if root is None:
            return None
        parts = Path(example_id).parts
        if Path(example_id).is_absolute() or ".." in parts or not parts:
            return None
        candidate = root / example_id
        try:
            if not candidate.is_file():
                return None
        except OSError:
            return None
        return candidate

    def uri(self, example_id: str, *, input_: bool) -> str | None:
        path = self.path(example_id, input_=input_)
        if path is None:
            return None
        if path in self._made:
            made = self._made[path]
            if made is not None:
                self.used += len(made)
            return made
        if self.used >= self.budget:
            self.over_budget += 1
            return None
        made = encode_thumbnail(path)
        self._made[path] = made
        if made is not None:
            self.used += len(made)
        return made


# -- one example -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Shown:
    """One example as a strip shows it: its id, its sentence (text), whether it is an input, its numbers."""

    id: str
    text: str | None = None
    input: bool = False
    #: its numbers, one short line each
    notes: tuple[str, ...] = ()
    #: what a thumbnail's caption calls it (default: the end of its id)
    label: str | None = None


def _at(values: Sequence[Any], k: int) -> Any:
    return values[k] if 0 <= k < len(values) else None


def _label(text: str) -> str:
    """The end of a name, short enough to sit under a thumbnail."""
    return text if len(text) <= 14 else "…" + text[-13:]


def _item(example: Shown, thumbnails: Thumbnails) -> str:
    note = "".join(f'<span class="ex-note">{_esc(line)}</span>' for line in example.notes)
    if example.text is not None:
        sentence = example.text if len(example.text) <= SENTENCE_CAP else example.text[:SENTENCE_CAP - 1] + "…"
        return (f'<li class="ex-text" title="{_esc(example.id)}"><q>{_esc(sentence)}</q> '
                f'<span class="ex-id">{_esc(example.id)}</span>{note}</li>')
    uri = thumbnails.uri(example.id, input_=example.input)
    if uri is not None:
        return (f'<li class="ex-thumb" title="{_esc(example.id)}"><img alt="{_esc(example.id)}" src="{uri}" '
                f'width="{THUMB_SIZE}" height="{THUMB_SIZE}"><span class="ex-id">'
                f"{_esc(_label(example.label or example.id.rsplit('/', 1)[-1]))}</span>"
                f"{note}</li>")
    return f'<li class="ex-plain" title="{_esc(example.id)}"><span class="ex-id">{_esc(example.id)}</span>{note}</li>'


def strip(title: str, examples: Sequence[Shown], thumbnails: Thumbnails, *, total: int | None = None,
          cap: int = STRIP_CAP) -> str:
    """A titled row of examples (at most ``cap``; ``total``: how many there were, when more)."""
    if not examples:
        return ""
    shown = list(examples)[:cap]
    total = len(examples) if total is None else total
    more = f' <span class="ex-more">({len(shown)} of {total})</span>' if total > len(shown) else ""
    items = "".join(_item(e, thumbnails) for e in shown)
    kind = "ex-sentences" if shown[0].text is not None else "ex-strip"
    return f'<div class="examples"><p class="ex-title">{title}{more}</p><ul class="{kind}">{items}</ul></div>'


# -- a check's examples ----------------------------------------------------------------------


def _concept_examples(ids: ExampleIds) -> list[Shown]:
    return [Shown(id=i, text=_at(ids.concept_texts, k)) for k, i in enumerate(ids.concept)]


def _finite(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value) else None


#: Inputs whose cosines all lie within this of each other are not ranked (see :func:`same_cosine`).
TIE = 5e-4


def same_cosine(layer: LayerResult) -> float | None:
    """The cosine every input shares at this layer (within :data:`TIE`), or None when they differ.

    A layer followed only by linear operations to the target (global pooling,
    then a linear classifier) gives every input the same gradient: there no
    input stands out, and a ranking would be noise.
    """
    cosines = [c for c in (_finite(v) for v in layer.input_cosines) if c is not None]
    if len(cosines) < 2 or max(cosines) - min(cosines) > TIE:
        return None
    return sum(cosines) / len(cosines)


def ranked_inputs(ids: ExampleIds, layer: LayerResult) -> tuple[list[Shown], list[Shown]]:
    """The inputs most and least along the concept at a layer, by their mean cosine with its CAVs.

    Each carries its numbers: the share of the concept's CAVs its target
    gradient points along, and the mean cosine.  The two lists do not overlap.
    """
    cosines = [_finite(c) for c in layer.input_cosines]
    order = sorted((k for k, c in enumerate(cosines) if c is not None and k < len(ids.inputs)),
                   key=lambda k: (-(cosines[k] or 0.0), k))

    def shown(k: int) -> Shown:
        share = _finite(_at(layer.input_shares, k))
        notes = (f"cos {cosines[k]:+.3f}", *((f"share {share:.2f}",) if share is not None else ()))
        return Shown(id=ids.inputs[k], text=_at(ids.input_texts, k), input=True, notes=notes)

    half = len(order) // 2
    cap = min(STRIP_CAP, half)
    top = [shown(k) for k in order[:cap]]
    bottom = [shown(k) for k in reversed(order[len(order) - cap:])] if cap else []
    return top, bottom


def _suspect(ids: ExampleIds | None, suspect: Mapping[str, Any]) -> Shown:
    kind = suspect.get("kind")
    raw_index, raw_set = suspect.get("index"), suspect.get("set_index")
    index = raw_index if isinstance(raw_index, int) else -1
    set_index = raw_set if isinstance(raw_set, int) else 0
    text = None
    if ids is not None:
        if kind == "concept":
            text = _at(ids.concept_texts, index)
        else:
            text = _at(_at(ids.random_texts, set_index - 1) or [], index)
    score = _finite(suspect.get("score"))
    held = suspect.get("held_out")
    notes = (*((f"score {score:.2f}",) if score is not None else ()),
             *((f"of {held} CAVs",) if isinstance(held, int) else ()))
    example_id = str(suspect.get("id") or f"{suspect.get('set', '?')}#{index}")
    # a random example's caption names its set: random_3/009.png, not 009.png
    label = example_id if kind == "concept" else "/".join(example_id.split("/")[-2:])
    return Shown(id=example_id, text=text, notes=notes, label=label)


def suspect_lists(ids: ExampleIds | None, layer: LayerResult) -> tuple[list[Shown], list[Shown]]:
    """The layer's suspects: concept examples that look random, random examples that look like the concept.

    An example of a random pool may sit in several random sets: it is shown
    once, with its highest score and the number of sets that flagged it.
    """
    suspects = [s for s in layer.suspects if isinstance(s, Mapping)]
    concept = [_suspect(ids, s) for s in suspects if s.get("kind") == "concept"]
    random: dict[str, tuple[Shown, int]] = {}
    for s in suspects:
        if s.get("kind") == "concept":
            continue
        shown = _suspect(ids, s)
        first, count = random.get(shown.id, (shown, 0))
        random[shown.id] = (first, count + 1)
    return concept, [first if count == 1 else replace(first, notes=(*first.notes, f"in {count} random sets"))
                     for first, count in random.values()]


def examples_html(ids: ExampleIds | None, results: Sequence[LayerResult], thumbnails: Thumbnails,
                  concept: str) -> str:
    """A check's examples: its concept examples, then per layer the inputs at both ends and the suspects."""
    parts = []
    if ids is not None and ids.concept:
        parts.append(strip(f"Concept examples of <b>{_esc(concept)}</b>", _concept_examples(ids), thumbnails,
                           cap=CONCEPT_CAP))
    for layer in results:
        blocks = []
        tie = same_cosine(layer)
        if ids is not None and ids.inputs and tie is not None:
            blocks.append(f'<p class="ex-title">Every input has the same cosine with the concept\'s CAVs here '
                          f"({tie:+.3f}): their target gradients point the same way at this layer, so no input "
                          "stands out.</p>")
        elif ids is not None and ids.inputs and layer.input_cosines:
            top, bottom = ranked_inputs(ids, layer)
            blocks.append(strip("Inputs most along the concept", top, thumbnails, total=len(ids.inputs)))
            blocks.append(strip("Inputs least along the concept", bottom, thumbnails, total=len(ids.inputs)))
        concept_like, random_like = suspect_lists(ids, layer)
        blocks.append(strip("Suspect: concept examples that look random", concept_like, thumbnails))
        blocks.append(strip("Suspect: random examples that look like the concept", random_like, thumbnails))
        blocks = [b for b in blocks if b]
        if blocks:
            parts.append(f'<div class="ex-layer"><p class="ex-layer-name">{_esc(layer.layer)}</p>'
                         + "".join(blocks) + "</div>")
    if not parts:
        return ""
    return ('<h3>Examples</h3><p class="ex-help">Inputs are ranked by the mean cosine of their target gradient '
            "with the concept's CAVs (share: the fraction of CAVs it points along). A suspect's score is the share "
            "of the concept's CAVs that held it out and still put it on the other side.</p>" + "".join(parts))
