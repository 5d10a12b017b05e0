"""The bytes of one disk-cache entry: how a value is written and how it is checked when read.

Kept apart from the store so that the format's rules can be read (and
audited) in one place, without the locking and file handling around them.

* **Never executes code when loading.**  The format is our own: a fixed
  prefix, a JSON header naming each tensor's dtype (from an allow-list), shape
  and byte range, the raw little-endian tensor bytes, and a SHA-256 of
  everything before it.  Loading is ``json.loads`` plus ``torch.frombuffer``;
  no pickle anywhere.
* **Never a wrong answer.**  A short, truncated, bit-flipped or malformed
  entry fails the checksum or the header validation (:class:`CorruptEntry`);
  the store then reports, removes and recomputes it.
* **Never stale.**  The engine's key already hashes the model (structure,
  parameters, buffers), the layer, the example sets after preprocessing, the
  method, the trainer, the seed and the library version.  Each entry here also
  records an *environment* fingerprint (the source of this package, the torch /
  numpy / scikit-learn / Python versions, the byte order); an entry written by
  another environment is a :class:`StaleEntry`, a miss that is overwritten.
  This closes the gap the library version leaves while the library itself is
  being edited.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import struct
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pytest_tcav.storage.memory import Value

#: Bumped whenever the on-disk layout of an entry changes.
FORMAT_VERSION = 1
MAGIC = b"TCAVSTOR"
_PREFIX = struct.Struct("<8sIQ")  # magic, format version, header length
_DIGEST = 32  # SHA-256 trailer
_ALIGN = 64  # tensor data offsets, so frombuffer views are aligned

_DTYPES: dict[str, torch.dtype] = {
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float32": torch.float32,
    "float64": torch.float64,
    "complex64": torch.complex64,
    "complex128": torch.complex128,
    "uint8": torch.uint8,
    "int8": torch.int8,
    "int16": torch.int16,
    "int32": torch.int32,
    "int64": torch.int64,
    "bool": torch.bool,
}
_DTYPE_NAMES = {dtype: name for name, dtype in _DTYPES.items()}


class CorruptEntry(Exception):
    """An entry that failed validation; the message says how."""


class StaleEntry(Exception):
    """A valid entry written by another environment or format version."""


class EntryTooLarge(Exception):
    """A value over the cache's whole size bound (its message is the value's kind)."""


# -- environment ---------------------------------------------------------------------------


@functools.cache
def code_fingerprint() -> str:
    """A hash of this package's Python sources.

    Part of each entry's environment: while pytest-tcav itself is edited the
    version number stays the same, and an edited trainer must not be served
    CAVs computed by the old one.
    """
    h = hashlib.sha256()
    package = Path(__file__).resolve().parent.parent  # pytest_tcav/, not only storage/
    for path in sorted(package.rglob("*.py")):
        h.update(path.relative_to(package).as_posix().encode())
        h.update(b"\0")
        try:
            h.update(path.read_bytes())
        except OSError:  # pragma: no cover - a package file vanished while running
            h.update(b"<unreadable>")
        h.update(b"\0")
    return h.hexdigest()


def _distribution_version(name: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "absent"


@functools.cache
def environment_fingerprint() -> str:
    """What, besides the key, an entry's bytes depend on: our code and numeric libraries."""
    parts = {
        "format": FORMAT_VERSION,
        "code": code_fingerprint(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "scikit-learn": _distribution_version("scikit-learn"),
        "python": f"{sys.version_info[0]}.{sys.version_info[1]}",
        "byteorder": sys.byteorder,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


# -- the entry format ----------------------------------------------------------------------


def _pad(n: int) -> int:
    return (-n) % _ALIGN


def _tensor_bytes(t: torch.Tensor) -> np.ndarray:
    flat = t.detach().to("cpu").contiguous().reshape(-1)
    if flat.numel() == 0:
        return np.zeros(0, dtype=np.uint8)
    return flat.view(torch.uint8).numpy()


def encode_entry(kind: str, key: str, value: Value, environment: str) -> Iterator[bytes | memoryview]:
    """The chunks of one entry file (prefix, header, tensor bytes with padding); the caller hashes them.

    Streaming the chunks avoids holding a second copy of large activations.
    """
    if not isinstance(value, dict) or not value:
        raise TypeError(f"a cached value must be a non-empty dict of tensors, got {type(value).__name__}")
    arrays: list[tuple[str, torch.Tensor, np.ndarray]] = []
    for name, tensor in value.items():
        if not isinstance(name, str) or not isinstance(tensor, torch.Tensor):
            raise TypeError(f"a cached value maps names to tensors; {name!r} maps to {type(tensor).__name__}")
        if tensor.layout != torch.strided or tensor.dtype not in _DTYPE_NAMES:
            raise TypeError(f"cannot cache tensor {name!r} of layout {tensor.layout} and dtype {tensor.dtype}")
        arrays.append((name, tensor, _tensor_bytes(tensor)))
    entries = []
    offset = 0
    for name, tensor, data in arrays:
        entries.append({"name": name, "dtype": _DTYPE_NAMES[tensor.dtype], "shape": list(tensor.shape),
                        "offset": offset, "nbytes": int(data.nbytes)})
        offset += data.nbytes + _pad(data.nbytes)
    header = {"kind": kind, "key": key, "environment": environment, "payload_bytes": offset, "tensors": entries}
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * _pad(_PREFIX.size + len(text))  # tensor data starts aligned
    yield _PREFIX.pack(MAGIC, FORMAT_VERSION, len(text))
    yield text
    for _name, _tensor, data in arrays:
        if data.nbytes:
            yield memoryview(data).cast("B")  # type: ignore[arg-type]  # ndarray is a buffer; numpy's stubs disagree
        if _pad(data.nbytes):
            yield b"\0" * _pad(data.nbytes)


def entry_chunks(kind: str, key: str, value: Value, environment: str,
                 max_bytes: int | None) -> Iterator[bytes | memoryview]:
    """The chunks of a whole entry file: those of :func:`encode_entry`, then their SHA-256.

    Raises :class:`EntryTooLarge` as soon as more than ``max_bytes`` were
    produced, so that no more is written of a value the cache cannot keep.
    """
    digest = hashlib.sha256()
    produced = 0
    for chunk in encode_entry(kind, key, value, environment):
        digest.update(chunk)
        yield chunk
        produced += len(chunk)
        if max_bytes is not None and produced > max_bytes:
            raise EntryTooLarge(kind)
    yield digest.digest()


#: A file's identity on disk (device, inode, size): entries are replaced by renaming a new file, never edited.
FileIdentity = tuple[int, int, int]


def read_entry(path: Path, kind: str, key: str, environment: str,
               checked: set[FileIdentity] | None = None) -> Value:
    """The value in the entry file at ``path`` (see :func:`decode_entry`); ``OSError`` if it cannot be read.

    ``checked`` holds the identities of files whose checksum this process has
    already verified (or that it wrote itself): reading such a file again
    skips the checksum, the largest cost of reading a big entry back (a check
    of 50 random sets reads activations back from the cache a thousand times).
    Everything else is still checked, and a file replaced since (a new file
    renamed into place) has another identity and is verified again.
    """
    with open(path, "rb") as handle:
        stat = os.fstat(handle.fileno())
        size = stat.st_size
        # torch's allocator aligns to 64 bytes, as the payload's offsets are: the tensors read are aligned
        # as freshly computed ones, so products over them round alike (engine/block_gram.py copies them otherwise)
        buffer = memoryview(torch.empty(size, dtype=torch.uint8).numpy())  # type: ignore[arg-type]
        read = handle.readinto(buffer)
    if read != size:
        raise CorruptEntry(f"short read ({read} of {size} bytes)")
    identity = (stat.st_dev, stat.st_ino, size)
    value = decode_entry(buffer, kind, key, environment, verify=checked is None or identity not in checked)
    if checked is not None:
        checked.add(identity)
    return value


def file_identity(path: Path) -> FileIdentity:
    stat = os.stat(path)
    return (stat.st_dev, stat.st_ino, stat.st_size)


def decode_entry(buffer: bytearray | memoryview, kind: str, key: str, environment: str, *,
                 verify: bool = True) -> Value:
    """The tensors of one entry file, after checking everything that can be checked.

    ``verify=False`` skips only the checksum (see :func:`read_entry`).

    Raises :class:`CorruptEntry` for anything malformed and :class:`StaleEntry`
    for a sound entry of another format version or environment.  The returned
    tensors share ``buffer``'s memory (no copy).
    """
    size = len(buffer)
    if size < _PREFIX.size + _DIGEST:
        raise CorruptEntry(f"file is {size} bytes, shorter than any entry")
    magic, version, header_len = _PREFIX.unpack_from(buffer, 0)
    if magic != MAGIC:
        raise CorruptEntry("not a pytest-tcav cache entry (bad magic)")
    view = memoryview(buffer)
    if verify and hashlib.sha256(view[: size - _DIGEST]).digest() != bytes(view[size - _DIGEST:]):
        raise CorruptEntry("checksum mismatch (truncated or altered file)")
    if version != FORMAT_VERSION:
        raise StaleEntry(f"format version {version}, this library reads {FORMAT_VERSION}")
    start = _PREFIX.size + header_len
    if header_len == 0 or start > size - _DIGEST or start % _ALIGN:
        raise CorruptEntry(f"header length {header_len} does not fit the file")
    try:
        header = json.loads(bytes(view[_PREFIX.size:start]).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise CorruptEntry(f"unreadable header ({exc})") from None
    if not isinstance(header, dict):
        raise CorruptEntry("header is not an object")
    if header.get("kind") != kind or header.get("key") != key:
        raise CorruptEntry("entry belongs to another key (renamed or copied file)")
    if header.get("environment") != environment:
        raise StaleEntry("written by another version of pytest-tcav or of its numeric libraries")
    payload = size - _DIGEST - start
    if header.get("payload_bytes") != payload:
        raise CorruptEntry(f"header announces {header.get('payload_bytes')} payload bytes, file has {payload}")
    specs = header.get("tensors")
    if not isinstance(specs, list) or not specs:
        raise CorruptEntry("header lists no tensors")
    value: Value = {}
    expected_offset = 0
    for spec in specs:
        name, tensor = _decode_tensor(buffer, spec, start, payload, expected_offset)
        if name in value:
            raise CorruptEntry(f"tensor {name!r} listed twice")
        value[name] = tensor
        expected_offset = spec["offset"] + spec["nbytes"] + _pad(spec["nbytes"])
    if expected_offset != payload:
        raise CorruptEntry("payload has bytes no tensor accounts for")
    return value


def _decode_tensor(buffer: bytearray | memoryview, spec: Any, start: int, payload: int,
                   offset: int) -> tuple[str, torch.Tensor]:
    if not isinstance(spec, dict):
        raise CorruptEntry("tensor description is not an object")
    name, dtype_name, shape = spec.get("name"), spec.get("dtype"), spec.get("shape")
    nbytes, tensor_offset = spec.get("nbytes"), spec.get("offset")
    if not isinstance(name, str) or dtype_name not in _DTYPES:
        raise CorruptEntry(f"tensor {name!r} has unsupported dtype {dtype_name!r}")
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        raise CorruptEntry(f"tensor {name!r} has invalid shape {shape!r}")
    dtype = _DTYPES[dtype_name]
    itemsize = torch.empty((), dtype=dtype).element_size()
    numel = math.prod(shape)
    if type(nbytes) is not int or nbytes != numel * itemsize:
        raise CorruptEntry(f"tensor {name!r}: {nbytes!r} bytes for shape {shape} of {dtype_name}")
    if tensor_offset != offset or offset + nbytes > payload:
        raise CorruptEntry(f"tensor {name!r} lies outside its place in the payload")
    if numel == 0:
        return name, torch.empty(shape, dtype=dtype)
    tensor = torch.frombuffer(buffer, dtype=dtype, count=numel, offset=start + offset).reshape(shape)
    if dtype == torch.bool and bool((tensor.view(torch.uint8) > 1).any()):
        raise CorruptEntry(f"tensor {name!r} holds bytes that are not booleans")
    return name, tensor

