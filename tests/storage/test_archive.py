"""The disk cache as one archive: export, import, and an import that trusts nothing in the file."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import warnings
from pathlib import Path

import pytest
import torch

from pytest_tcav.engine.fingerprints import make_key
from pytest_tcav.errors import CacheArchiveError
from pytest_tcav.storage import archive, layout
from pytest_tcav.storage.disk import DiskStore
from pytest_tcav.storage.entry_format import entry_chunks


def key(n: int | str) -> str:
    return make_key("activations", {"archive-test": n})


def filled(root: Path, count: int = 3) -> DiskStore:
    store = DiskStore(root)
    for n in range(count):
        store.fetch("activations", key(n), lambda n=n: {"a": torch.full((4, 5), float(n))})
    return store


def test_an_exported_cache_imports_into_an_empty_one_and_serves_hits(tmp_path: Path) -> None:
    filled(tmp_path / "a")
    done = archive.export_cache(tmp_path / "a", tmp_path / "cache.tar")
    assert (done.entries, done.stale, done.corrupt) == (3, 0, 0) and done.bytes > 0
    result = archive.import_cache(tmp_path / "b", tmp_path / "cache.tar", max_bytes=None)
    assert (result.entries, result.bytes, result.present, result.stale) == (3, done.bytes, 0, 0)
    store = DiskStore(tmp_path / "b")
    for n in range(3):
        value = store.fetch("activations", key(n), lambda: pytest.fail("computed"))  # type: ignore[arg-type]
        assert torch.equal(value["a"], torch.full((4, 5), float(n)))
    assert sum(store.stats.hits.values()) == 3
    assert (tmp_path / "b" / "CACHEDIR.TAG").exists()


def test_compressed_archive_and_existing_entries_kept(tmp_path: Path) -> None:
    filled(tmp_path / "a")
    archive.export_cache(tmp_path / "a", tmp_path / "cache.tar.gz")
    with open(tmp_path / "cache.tar.gz", "rb") as handle:
        assert handle.read(2) == b"\x1f\x8b"  # gzip
    filled(tmp_path / "b", count=1)
    before = layout.entry_path(tmp_path / "b", "activations", key(0)).stat().st_mtime_ns
    result = archive.import_cache(tmp_path / "b", tmp_path / "cache.tar.gz", max_bytes=None)
    assert (result.entries, result.present) == (2, 1)
    assert layout.entry_path(tmp_path / "b", "activations", key(0)).stat().st_mtime_ns == before
    again = archive.import_cache(tmp_path / "b", tmp_path / "cache.tar.gz", max_bytes=None)
    assert (again.entries, again.present) == (0, 3)


def test_export_leaves_out_corrupt_entries(tmp_path: Path) -> None:
    filled(tmp_path / "a")
    path = layout.entry_path(tmp_path / "a", "activations", key(1))
    data = bytearray(path.read_bytes())
    data[-40] ^= 0xFF
    path.write_bytes(bytes(data))
    done = archive.export_cache(tmp_path / "a", tmp_path / "cache.tar")
    assert (done.entries, done.corrupt) == (2, 1)


# -- an archive from outside ----------------------------------------------------------------


def entry_bytes(n: int) -> bytes:
    from pytest_tcav.storage.entry_format import environment_fingerprint

    return b"".join(bytes(c) for c in entry_chunks("activations", key(n), {"a": torch.ones(3)},
                                                   environment_fingerprint(), None))


def make_archive(path: Path, members: list[tuple[str, bytes]], *, manifest: dict | None = None,
                 extra: list[tarfile.TarInfo] = ()) -> Path:  # type: ignore[assignment]
    listed = []
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
            parts = name.split("/")
            if len(parts) == 4:
                listed.append({"name": name, "kind": parts[1], "key": parts[3].split(".")[0], "bytes": len(data),
                               "sha256": hashlib.sha256(data).hexdigest()})
        for info in extra:
            tar.addfile(info)
        text = json.dumps(manifest if manifest is not None else
                          {"format": archive.ARCHIVE_FORMAT, "version": 1, "entries": listed}).encode()
        info = tarfile.TarInfo(archive.MANIFEST)
        info.size = len(text)
        tar.addfile(info, io.BytesIO(text))
    return path


def refused(tmp_path: Path, file: Path, match: str, **kwargs: object) -> None:
    with pytest.raises(CacheArchiveError, match=match):
        archive.import_cache(tmp_path / "cache", file, max_bytes=kwargs.pop("max_bytes", None), **kwargs)  # type: ignore[arg-type]
    assert not any(layout.entry_files(tmp_path / "cache")), "nothing may be written"


def test_a_well_formed_hand_made_archive_imports(tmp_path: Path) -> None:
    file = make_archive(tmp_path / "x.tar", [(archive.member_name("activations", key(0)), entry_bytes(0))])
    assert archive.import_cache(tmp_path / "cache", file, max_bytes=None).entries == 1


@pytest.mark.parametrize("name", ["/etc/evil.tcav", "../evil.tcav", "entries/activations/../../../evil.tcav",
                                  "entries/activations/zz/" + "a" * 64 + ".tcav", "notes.txt",
                                  "entries/Activations/aa/" + "a" * 64 + ".tcav"])
def test_paths_outside_the_layout_are_refused(tmp_path: Path, name: str) -> None:
    file = make_archive(tmp_path / "x.tar", [(archive.member_name("activations", key(0)), entry_bytes(0)),
                                             (name, b"x")])
    refused(tmp_path, file, "is not a cache entry")
    assert not (tmp_path / "evil.tcav").exists() and not Path("/etc/evil.tcav").exists()


@pytest.mark.parametrize("kind", ["symlink", "hardlink", "device", "fifo", "folder"])
def test_links_devices_and_folders_are_refused(tmp_path: Path, kind: str) -> None:
    name = archive.member_name("activations", key(5))
    info = tarfile.TarInfo(name)
    info.type = {"symlink": tarfile.SYMTYPE, "hardlink": tarfile.LNKTYPE, "device": tarfile.CHRTYPE,
                 "fifo": tarfile.FIFOTYPE, "folder": tarfile.DIRTYPE}[kind]
    info.linkname = "/etc/passwd"
    file = make_archive(tmp_path / "x.tar", [], extra=[info])
    refused(tmp_path, file, "holds only regular files")


def test_an_altered_entry_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    good = (archive.member_name("activations", key(0)), entry_bytes(0))
    file = make_archive(tmp_path / "x.tar", [good, (archive.member_name("activations", key(1)), entry_bytes(1))])
    data = bytearray(file.read_bytes())
    at = data.rfind(b"\x00\x00\x80?")  # a float 1.0 of the last entry's tensor
    data[at + 3] ^= 0x01
    file.write_bytes(bytes(data))
    refused(tmp_path, file, "does not match the size and SHA-256")


def test_an_entry_with_a_matching_manifest_but_a_bad_checksum_is_refused(tmp_path: Path) -> None:
    bad = bytearray(entry_bytes(0))
    bad[-1] ^= 0xFF  # the entry's own SHA-256 trailer; the manifest is made from these bytes
    file = make_archive(tmp_path / "x.tar", [(archive.member_name("activations", key(0)), bytes(bad))])
    refused(tmp_path, file, "not a sound cache entry")


def test_an_entry_under_another_key_is_refused(tmp_path: Path) -> None:
    file = make_archive(tmp_path / "x.tar", [(archive.member_name("activations", key(1)), entry_bytes(0))])
    refused(tmp_path, file, "not a sound cache entry")


def test_oversized_members_and_archives_are_refused(tmp_path: Path) -> None:
    file = make_archive(tmp_path / "x.tar", [(archive.member_name("activations", key(0)), entry_bytes(0))])
    refused(tmp_path, file, "more than the limit of 10", max_entry_bytes=10)
    refused(tmp_path, file, "more than the cache.s bound", max_bytes=100, max_entry_bytes=10**9)
    refused(tmp_path, file, "more than the limit of 100", max_bytes=100)  # the bound limits each entry too


def test_manifest_must_list_exactly_the_members(tmp_path: Path) -> None:
    members = [(archive.member_name("activations", key(0)), entry_bytes(0))]
    file = make_archive(tmp_path / "x.tar", members,
                        manifest={"format": archive.ARCHIVE_FORMAT, "version": 1, "entries": []})
    refused(tmp_path, file, "not the entries manifest.json lists")
    file = make_archive(tmp_path / "y.tar", members, manifest={"format": "something else"})
    refused(tmp_path, file, "does not describe a pytest-tcav cache archive")
    with tarfile.open(tmp_path / "z.tar", "w") as tar:
        info = tarfile.TarInfo(members[0][0])
        info.size = len(members[0][1])
        tar.addfile(info, io.BytesIO(members[0][1]))
    refused(tmp_path, tmp_path / "z.tar", "no manifest.json")


def test_not_an_archive(tmp_path: Path) -> None:
    (tmp_path / "x.tar").write_bytes(b"hello, not a tar file" * 100)
    refused(tmp_path, tmp_path / "x.tar", "not a tar archive")
    refused(tmp_path, tmp_path / "missing.tar", "no such file")


def test_entries_of_another_environment_are_skipped(tmp_path: Path) -> None:
    data = b"".join(bytes(c) for c in entry_chunks("activations", key(0), {"a": torch.ones(3)}, "another", None))
    file = make_archive(tmp_path / "x.tar", [(archive.member_name("activations", key(0)), data)])
    result = archive.import_cache(tmp_path / "cache", file, max_bytes=None)
    assert (result.entries, result.stale) == (0, 1)


def test_import_keeps_the_cache_under_its_bound(tmp_path: Path) -> None:
    filled(tmp_path / "a", count=3)
    archive.export_cache(tmp_path / "a", tmp_path / "cache.tar")
    store = DiskStore(tmp_path / "b")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for n in range(10, 14):
            store.fetch("activations", key(n), lambda: {"a": torch.zeros(4, 5)})
    size = layout.size_bytes(tmp_path / "a")
    bound = int(size / layout.LOW_WATER) + 100  # room for what is imported, not for the older entries too
    result = archive.import_cache(tmp_path / "b", tmp_path / "cache.tar", max_bytes=bound)
    assert result.entries == 3 and result.evicted >= 1
    assert layout.size_bytes(tmp_path / "b") <= bound
    for n in range(3):  # the imported entries are the newest: they stay
        assert layout.entry_path(tmp_path / "b", "activations", key(n)).exists()
