"""Concept and input libraries: the folders a concept test names its data by.

The layout is the one users already have from tensorflow/tcav and the Captum
tutorial::

    concepts/                      # tcav_concepts
        striped/  *.png            # one folder of images per concept
        dotted/   *.png
        random_0/ ... random_9/    # explicit random counterparts (random_* or random500_*)
        random/                    # ... or one pool that random sets are drawn from
    inputs/                        # tcav_inputs
        340/      *.png            # inputs of a target, by class index
        zebra/    *.png            # ... or by a class name mapped in tcav_classes

An entry may hold text instead of images: a ``NAME.txt`` file or a folder of
``.txt`` files, one example per line (``pytest_tcav.engine.text_examples``), made into
model inputs by the tokenizer (``tcav_tokenizer`` or ``tokenizer=``)::

    concepts/
        positive_adjectives.txt    # one example per line
        negations/ *.txt           # every line of every .txt file, files sorted
        random.txt                 # a text pool (or random_0.txt, random_1.txt, ...)
    inputs/
        positive.txt               # inputs of a target, by class name or index

A library may hold both kinds: a text concept is compared with the text
random sets (or pool) and an image concept with the image ones.  A name that
is both a folder and a ``.txt`` file is an error rather than a guess.

Entries are read once per run and kept as loaded tensors: a concept named by
ten tests is decoded (or tokenized) once, and its content fingerprint (what
the engine's cache keys on) is computed once.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from difflib import get_close_matches
from pathlib import Path
from typing import Any

from pytest_tcav.engine.examples import RANDOM_SET_PATTERN, Concept, load_image_folder
from pytest_tcav.engine.text_examples import TEXT_SUFFIX, Tokenizer, is_text_path, text_concept
from pytest_tcav.errors import ConceptDataError, ConfigurationError

#: Entry names (folders, or NAME.txt files) that hold one pool of random examples rather than one random set.
POOL_NAMES = ("random", "random_pool")

#: What an entry holds: images (a folder of image files) or text (NAME.txt, or a folder of .txt files).
KINDS = ("image", "text")


def natural_key(name: str) -> list[Any]:
    """Sort ``random_2`` before ``random_10``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _suggest(name: str, known: list[str]) -> str:
    close = get_close_matches(name, known, n=3)
    return f"; did you mean {', '.join(map(repr, close))}?" if close else ""


def _listing(names: list[str], limit: int = 12) -> str:
    if not names:
        return "none"
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


class _FolderLibrary:
    """A root folder of entries (image folders, text files or folders), each loaded once."""

    kind = "library"
    role = "image"  # names a folder in load errors: "concept folder ... does not exist"

    def __init__(self, root: Path | None, transform: Callable[[Any], Any] | None = None, *,
                 origin: str = "", on_bad_image: str = "warn", tokenizer: Tokenizer | None = None) -> None:
        self.root = Path(root) if root is not None else None
        self.transform = transform
        self.origin = origin
        #: ``tcav_on_bad_image``: skip undecodable image files with a warning, or fail.
        self.on_bad_image = on_bad_image
        #: ``tcav_tokenizer``: what text entries are tokenized with when a call gives none.
        self.tokenizer = tokenizer
        self._loaded: dict[Path, Concept] = {}
        self._loaded_text: dict[Path, list[tuple[Tokenizer | None, Concept]]] = {}

    @property
    def configured(self) -> bool:
        return self.root is not None

    def require_root(self) -> Path:
        """The library's folder; a clear error when none is configured or it is not there."""
        if self.root is None:
            raise ConfigurationError(
                f"no {self.kind} is configured: set {self.origin} in the ini file (or --"
                f"{self.origin.replace('_', '-')}), or pass the data itself (a tensor, a folder, a Dataset)"
            )
        if not self.root.is_dir():
            raise ConceptDataError(
                f"the {self.kind} folder {str(self.root)!r} ({self.origin}) does not exist or is not a folder"
            )
        return self.root

    def entries(self) -> list[str]:
        """Names of the entries: sub-folders, and ``NAME.txt`` files by ``NAME``; naturally sorted."""
        root = self.require_root()
        names = {p.name if p.is_dir() else p.stem for p in root.iterdir()
                 if not p.name.startswith(".") and (p.is_dir() or (p.is_file() and p.suffix == TEXT_SUFFIX))}
        return sorted(names, key=natural_key)

    def entry_path(self, name: str) -> Path:
        """The folder or ``NAME.txt`` file of an entry that exists (``name in self``)."""
        root = self.require_root()
        folder, file = root / name, root / f"{name}{TEXT_SUFFIX}"
        if folder.is_dir() and file.is_file():
            raise ConceptDataError(
                f"the {self.kind} {str(root)!r} has both a folder {name!r} and a file {file.name!r}; "
                "rename one of them, so that the name says which is meant"
            )
        return folder if folder.is_dir() else file

    def kind_of(self, name: str) -> str:
        """``"text"`` or ``"image"``: what the entry ``name`` holds."""
        return "text" if is_text_path(self.entry_path(name)) else "image"

    def load(self, folder: str | os.PathLike[str], name: str | None = None, *,
             tokenizer: Tokenizer | None = None) -> Concept:
        """Load an entry (absolute, or relative to the library root), once per run (per tokenizer, for text).

        Text (a ``.txt`` file or a folder of them) goes through ``tokenizer``, or the
        library's own when none is given; anything else is an image folder.
        """
        path = Path(folder)
        if not path.is_absolute() and self.root is not None:
            path = self.root / path
        path = path.resolve()
        if is_text_path(path):
            tokenizer = tokenizer if tokenizer is not None else self.tokenizer
            loaded = self._loaded_text.setdefault(path, [])
            for known, concept in loaded:
                if known is tokenizer:
                    return concept
            concept = text_concept(path, tokenizer, name=name or path.stem, role=self.role, id_root=self._id_root(path))
            loaded.append((tokenizer, concept))
            return concept
        if path not in self._loaded:
            self._loaded[path] = load_image_folder(path, self.transform, name=name or path.name,
                                                   on_bad_file=self.on_bad_image, role=self.role,
                                                   id_root=self._id_root(path))
        return self._loaded[path]

    def _id_root(self, path: Path) -> Path | None:
        """Where examples' ids start: the library's root for its entries (``striped/a.png``)."""
        root = self.root.resolve() if self.root is not None else None
        return root if root is not None and path.is_relative_to(root) else None

    def __contains__(self, name: object) -> bool:
        return (isinstance(name, str) and self.root is not None and is_plain_name(name)
                and ((self.root / name).is_dir() or (self.root / f"{name}{TEXT_SUFFIX}").is_file()))


def is_plain_name(name: str) -> bool:
    """A single folder name (no separators): what may name a library entry rather than a path."""
    return bool(name) and "/" not in name and os.sep not in name and name not in (".", "..")


class ConceptLibrary(_FolderLibrary):
    """Concepts by name under ``tcav_concepts``, and their random counterparts."""

    kind = "concept library"
    role = "concept"

    def __init__(self, root: Path | None, transform: Callable[[Any], Any] | None = None, *,
                 origin: str = "tcav_concepts", on_bad_image: str = "warn",
                 tokenizer: Tokenizer | None = None) -> None:
        super().__init__(root, transform, origin=origin, on_bad_image=on_bad_image, tokenizer=tokenizer)

    def names(self) -> list[str]:
        """Concepts: every entry that is not a random set or pool."""
        return [n for n in self.entries() if not RANDOM_SET_PATTERN.match(n) and n not in POOL_NAMES]

    def random_set_names(self, kind: str | None = None) -> list[str]:
        """Explicit random counterparts (``random_*``, ``random500_*``) of ``kind`` (None: any), in natural order."""
        return [n for n in self.entries() if RANDOM_SET_PATTERN.match(n) and n not in POOL_NAMES
                and (kind is None or self.kind_of(n) == kind)]

    def pool_name(self, kind: str | None = None) -> str | None:
        """The pool (folder or ``.txt`` file) of ``kind`` random sets are drawn from, if the library has one."""
        for name in POOL_NAMES:
            if name in self and (kind is None or self.kind_of(name) == kind):
                return name
        return None

    def concept(self, name: str, *, tokenizer: Tokenizer | None = None) -> Concept:
        """The concept ``<root>/<name>`` (a folder, or ``<name>.txt``); an unknown name lists the known ones."""
        root = self.require_root()
        if name not in self:
            known = self.names()
            raise ConceptDataError(
                f"no concept {name!r} in the concept library {str(root)!r}{_suggest(name, known)} "
                f"(concepts there: {_listing(known)})"
            )
        return self.load(self.entry_path(name), name=name, tokenizer=tokenizer)

    def random_sets(self, count: int, *, kind: str | None = None,
                    tokenizer: Tokenizer | None = None) -> tuple[list[Concept], Concept | None]:
        """Random counterparts for one test: explicit sets, or a pool to draw ``count`` sets from.

        Returns ``(sets, None)`` when the library has ``random_*`` entries (the
        first ``count`` in natural order), or ``([], pool)`` when it has a pool;
        the engine draws seeded sets of the concept's size from a pool.  ``kind``
        (``"text"`` or ``"image"``, the concept's) keeps only entries of that
        kind, for a library that holds both.
        """
        root = self.require_root()
        explicit = self.random_set_names(kind)
        what = f"{kind} " if kind is not None and len({self.kind_of(n) for n in self.random_set_names()}) > 1 else ""
        if explicit:
            if len(explicit) < count:
                raise ConceptDataError(
                    f"{count} random sets were asked for, but the concept library {str(root)!r} has only "
                    f"{len(explicit)} {what}random folder(s) ({_listing(explicit)}); add more, or pass "
                    f"random_sets={len(explicit)} (or set tcav_random_sets)"
                )
            return [self.load(self.entry_path(n), name=n, tokenizer=tokenizer) for n in explicit[:count]], None
        pool = self.pool_name(kind)
        if pool is not None:
            return [], self.load(self.entry_path(pool), name=pool, tokenizer=tokenizer)
        if kind == "text":
            raise ConceptDataError(
                f"the concept library {str(root)!r} has no text random counterparts: add files named "
                f"random_0.txt, random_1.txt, ... (one example per line), or one pool file "
                f"{' or '.join(n + TEXT_SUFFIX for n in POOL_NAMES)}, or pass random_sets=[...] / random_pool=..."
            )
        raise ConceptDataError(
            f"the concept library {str(root)!r} has no {what}random counterparts: add folders named "
            f"random_0, random_1, ... (or random500_*), or one pool folder named "
            f"{' or '.join(POOL_NAMES)}, or pass random_sets=[...] / random_pool=..."
        )

    def random_set(self, name: str, *, tokenizer: Tokenizer | None = None) -> Concept:
        """One named random entry, for explicit ``random_sets=["random_3", ...]``."""
        root = self.require_root()
        if name not in self:
            known = self.random_set_names()
            raise ConceptDataError(
                f"no random folder {name!r} in the concept library {str(root)!r}{_suggest(name, known)} "
                f"(random folders there: {_listing(known)})"
            )
        return self.load(self.entry_path(name), name=name, tokenizer=tokenizer)

    def __repr__(self) -> str:
        return f"ConceptLibrary({str(self.root) if self.root else None!r})"


class InputLibrary(_FolderLibrary):
    """Inputs of each target under ``tcav_inputs``: ``<root>/<class index>/`` or ``<root>/<class name>/``."""

    kind = "input library"
    role = "input"

    def __init__(self, root: Path | None, transform: Callable[[Any], Any] | None = None, *,
                 classes: Mapping[str, int] | None = None, origin: str = "tcav_inputs",
                 on_bad_image: str = "warn", tokenizer: Tokenizer | None = None) -> None:
        super().__init__(root, transform, origin=origin, on_bad_image=on_bad_image, tokenizer=tokenizer)
        self.classes = dict(classes or {})

    def candidates(self, target: int | str) -> list[str]:
        """Folder names that may hold the inputs of ``target``, in the order they are tried."""
        if isinstance(target, str):
            names = [target]
            if target in self.classes:
                names.append(str(self.classes[target]))
            return names
        index = int(target)
        return [str(index)] + sorted(n for n, i in self.classes.items() if i == index)

    def for_target(self, target: int | str, *, tokenizer: Tokenizer | None = None) -> Concept:
        """The inputs of a target (class index or class name): a folder, or ``<name>.txt``."""
        root = self.require_root()
        candidates = self.candidates(target)
        for name in candidates:
            if name in self:
                return self.load(self.entry_path(name), name=name, tokenizer=tokenizer)
        known = self.entries()
        hint = ""
        if not isinstance(target, str) and len(candidates) == 1 and any(not k.isdigit() for k in known):
            hint = " (folders named by class name need a mapping in tcav_classes, e.g. 'zebra=340')"
        raise ConceptDataError(
            f"no inputs for target {target!r} in the input library {str(root)!r}: looked for folder(s) "
            f"{', '.join(candidates)}{hint}{_suggest(str(candidates[0]), known)} "
            f"(folders there: {_listing(known)}); or pass inputs=..."
        )

    def named(self, name: str, *, tokenizer: Tokenizer | None = None) -> Concept:
        """An input set (a folder, or ``<name>.txt``) by its own name."""
        root = self.require_root()
        if name not in self:
            known = self.entries()
            raise ConceptDataError(
                f"no input set {name!r} in the input library {str(root)!r}{_suggest(name, known)} "
                f"(folders there: {_listing(known)})"
            )
        return self.load(self.entry_path(name), name=name, tokenizer=tokenizer)

    def __repr__(self) -> str:
        return f"InputLibrary({str(self.root) if self.root else None!r})"

