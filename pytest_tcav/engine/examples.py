"""Example sets: concepts, random counterparts and inputs, as tensors with a fingerprint.

Everything the engine consumes is first turned into CPU tensors of examples: one
tensor, a tuple of tensors or a mapping of them (:mod:`.structure`).
Concept sets are small (tens to hundreds of examples), so holding them is cheap,
and a tensor can be fingerprinted by content: the fingerprint, not the name,
identifies a set in caches and seeds, so renaming a folder changes nothing and
changing one image changes everything that depends on it.
"""

from __future__ import annotations

import functools
import os
import re
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from pytest_tcav.engine import batches
from pytest_tcav.engine.batches import Examples
from pytest_tcav.errors import ConceptDataError, ConfigurationError, TCAVDataWarning, TCAVError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")
RANDOM_SET_PATTERN = re.compile(r"^random(500)?_.+$")

Transform = Callable[[Any], torch.Tensor]


@dataclass(frozen=True, eq=False)
class Concept:
    """A named set of examples (a concept, a random counterpart or a set of inputs).

    ``examples`` is a tensor whose first dimension indexes examples, or a tuple
    (``model(*parts)``) or mapping (``model(**batch)``) of such tensors, all of
    one length.  The name is for people; identity is the content
    :attr:`fingerprint`.  The hashes are computed on first use and kept on the
    object, since the same sets are keyed and checked by test after test.
    """

    name: str
    examples: Examples
    source: str = ""
    #: Per example, what people call it (a file path relative to its library or folder, ``file.txt:LINE``
    #: for a line of text); None: the examples have no names (tensors), reports use their index.  Neither
    #: this nor ``texts`` enters the fingerprint: they name the examples, the content identifies them.
    ids: tuple[str, ...] | None = None
    #: Per example of a text set, its sentence (None for anything but text).
    texts: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.examples, torch.Tensor):
            if self.examples.dim() < 1 or self.examples.shape[0] == 0:
                raise ConceptDataError(f"concept {self.name!r} has no examples ({self.source or 'tensor'})")
            self._check_labels()
            return  # kept as given: a plain tensor is what it always was
        if not isinstance(self.examples, (tuple, list, Mapping)):
            raise ConceptDataError(f"concept {self.name!r}: examples must be a tensor, a tuple of tensors "
                                   f"or a mapping of names to tensors, got {type(self.examples).__name__}")
        object.__setattr__(self, "examples", batches.as_examples(self.examples, f"concept {self.name!r}"))
        self._check_labels()

    def _check_labels(self) -> None:
        for what in ("ids", "texts"):
            labels = getattr(self, what)
            if labels is not None:
                object.__setattr__(self, what, tuple(str(v) for v in labels))
                if len(labels) != len(self):
                    raise ValueError(f"concept {self.name!r}: {len(labels)} {what} for {len(self)} examples")

    def example_id(self, k: int) -> str:
        """What reports call example ``k``: its id, else ``#k`` (its index in the set)."""
        return self.ids[k] if self.ids is not None else f"#{k}"

    def example_ids(self) -> list[str]:
        return [self.example_id(k) for k in range(len(self))]

    @functools.cached_property
    def fingerprint(self) -> str:
        return batches.fingerprint(self.examples)

    @functools.cached_property
    def example_digests(self) -> frozenset[bytes]:
        """One content hash per distinct example, to find the examples two sets share."""
        return batches.example_digests(self.examples)

    def __len__(self) -> int:
        return batches.length(self.examples)

    def __repr__(self) -> str:
        if isinstance(self.examples, torch.Tensor):
            return f"Concept({self.name!r}, n={len(self)}, shape={tuple(self.examples.shape[1:])})"
        return f"Concept({self.name!r}, n={len(self)}, {batches.describe(self.examples)})"


def warm_hashes(sets: Sequence[Concept]) -> None:
    """Compute the sets' content hashes (fingerprint, example digests) in threads, all at once.

    A check hashes every example twice before the model runs (its fingerprint
    for the cache keys, one digest per example for the duplicate checks):
    0.7 s for 21 sets of 30 images at 224 px here.  hashlib releases the GIL on
    large buffers, so threads share the cores; ``functools.cached_property``
    would compute them one after another (it locks, before Python 3.12), so
    the values are put where it keeps them.
    """
    hashes = (("fingerprint", batches.fingerprint), ("example_digests", batches.example_digests))
    todo = [(s, name, compute) for s in sets for name, compute in hashes if name not in s.__dict__]
    workers = min(len(todo), os.cpu_count() or 1)
    if workers < 2:
        return
    from concurrent.futures import ThreadPoolExecutor

    def attempt(item: tuple[Concept, str, Callable[[Examples], Any]]) -> Any:
        try:
            return item[2](item[0].examples)
        except Exception:  # left to the checks that follow, which say what is wrong in their own words
            return None

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tcav-hash") as pool:
        values = list(pool.map(attempt, todo))
    for (s, name, _), value in zip(todo, values):
        if value is not None:
            s.__dict__.setdefault(name, value)


def default_image_transform(image: Any) -> torch.Tensor:
    """RGB image to a float tensor in [0, 1], channels first."""
    array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


#: What :func:`load_image_folder` does with a file that has an image suffix but cannot be decoded.
BAD_IMAGE_POLICIES = ("warn", "error")


def list_image_files(folder: Path) -> list[Path]:
    """The files of a folder that count as images: by suffix (any case), hidden files excluded.

    Hidden files (``.DS_Store``, macOS ``._name.png`` resource forks) are
    never data, so they are not even reported; other non-image files (notes,
    labels) are ignored the same way.
    """
    return sorted(
        p for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
    )


def _decoded(file: Path) -> Any:
    """The image in ``file``, fully decoded (so truncated data fails here, not in the transform)."""
    from PIL import Image

    img = Image.open(file)
    try:
        img.load()
    except BaseException:
        img.close()
        raise
    return img


def _callable_name(function: Any) -> str:
    return str(getattr(function, "__qualname__", None) or getattr(function, "name", None) or repr(function))


def load_image_folder(
    folder: str | os.PathLike[str],
    transform: Transform | None = None,
    *,
    name: str | None = None,
    on_bad_file: str = "warn",
    role: str = "concept",
    id_root: str | os.PathLike[str] | None = None,
) -> Concept:
    """Load every image file of a folder (sorted by file name) into a :class:`Concept`.

    Each example's id is its file's path relative to ``id_root`` (a library's
    root: ``striped/a.png``), or to the folder itself (``a.png``).

    The rule for bad files: a file with an image suffix that cannot be decoded
    (not an image, truncated, unsupported) is skipped with a
    :class:`~pytest_tcav.errors.TCAVDataWarning` naming it (``on_bad_file="warn"``,
    the default) or fails the load (``"error"``, the ini key ``tcav_on_bad_image``);
    a folder left with no readable image always fails.  A transform that fails
    or returns something other than a tensor always fails, naming the file:
    that is a bug to fix, not a file to skip.  ``role`` ("concept", "input",
    "random") only names the folder in messages.
    """
    from PIL import UnidentifiedImageError

    if on_bad_file not in BAD_IMAGE_POLICIES:
        raise ConfigurationError(f"on_bad_file must be one of {BAD_IMAGE_POLICIES}, got {on_bad_file!r}")
    path = Path(folder)
    label = name or path.name
    if not path.exists():
        raise ConceptDataError(f"{role} folder {str(path)!r} does not exist; check the path and its spelling")
    if not path.is_dir():
        raise ConceptDataError(f"{role} path {str(path)!r} is not a folder; give a folder of images")
    files = list_image_files(path)
    if not files:
        raise ConceptDataError(
            f"{role} folder {str(path)!r} contains no image files "
            f"(looked for {', '.join(IMAGE_SUFFIXES)}); add images or point to the right folder"
        )
    tf = transform or default_image_transform
    tensors: list[torch.Tensor] = []
    ids: list[str] = []  # each file relative to id_root (the library's root), else to the folder
    root = Path(id_root) if id_root is not None else path
    shapes: dict[tuple[int, ...], str] = {}  # first file of each shape, to name in an error
    bad: list[str] = []
    for file in files:
        try:
            img = _decoded(file)
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            if on_bad_file == "error":
                raise ConceptDataError(
                    f"cannot read image {str(file)!r} ({type(exc).__name__}: {exc}); remove or "
                    "replace the file, or set tcav_on_bad_image = warn (on_bad_file='warn') to skip unreadable files"
                ) from None  # the decoder's frames say nothing the message does not
            bad.append(f"{file.name} ({type(exc).__name__})")
            continue
        with img:
            try:  # decoding errors were handled above: anything raised here is the transform's
                tensor = tf(img)
            except TCAVError:
                raise
            except Exception as exc:
                raise ConceptDataError(
                    f"the transform {_callable_name(tf)} failed on {str(file)!r}: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
        if not isinstance(tensor, torch.Tensor):
            raise ConceptDataError(
                f"the transform returned {type(tensor).__name__} for {str(file)!r}, expected a tensor"
            )
        shapes.setdefault(tuple(tensor.shape), file.name)
        tensors.append(tensor)
        ids.append(file.relative_to(root).as_posix() if file.is_relative_to(root) else file.name)
    if bad:
        warnings.warn(
            f"skipped {len(bad)} unreadable file(s) in {role} folder {str(path)!r}: {', '.join(bad[:5])}"
            + (" ..." if len(bad) > 5 else "")
            + "; remove or replace them (tcav_on_bad_image = error, or on_bad_file='error', makes this an error)",
            TCAVDataWarning,
            stacklevel=2,
        )
    if not tensors:
        raise ConceptDataError(
            f"no readable image in {role} folder {str(path)!r} (skipped: {', '.join(bad[:5])}"
            + (" ..." if len(bad) > 5 else "") + ")"
        )
    if len(shapes) > 1:
        examples = ", ".join(f"{file} is {shape}" for shape, file in list(shapes.items())[:4])
        raise ConceptDataError(
            f"images in {str(path)!r} have different sizes or modes after loading ({examples}); "
            "configure a transform that resizes them to one size (tcav_transform)"
        )
    return Concept(label, torch.stack(tensors), source=str(path), ids=tuple(ids))


ConceptLike = (Concept | torch.Tensor | str | os.PathLike | Dataset | DataLoader | Sequence[torch.Tensor]
               | Mapping[str, torch.Tensor])


def _from_iterable_batches(loader: Iterable[Any], label: str) -> Examples:
    chunks: list[Examples] = []
    for batch in loader:
        if not isinstance(batch, (torch.Tensor, tuple, list, Mapping)):
            raise ConceptDataError(f"{label}: batches must be tensors, tuples or mappings of tensors, "
                                   f"got {type(batch).__name__}")
        chunk = batches.as_examples(batch, label)
        if chunks and batches.layout(chunk) != batches.layout(chunks[0]):
            raise ConceptDataError(f"{label}: the data loader's batches change structure "
                                   f"({batches.describe(chunks[0])}, then {batches.describe(chunk)})")
        chunks.append(chunk)
    if not chunks:
        raise ConceptDataError(f"{label}: the data loader yielded no examples")
    return batches.concat(chunks)


def as_concept(
    value: ConceptLike,
    *,
    name: str | None = None,
    transform: Transform | None = None,
    role: str = "concept",
) -> Concept:
    """Turn a tensor, a tuple or mapping of tensors, a folder, a Dataset or a DataLoader into a :class:`Concept`.

    The rule for structures: a tensor is ``model(x)``; a tuple or list of
    tensors is ``model(*parts)``; a mapping (a tokenizer's ``BatchEncoding``)
    is ``model(**batch)``.  A Dataset's items and a DataLoader's batches
    follow the same rule, every part included: a ``(x, label)`` item gives
    the model two arguments, so give a set of inputs alone (e.g.
    ``TensorDataset(x)``), never one with labels.  ``role`` ("concept",
    "input", "random") names a folder in error messages.
    """
    if isinstance(value, Concept):
        return value
    if isinstance(value, torch.Tensor):
        return Concept(name or "tensor", value.detach().cpu())
    if isinstance(value, (str, os.PathLike)):
        return load_image_folder(value, transform, name=name, role=role)
    if isinstance(value, DataLoader):
        return Concept(name or "dataloader", _from_iterable_batches(value, name or "dataloader"))
    if isinstance(value, Dataset):
        label = name or "dataset"
        items = [value[i] for i in range(len(value))]  # type: ignore[arg-type]
        if not items:
            raise ConceptDataError(f"{label}: the dataset is empty")
        return Concept(label, batches.stack(items, label))
    if isinstance(value, Mapping):
        return Concept(name or "mapping", batches.as_examples(value, name or "mapping"))
    if isinstance(value, (tuple, list)) and value and all(isinstance(v, torch.Tensor) for v in value):
        return Concept(name or "tensors", batches.as_examples(value, name or "tensors"))
    raise ConceptDataError(
        f"cannot make a concept from {type(value).__name__}; give a tensor, a tuple or mapping of tensors, "
        "a folder, a Dataset, a DataLoader or a Concept"
    )


def sample_random_sets(
    pool: Concept, n_sets: int, set_size: int, seed: int
) -> list[Concept]:
    """Draw ``n_sets`` random sets of ``set_size`` examples from one pool, seeded.

    Each set is drawn without replacement; different sets may share examples,
    as independent draws from the same distribution do.  An example keeps its
    pool id (``NAME#i``, its index in the pool, when the pool has none).
    """
    if n_sets < 1:
        raise ConfigurationError(f"the number of random sets must be positive, got {n_sets}")
    if set_size > len(pool):
        raise ConceptDataError(
            f"random pool {pool.name!r} has {len(pool)} examples, fewer than the {set_size} "
            "needed per random set"
        )
    gen = torch.Generator().manual_seed(int(seed))
    sets = []
    for k in range(n_sets):
        index = torch.randperm(len(pool), generator=gen)[:set_size].sort().values
        ids = tuple(pool.ids[i] if pool.ids is not None else f"{pool.name}#{i}" for i in index.tolist())
        texts = None if pool.texts is None else tuple(pool.texts[i] for i in index.tolist())
        sets.append(Concept(f"{pool.name}[{k}]", batches.take(pool.examples, index), source=pool.source, ids=ids,
                            texts=texts))
    return sets
