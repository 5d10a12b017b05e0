"""Text examples: ``.txt`` files and lists of strings, made into model inputs by a tokenizer.

A text model takes what its tokenizer returns (``model(**batch)``), so text
becomes examples in two steps: reading (a ``NAME.txt`` file, a folder of
``.txt`` files, or a list of strings) and tokenizing (the user's tokenizer, a
callable from a list of strings to a mapping of tensors, e.g. a Hugging Face
tokenizer called with ``padding=True, return_tensors="pt"``).  The engine then
receives that mapping like any other structured example set.

The reading rule is one example per line, in files and folders alike: every
non-empty line (surrounding whitespace stripped) of a ``.txt`` file is one
example, and a folder is every ``.txt`` file in it, sorted by file name, read
the same way.  A file holding one sentence is therefore one example, and a
file of many lines is many; a paragraph meant as one example must be one line.
Files are UTF-8 (a byte-order mark is ignored); anything else is an error that
names the file and the line, never a silently mangled example.

Nothing here guesses a tokenizer: text without one is an error that says how
to configure it (``tcav_tokenizer`` or ``tokenizer=``), and never the image
loader's advice about image files.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from pytest_tcav.engine.examples import IMAGE_SUFFIXES, Concept, as_concept
from pytest_tcav.errors import ConceptDataError, ConfigurationError, TCAVError

TEXT_SUFFIX = ".txt"

#: A list of strings -> a mapping of names to tensors, one row per string.
Tokenizer = Callable[[list[str]], Mapping[str, Any]]

_TOKENIZER_HINT = ("call a Hugging Face tokenizer with padding=True, return_tensors=\"pt\", e.g. "
                   "def tokenize(texts): return tokenizer(texts, padding=True, return_tensors=\"pt\")")


def is_text_list(value: object) -> bool:
    """A non-empty list or tuple of strings: text examples given directly."""
    return isinstance(value, (list, tuple)) and bool(value) and all(isinstance(v, str) for v in value)


def _visible_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def list_text_files(folder: Path) -> list[Path]:
    """The ``.txt`` files of a folder (any case of the suffix), hidden files excluded, sorted by name."""
    return [p for p in _visible_files(folder) if p.suffix.lower() == TEXT_SUFFIX]


def is_text_path(path: str | os.PathLike[str]) -> bool:
    """A ``.txt`` file, or a folder that holds ``.txt`` files and no image: what is read as text.

    An image folder with a ``README.txt`` in it stays an image folder.
    """
    path = Path(path)
    if path.is_file():
        return path.suffix.lower() == TEXT_SUFFIX
    if not path.is_dir():
        return False
    files = _visible_files(path)
    return (any(p.suffix.lower() == TEXT_SUFFIX for p in files)
            and not any(p.suffix.lower() in IMAGE_SUFFIXES for p in files))


def read_text_file(path: str | os.PathLike[str], *, role: str = "concept") -> list[str]:
    """The non-empty lines of one UTF-8 text file, each stripped of surrounding whitespace."""
    return [line for _, line in numbered_lines(path, role=role)]


def numbered_lines(path: str | os.PathLike[str], *, role: str = "concept") -> list[tuple[int, str]]:
    """:func:`read_text_file` with each line's number in the file (from 1)."""
    path = Path(path)
    data = path.read_bytes()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]  # a byte-order mark (Windows editors write one) is not part of the first example
    lines: list[tuple[int, str]] = []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConceptDataError(
                f"{role} text file {str(path)!r}, line {number}: not UTF-8 (byte {raw[exc.start]:#04x} at "
                f"column {exc.start + 1}); save the file as UTF-8"
            ) from None
        line = line.strip()
        if line:
            lines.append((number, line))
    return lines


def read_text(path: str | os.PathLike[str], *, role: str = "concept") -> list[str]:
    """The examples of a ``.txt`` file or of a folder of them: one per non-empty line (see the module)."""
    path = Path(path)
    if not path.exists():
        raise ConceptDataError(f"{role} text {str(path)!r} does not exist; check the path and its spelling")
    if path.is_file():
        if path.suffix.lower() != TEXT_SUFFIX:
            raise ConceptDataError(f"{role} file {str(path)!r} is not a .txt file; give a NAME.txt file of "
                                   "one example per line, or a folder of .txt files")
        lines = read_text_file(path, role=role)
        if not lines:
            raise ConceptDataError(f"{role} text file {str(path)!r} has no non-empty line; write one example "
                                   "per line")
        return lines
    files = list_text_files(path)
    if not files:
        raise ConceptDataError(
            f"{role} folder {str(path)!r} contains no .txt files; add NAME.txt files of one example per "
            "line, or point to the right folder"
        )
    lines = [line for file in files for line in read_text_file(file, role=role)]
    if not lines:
        raise ConceptDataError(f"the .txt files of {role} folder {str(path)!r} have no non-empty line; write "
                               "one example per line")
    return lines


def text_labels(value: Sequence[str] | str | os.PathLike[str], *, role: str = "concept",
                id_root: str | os.PathLike[str] | None = None) -> tuple[tuple[str, ...] | None, tuple[str, ...]]:
    """The ids and sentences of a text set's examples, in the order :func:`read_text` reads them.

    A line of a file is ``FILE:LINE``, the file relative to ``id_root`` (a
    library's root), else to the folder read (its name for a single file); a
    list of strings has no ids (None: reports use the index).
    """
    if is_text_list(value):
        return None, tuple(value)  # type: ignore[arg-type]
    path = Path(value)  # type: ignore[arg-type]
    files = [path] if path.is_file() else list_text_files(path)
    base = Path(id_root) if id_root is not None else (path.parent if path.is_file() else path)
    ids: list[str] = []
    texts: list[str] = []
    for file in files:
        name = file.relative_to(base).as_posix() if file.is_relative_to(base) else file.name
        for number, line in numbered_lines(file, role=role):
            ids.append(f"{name}:{number}")
            texts.append(line)
    return tuple(ids), tuple(texts)


def missing_tokenizer(what: str) -> ConfigurationError:
    """The error for text with no tokenizer: how to give one (no image advice: this is text)."""
    return ConfigurationError(
        f"{what} is text, and text needs a tokenizer to become model inputs: set tcav_tokenizer = "
        "module:callable in the ini file (a callable from a list of strings to a mapping of tensors), or "
        f"pass tokenizer=...; {_TOKENIZER_HINT}"
    )


def _tokenizer_name(tokenizer: Any) -> str:
    name = getattr(tokenizer, "name", None) or getattr(tokenizer, "__qualname__", None)
    return str(name) if name else type(tokenizer).__name__


def tokenize(texts: Sequence[str], tokenizer: Tokenizer, *, what: str = "text") -> dict[str, torch.Tensor]:
    """The tokenizer's output for ``texts``, checked: a mapping of tensors with one row per text.

    The checks are the ones whose failure would otherwise surface far away,
    inside the user's model or as a wrong batch: lists instead of tensors
    (``return_tensors`` missing), rows that do not match the texts, parts of
    unequal length (``padding`` missing).  The tensors come back on the CPU,
    detached, in the tokenizer's order of keys.
    """
    texts = list(texts)
    label = f"the tokenizer {_tokenizer_name(tokenizer)}"
    try:
        encoded = tokenizer(texts)
    except TCAVError:
        raise
    except Exception as exc:
        raise ConceptDataError(f"{label} failed on {what} ({type(exc).__name__}: {exc}); {_TOKENIZER_HINT}") from exc
    if not isinstance(encoded, Mapping) or not encoded:
        got = type(encoded).__name__ if isinstance(encoded, Mapping) else f"{type(encoded).__name__}"
        raise ConceptDataError(f"{label} returned {'an empty mapping' if isinstance(encoded, Mapping) else got} "
                               f"for {what}; it must return a mapping of tensors: {_TOKENIZER_HINT}")
    parts: dict[str, torch.Tensor] = {}
    lengths: dict[str, int] = {}
    for key, value in encoded.items():
        if not isinstance(value, torch.Tensor):
            raise ConceptDataError(
                f"{label} returned {type(value).__name__} for {key!r}, not a tensor; {_TOKENIZER_HINT}")
        if value.dim() == 0 or value.shape[0] != len(texts):
            rows = "a scalar" if value.dim() == 0 else f"{value.shape[0]} row(s)"
            raise ConceptDataError(
                f"{label} returned {rows} for {key!r} from {len(texts)} texts of {what}; it must return one "
                f"row per text: {_TOKENIZER_HINT}")
        if value.dim() >= 2:
            lengths[str(key)] = int(value.shape[1])
        parts[str(key)] = value.detach().cpu()
    if len(set(lengths.values())) > 1:
        shown = ", ".join(f"{key} {n}" for key, n in lengths.items())
        raise ConceptDataError(f"{label} returned parts of unequal length for {what} ({shown}); {_TOKENIZER_HINT}")
    return parts


def describe_text(value: object) -> str:
    """How messages name a text set: its path, or how many strings it has."""
    if isinstance(value, (str, os.PathLike)):
        return repr(os.fspath(value))
    return f"a list of {len(value) if isinstance(value, (list, tuple)) else '?'} strings"


def text_examples(value: Sequence[str] | str | os.PathLike[str], tokenizer: Tokenizer | None, *,
                  role: str = "concept") -> dict[str, torch.Tensor]:
    """A list of strings, a ``.txt`` file or a folder of them, tokenized: what the engine receives."""
    what = f"{role} {describe_text(value)}"
    texts = list(value) if is_text_list(value) else read_text(value, role=role)  # type: ignore[arg-type]
    if tokenizer is None:
        raise missing_tokenizer(what)
    return tokenize(texts, tokenizer, what=what)


def text_concept(value: Sequence[str] | str | os.PathLike[str], tokenizer: Tokenizer | None, *,
                 name: str | None = None, role: str = "concept",
                 id_root: str | os.PathLike[str] | None = None) -> Concept:
    """Text made into a :class:`Concept` of tokenized examples (a mapping of tensors), with ids and sentences."""
    if name is None:
        name = Path(value).stem if isinstance(value, (str, os.PathLike)) else "text"
    return labelled(as_concept(text_examples(value, tokenizer, role=role), name=name, role=role),
                    *text_labels(value, role=role, id_root=id_root))


def labelled(concept: Concept, ids: tuple[str, ...] | None, texts: tuple[str, ...] | None) -> Concept:
    """``concept`` with its examples' ids and sentences (the same examples, fingerprint and hashes)."""
    if len(texts if texts is not None else ids or ()) != len(concept):
        return concept  # a tokenizer that did not keep one row per text was refused before; never mislabel
    out = Concept(concept.name, concept.examples, source=concept.source, ids=ids, texts=texts)
    out.__dict__.update({k: v for k, v in concept.__dict__.items() if k in ("fingerprint", "example_digests")})
    return out


def prepare(value: Any, tokenizer: Tokenizer | None, *, role: str = "concept") -> Any:
    """Text (a list of strings, a ``.txt`` file or folder) tokenized; anything else unchanged.

    What the engine calls on each set before making it a :class:`Concept`,
    so that text never reaches the image loader.
    """
    if is_text_list(value) or (isinstance(value, (str, os.PathLike)) and is_text_path(value)):
        return text_examples(value, tokenizer, role=role)
    return value
