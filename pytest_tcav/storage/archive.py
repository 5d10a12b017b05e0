"""The disk cache as one archive, so a warm cache can travel between CI jobs and machines.

``pytest-tcav cache export FILE`` writes every sound entry of a cache into one
tar file (gzip-compressed when the name ends in ``.gz`` or ``.tgz``) with a
manifest; ``pytest-tcav cache import FILE`` checks the archive and adds its
entries to a cache.  A CI artifact or a download is input from outside, so the
import trusts nothing in it:

* **Only entries, by name.**  Every member must be the manifest or a regular
  file named ``entries/<kind>/<xx>/<key>.tcav`` exactly as the cache's layout
  names it (hexadecimal key, ``xx`` its first two digits).  Absolute paths,
  ``..``, links, devices, folders, duplicate names or any other member refuse
  the whole archive.  Nothing is ever extracted by the archive's own paths:
  each entry's path is rebuilt from its validated kind and key
  (:func:`~pytest_tcav.storage.layout.entry_path`).
* **Bounded.**  A member larger than the per-entry limit, or entries adding up
  to more than the cache's size bound, refuse the archive before anything is
  read; the manifest is read only up to :data:`MAX_MANIFEST_BYTES`.
* **Verified.**  Each entry must match the size and SHA-256 the manifest gives
  it and pass the entry format's own checks (its checksum, its header naming
  the same kind and key: :func:`~pytest_tcav.storage.entry_format.decode_entry`).
  Everything is checked before anything is written, so an altered archive
  changes nothing.  Entries written by another environment (another version
  of pytest-tcav, torch, numpy...) are sound but would never be read: they are
  skipped and counted.
* **Atomic, and additive.**  Entries are written with the cache's own atomic
  writes (:func:`~pytest_tcav.storage.layout.write_atomically`: a reader sees
  no entry or the whole entry); an entry already in the cache is kept.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_tcav._version import __version__
from pytest_tcav.errors import CacheArchiveError
from pytest_tcav.storage import layout
from pytest_tcav.storage.entry_format import CorruptEntry, StaleEntry, decode_entry, environment_fingerprint

#: The manifest's member name, and what it says it is.
MANIFEST = "manifest.json"
ARCHIVE_FORMAT = "pytest-tcav-cache"
ARCHIVE_VERSION = 1
#: A manifest larger than this is not one of ours (about 200 bytes per entry: hundreds of thousands of entries).
MAX_MANIFEST_BYTES = 64 * 1024**2
#: At most this many members (a header bomb is refused before its members are looked at).
MAX_MEMBERS = 1_000_000

_MEMBER_RE = re.compile(r"^entries/([a-z][a-z0-9_-]{0,31})/([0-9a-f]{2})/([0-9a-f]{32,128})\.tcav$")


@dataclass(frozen=True)
class Exported:
    """What an export wrote: entries and their bytes, and the entries left out (and why)."""

    path: Path
    entries: int
    bytes: int
    stale: int
    corrupt: int


@dataclass(frozen=True)
class Imported:
    """What an import did: entries written and their bytes, entries already there, entries of another environment."""

    entries: int
    bytes: int
    present: int
    stale: int
    evicted: int


@dataclass(frozen=True)
class _Entry:
    name: str
    kind: str
    key: str
    size: int
    sha256: str


def member_name(kind: str, key: str) -> str:
    """The archive's name for the entry of ``(kind, key)``."""
    return f"entries/{kind}/{key[:2]}/{key}{layout.SUFFIX}"


# -- export ---------------------------------------------------------------------------------


def _sound_entries(root: Path, environment: str) -> Iterator[tuple[str, str, str, bytes, float]]:
    """Each entry as ``(status, kind, key, bytes, mtime)``; status ``"stale"`` or ``"corrupt"`` leaves it out."""
    for path, info in sorted(layout.entry_files(root)):
        if path.suffix != layout.SUFFIX:
            continue
        kind, key = path.parent.parent.name, path.stem
        try:
            data = path.read_bytes()
            decode_entry(bytearray(data), kind, key, environment)
        except (FileNotFoundError, NotADirectoryError):
            continue  # evicted meanwhile
        except StaleEntry:
            yield "stale", kind, key, b"", 0.0
            continue
        except (CorruptEntry, OSError):
            yield "corrupt", kind, key, b"", 0.0
            continue
        yield "sound", kind, key, data, info.st_mtime


def export_cache(root: Path, file: Path) -> Exported:
    """Write every sound entry of the cache in ``root`` to the archive ``file`` (replaced atomically)."""
    file = Path(file)
    environment = environment_fingerprint()
    mode = "w:gz" if file.name.endswith((".gz", ".tgz")) else "w"
    file.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=file.parent, prefix=f".{file.name}.", suffix=".tmp")
    manifest: list[dict[str, Any]] = []
    stale = corrupt = total = 0
    try:
        with os.fdopen(fd, "wb") as handle:
            with tarfile.open(fileobj=handle, mode=mode, format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
                for status, kind, key, data, mtime in _sound_entries(Path(root), environment):
                    if status != "sound":
                        stale += status == "stale"
                        corrupt += status == "corrupt"
                        continue
                    name = member_name(kind, key)
                    tar.addfile(_info(name, len(data), mtime), io.BytesIO(data))
                    manifest.append({"name": name, "kind": kind, "key": key, "bytes": len(data),
                                     "sha256": hashlib.sha256(data).hexdigest()})
                    total += len(data)
                text = json.dumps({"format": ARCHIVE_FORMAT, "version": ARCHIVE_VERSION, "pytest_tcav": __version__,
                                   "environment": environment, "entries": manifest}, indent=1).encode()
                tar.addfile(_info(MANIFEST, len(text), None), io.BytesIO(text))
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, file)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp)
        raise
    return Exported(file, len(manifest), total, stale, corrupt)


def _info(name: str, size: int, mtime: float | None) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.type = size, 0o644, tarfile.REGTYPE
    info.mtime = int(mtime) if mtime is not None else 0
    return info


# -- import ---------------------------------------------------------------------------------


def _refuse(file: Path, message: str) -> CacheArchiveError:
    return CacheArchiveError(f"{file}: {message}; nothing was imported")


def _members(tar: tarfile.TarFile, file: Path, max_entry_bytes: int | None) -> tuple[tarfile.TarInfo, dict[str, Any]]:
    """The manifest member and the entry members by name, after checking every member's name, type and size."""
    manifest: tarfile.TarInfo | None = None
    entries: dict[str, Any] = {}
    for count, member in enumerate(tar, start=1):
        if count > MAX_MEMBERS:
            raise _refuse(file, f"more than {MAX_MEMBERS} members")
        name = member.name
        if not member.isreg():
            what = ("a symbolic link" if member.issym() else "a hard link" if member.islnk()
                    else "a folder" if member.isdir() else "a device or special file")
            raise _refuse(file, f"member {name!r} is {what}; a cache archive holds only regular files")
        if name == MANIFEST:
            if manifest is not None:
                raise _refuse(file, f"{MANIFEST} appears twice")
            if member.size > MAX_MANIFEST_BYTES:
                raise _refuse(file, f"{MANIFEST} is {member.size} bytes, more than any manifest")
            manifest = member
            continue
        if not _MEMBER_RE.match(name) or name.split("/")[2] != name.split("/")[3][:2]:
            raise _refuse(file, f"member {name!r} is not a cache entry (expected entries/<kind>/<xx>/<key>.tcav; "
                                "absolute paths and '..' are refused)")
        if name in entries:
            raise _refuse(file, f"member {name!r} appears twice")
        if max_entry_bytes is not None and member.size > max_entry_bytes:
            raise _refuse(file, f"member {name!r} is {member.size} bytes, more than the limit of {max_entry_bytes}")
        entries[name] = member
    if manifest is None:
        raise _refuse(file, f"no {MANIFEST}; not an archive written by pytest-tcav cache export")
    return manifest, entries


def _manifest(tar: tarfile.TarFile, member: tarfile.TarInfo, file: Path) -> list[_Entry]:
    handle = tar.extractfile(member)
    assert handle is not None, "a regular member"
    try:
        data = json.loads(handle.read(MAX_MANIFEST_BYTES + 1).decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise _refuse(file, f"{MANIFEST} is not JSON") from None
    if not isinstance(data, dict) or data.get("format") != ARCHIVE_FORMAT:
        raise _refuse(file, f"{MANIFEST} does not describe a pytest-tcav cache archive")
    if data.get("version") != ARCHIVE_VERSION:
        raise _refuse(file, f"archive version {data.get('version')!r}; this pytest-tcav reads {ARCHIVE_VERSION}")
    listed = data.get("entries")
    if not isinstance(listed, list):
        raise _refuse(file, f"{MANIFEST} lists no entries")
    out = []
    for item in listed:
        try:
            entry = _Entry(str(item["name"]), str(item["kind"]), str(item["key"]), int(item["bytes"]),
                           str(item["sha256"]))
        except (KeyError, TypeError, ValueError):
            raise _refuse(file, f"{MANIFEST} has a malformed entry: {str(item)[:200]}") from None
        if entry.name != member_name(entry.kind, entry.key):
            raise _refuse(file, f"{MANIFEST} names {entry.name!r} for kind {entry.kind!r} and key {entry.key!r}")
        out.append(entry)
    return out


def _read(tar: tarfile.TarFile, member: tarfile.TarInfo, entry: _Entry, file: Path) -> bytes:
    """An entry member's bytes, checked against the manifest's size and SHA-256."""
    handle = tar.extractfile(member)
    assert handle is not None, "a regular member"
    data = handle.read(entry.size + 1)
    if len(data) != entry.size or hashlib.sha256(data).hexdigest() != entry.sha256:
        raise _refuse(file, f"member {entry.name!r} does not match the size and SHA-256 in {MANIFEST} "
                            "(altered or truncated archive)")
    return data


def import_cache(root: Path, file: Path, *, max_bytes: int | None, max_entry_bytes: int | None = None,
                 lock: str = "fcntl") -> Imported:
    """Add the entries of the archive ``file`` to the cache in ``root``, after checking all of them.

    ``max_bytes`` is the cache's size bound: an archive whose entries add up to
    more is refused, and the cache is brought under it afterwards (least
    recently used first, so what was imported stays).  ``max_entry_bytes``
    limits each entry (default: ``max_bytes``).  Raises
    :class:`~pytest_tcav.errors.CacheArchiveError` for an unreadable, unsafe or
    altered archive, before writing anything.
    """
    root, file = Path(root), Path(file)
    if max_entry_bytes is None:
        max_entry_bytes = max_bytes
    environment = environment_fingerprint()
    try:
        tar = tarfile.open(file, mode="r:*")
    except FileNotFoundError:
        raise CacheArchiveError(f"{file}: no such file") from None
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise _refuse(file, f"not a tar archive ({exc})") from None
    with tar:
        try:
            manifest_member, members = _members(tar, file, max_entry_bytes)
            entries = _manifest(tar, manifest_member, file)
            if sorted(e.name for e in entries) != sorted(members):
                raise _refuse(file, f"its members are not the entries {MANIFEST} lists")
            total = sum(e.size for e in entries)
            if max_bytes is not None and total > max_bytes:
                raise _refuse(file, f"its entries take {total} bytes, more than the cache's bound of {max_bytes} "
                                    "(raise tcav_cache_size)")
            fresh: list[_Entry] = []
            stale = 0
            for entry in entries:  # everything checked before anything is written
                try:
                    decode_entry(bytearray(_read(tar, members[entry.name], entry, file)), entry.kind, entry.key,
                                 environment)
                except StaleEntry:
                    stale += 1
                    continue
                except CorruptEntry as exc:
                    raise _refuse(file, f"member {entry.name!r} is not a sound cache entry ({exc})") from None
                fresh.append(entry)
            written = written_bytes = present = 0
            if fresh:
                layout.prepare_root(root)
            for entry in fresh:
                path = layout.entry_path(root, entry.kind, entry.key)
                if _sound(path, entry, environment):
                    present += 1
                    continue
                data = _read(tar, members[entry.name], entry, file)
                path.parent.mkdir(parents=True, exist_ok=True)
                layout.write_atomically(path, entry.key, [data], fsync=True)
                written += 1
                written_bytes += len(data)
        except (tarfile.TarError, EOFError) as exc:
            raise _refuse(file, f"unreadable archive ({exc})") from None
    evicted = 0
    if written and max_bytes is not None:
        outcome = layout.evict(root, max_bytes, lock=lock)
        evicted = outcome.entries if outcome is not None else 0
    return Imported(written, written_bytes, present, stale, evicted)


def _sound(path: Path, entry: _Entry, environment: str) -> bool:
    """Whether the cache already holds a sound entry for this one (kept: never overwritten)."""
    try:
        decode_entry(bytearray(path.read_bytes()), entry.kind, entry.key, environment)
    except (OSError, CorruptEntry, StaleEntry):
        return False
    return True
