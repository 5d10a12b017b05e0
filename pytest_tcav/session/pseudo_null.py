"""Pseudo-concepts: where they come from, and the stored null they make (``tcav_null = pseudo``).

A pseudo-concept is a set of random data the tests do not use, of the concept's
size: a concept that, by construction, the model does not rely on more than on
any random set.  Tested against the library's random sets exactly as a concept
is, they give two things from the same passes: the conditional null a
``null="pseudo"`` verdict is judged against
(:mod:`pytest_tcav.engine.conditional_null`), and the false-positive rate of the
``random`` null on this library (``pytest-tcav calibrate``,
:mod:`pytest_tcav.checks.pseudo_concepts`).

The data must be random images the tests do not use: ``random_*`` folders
beyond the ``tcav_random_sets`` in use, a pool folder the explicit sets leave
unused, or, when the tests draw their sets from the pool, the pool's images that
none of the drawn sets contains.

Kept: the measured null is written under the disk cache
(``<tcav_cache_dir>/pseudo_null/``), one file per (target, settings, concept
size, K, library, model, inputs), each layer stored as it is measured, so the
first check of a suite pays ``K`` pseudo-concept passes once and every later
check and run reads the file.  The file name is a hash of all of it: a changed
model, library or input set finds no file and measures again (the old file stays
until ``pytest-tcav cache clear``).
"""

from __future__ import annotations

import hashlib
import json
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from pytest_tcav.atomic_files import atomic_write_text
from pytest_tcav.engine import batches
from pytest_tcav.engine.conditional_null import PseudoLayer, PseudoNull
from pytest_tcav.engine.examples import Concept, list_image_files, sample_random_sets
from pytest_tcav.errors import ConceptDataError, ConfigurationError

if TYPE_CHECKING:
    from pytest_tcav.engine.spec import CheckSpec
    from pytest_tcav.engine.text_examples import Tokenizer
    from pytest_tcav.session.library import ConceptLibrary

#: Offset of the pseudo-concepts' seed from ``tcav_seed``, so that they are not the random sets' draws.
SEED_OFFSET = 7919
#: Where stored nulls live under the disk cache folder.
FOLDER = "pseudo_null"
#: The stored file's format; another value is read as missing.
FORMAT = 1


def identity_settings(spec: CheckSpec, n_random: int) -> dict[str, Any]:
    """What a pseudo-concept's numbers depend on besides target, data and fingerprints.

    ``spec`` is settled: a check's own ``method=``/``n_steps=``/``seed=`` win over the configuration,
    as they do in the check.
    """
    knobs = spec.engine
    method = knobs.method
    settings: dict[str, Any] = {"method": method, "n_steps": knobs.n_steps if method != "gradient" else None,
                                "seed": knobs.seed, "random_sets": n_random}
    # Settings at their defaults stay out, so calibrations stored before they existed stay valid.
    layer_point, pooling = knobs.layer_point, knobs.pooling
    if layer_point != "output":
        settings["layer_point"] = layer_point
    if pooling != "flatten":
        settings["pooling"] = pooling
    if knobs.layer_call is not None:
        settings["layer_call"] = knobs.layer_call
    return settings


def library_fingerprint(sets: Sequence[Concept]) -> str:
    return hashlib.sha256("\n".join(s.fingerprint for s in sets).encode()).hexdigest()


# -- the data of pseudo-concepts --------------------------------------------------------------


def default_concept_size(library: ConceptLibrary) -> int:
    """The median image count of the library's concept folders, else the random sets' size.

    Text concepts (``NAME.txt`` files) are not image folders: their random data are text, which the
    pseudo-concepts here (random images) do not stand for.
    """
    root = library.require_root()
    counts = [len(list_image_files(root / name)) for name in library.names() if (root / name).is_dir()]
    counts = [c for c in counts if c]
    if counts:
        return int(statistics.median(counts))
    explicit = library.random_set_names()
    if explicit:
        return len(list_image_files(root / explicit[0]))
    raise ConfigurationError("the concept library has no concept folders to take the concept size from; "
                             "give --concept-size")


@dataclass(frozen=True)
class SpareData:
    """Random data the tests do not use, and where they came from: images (or other tensors) as one set,
    text as its sentences."""

    examples: Concept | None
    source: str
    #: The sentences, for text (None: images or other data); pseudo-concepts are then drawn from these.
    texts: tuple[str, ...] | None = None

    def __len__(self) -> int:
        if self.texts is not None:
            return len(self.texts)
        assert self.examples is not None
        return len(self.examples)


def spare_data(library: ConceptLibrary, size: int, count: int, *, in_use: int, seed: int,
               kind: str | None = None, tokenizer: Tokenizer | None = None) -> SpareData:
    """The random data pseudo-concepts are drawn from; a clear error when the library has none.

    ``in_use``: how many random sets the checks use; ``seed``: the run's, with which they are drawn from a
    pool; ``kind``: the concept's (``"text"`` or ``"image"``; None: whatever random data the library has),
    since a library holding both compares a concept with random data of its own kind.  Text comes back as
    its sentences too (:attr:`SpareData.texts`): a text pseudo-concept is tokenized on its own, as a text
    concept is.
    """
    root = library.require_root()
    n = in_use
    explicit = library.random_set_names(kind)
    if kind is None and explicit:  # data of no stated kind: that of the random sets in use
        kind = library.kind_of(explicit[0])
    need = (f"at least {size} examples (one pseudo-concept of the concept size), better {count * size} "
            f"({count} pseudo-concepts that share no image)")
    if explicit:
        spare = explicit[n:]
        parts = [library.load(library.entry_path(name), name=name, tokenizer=tokenizer) for name in spare]
        pool = library.pool_name(kind)
        if pool is not None:  # explicit sets win: the tests never draw from the pool
            parts.append(library.load(library.entry_path(pool), name=pool, tokenizer=tokenizer))
            spare = [*spare, pool]
        shown = ", ".join(spare) if len(spare) <= 4 else f"{spare[0]} ... {spare[-1]}, {len(spare)} folders"
        where = f"the random folders beyond the {n} in use ({shown})" if spare else ""
        if not parts:
            raise ConceptDataError(
                f"no random data the tests do not use: the concept library {str(root)!r} has "
                f"{len(explicit)} random folder(s), and the tests use the first {n} (tcav_random_sets); add "
                f"folders random_{len(explicit)}, random_{len(explicit) + 1}, ... or a pool folder 'random' "
                f"with {need}, drawn from the same source as the random sets")
        if all(p.texts is not None for p in parts):
            texts = [t for p in parts for t in p.texts or ()]
            return _checked(SpareData(None, where, tuple(texts)), size, need)
        examples = batches.concat([p.examples for p in parts])
    else:
        pool = library.pool_name(kind)
        if pool is None:
            library.random_sets(n, kind=kind)  # raises: the library has no random data at all
            raise AssertionError("unreachable")
        pool_set = library.load(library.entry_path(pool), name=pool, tokenizer=tokenizer)
        used: set[bytes] = set()
        for s in sample_random_sets(pool_set, n, size, seed):
            used |= s.example_digests
        keep = [k for k in range(len(pool_set))
                if _digest(batches.take(pool_set.examples, slice(k, k + 1))) not in used]
        if not keep:
            raise ConceptDataError(
                f"no random data the tests do not use: the {n} random sets drawn from the pool "
                f"{str(root / pool)!r} ({len(pool_set)} images) use all of it; add {need} to the pool")
        examples = batches.take(pool_set.examples, torch.tensor(keep))
        where = f"the examples of the pool '{pool}' that the {n} random sets drawn from it leave unused"
        if pool_set.texts is not None:
            return _checked(SpareData(None, where, tuple(pool_set.texts[k] for k in keep)), size, need)
    return _checked(SpareData(Concept("spare", examples, source=where), where), size, need)


def _checked(spare: SpareData, size: int, need: str) -> SpareData:
    """``spare`` when it holds a pseudo-concept's worth of examples; else the error that says what to add."""
    have = len(spare)
    if have < size:
        raise ConceptDataError(
            f"too little random data the tests do not use for pseudo-concepts of {size} examples: "
            f"{spare.source} hold only {have} example(s); add {need}")
    return spare


def _digest(example: batches.Examples) -> bytes:
    """The content hash of a one-example set."""
    return next(iter(batches.example_digests(example)))


def draws(total: int, count: int, size: int, seed: int) -> list[list[int]]:
    """``count`` seeded draws of ``size`` indices below ``total``: disjoint when there is enough data, else
    overlapping (each its own permutation)."""
    gen = torch.Generator().manual_seed(int(seed) + SEED_OFFSET)
    if total >= count * size:
        order = torch.randperm(total, generator=gen)
        picks = [order[k * size:(k + 1) * size] for k in range(count)]
    else:
        picks = [torch.randperm(total, generator=gen)[:size] for _ in range(count)]
    return [p.sort().values.tolist() for p in picks]


def pseudo_concepts(spare: Concept, count: int, size: int, seed: int) -> list[Concept]:
    """``count`` seeded draws of ``size`` examples of ``spare`` (:func:`draws`)."""
    return [Concept(f"pseudo_{k}", batches.take(spare.examples, torch.tensor(p)), source="pseudo-concept")
            for k, p in enumerate(draws(len(spare), count, size, seed))]


# -- the stored null ----------------------------------------------------------------------------


@dataclass(frozen=True)
class NullIdentity:
    """What a stored null answers for: the file name is a hash of every field."""

    target: str
    settings: Mapping[str, Any]
    concept_size: int
    count: int
    library: str
    model: str
    inputs: str

    def key(self) -> str:
        text = json.dumps({"target": self.target, "settings": dict(self.settings), "size": self.concept_size,
                           "count": self.count, "library": self.library, "model": self.model,
                           "inputs": self.inputs}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()

    def path(self, cache_dir: Path) -> Path:
        return Path(cache_dir) / FOLDER / f"{self.key()[:32]}.json"


def load(cache_dir: Path, identity: NullIdentity) -> PseudoNull | None:
    """The stored null for ``identity`` (the layers measured so far); None when there is none or it is unreadable."""
    try:
        data = json.loads(identity.path(cache_dir).read_text())
        if data.get("format") != FORMAT or data.get("identity") != identity.key():
            return None
        digests = tuple(frozenset(bytes.fromhex(d) for d in member) for member in data["member_examples"])
        return PseudoNull({name: PseudoLayer.from_json(layer) for name, layer in data["layers"].items()},
                          tuple(str(m) for m in data["members"]), identity.key(), str(data["measured_at"]),
                          str(data["source"]), member_digests=digests)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def save(cache_dir: Path, identity: NullIdentity, null: PseudoNull) -> Path:
    """Write a null (atomically: a concurrent check reads the old file or the new one, never half of one)."""
    path = identity.path(cache_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"format": FORMAT, "identity": identity.key(), "target": identity.target,
            "settings": dict(identity.settings), "concept_size": identity.concept_size, "count": identity.count,
            "measured_at": null.measured_at, "source": null.source, "members": list(null.members),
            # each pseudo-concept's examples (content hashes, shortened): a concept is never judged against them
            "member_examples": [sorted(d.hex() for d in member) for member in null.member_digests],
            "layers": {name: layer.to_json() for name, layer in null.layers.items()}}
    return atomic_write_text(path, json.dumps(data, indent=1, sort_keys=True) + "\n")


def merged(old: PseudoNull | None, new: PseudoNull) -> PseudoNull:
    """``old``'s layers with ``new``'s added (same pseudo-concepts: the identity fixes them)."""
    if old is None:
        return new
    return PseudoNull({**old.layers, **new.layers}, new.members, new.fingerprint, new.measured_at, new.source,
                      member_digests=new.member_digests or old.member_digests)


def now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "")
