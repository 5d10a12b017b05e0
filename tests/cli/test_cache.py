"""``pytest-tcav cache export|import``: the cache a pytest run here uses, counts printed, refusals."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch

from pytest_tcav.cli import main
from pytest_tcav.engine.fingerprints import make_key
from pytest_tcav.storage import layout
from pytest_tcav.storage.disk import DiskStore


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def fill(root: Path, count: int = 2) -> None:
    store = DiskStore(root)
    for n in range(count):
        store.fetch("cav", make_key("cav", {"cli": n}), lambda: {"w": torch.ones(8)})


def test_export_and_import_with_named_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    fill(tmp_path / "a")
    code, out, err = run("cache", "export", "--no-inifile", "--cache-dir", "a", "carried.tar")
    assert code == 0, err
    assert out.startswith("exported 2 entries (") and "carried.tar" in out
    code, out, err = run("cache", "import", "--no-inifile", "--cache-dir", "b", "carried.tar")
    assert code == 0, err
    assert out.startswith("imported 2 entries (") and str(tmp_path / "b") in out
    code, out, _ = run("cache", "import", "--no-inifile", "--cache-dir", "b", "carried.tar")
    assert out.startswith("imported 0 entries (0 bytes)") and "2 already there, kept" in out


def test_the_cache_is_the_one_pytest_uses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = tmp_path / "project"
    (project / "sub").mkdir(parents=True)
    (project / "pytest.ini").write_text("[pytest]\n")
    fill(project / ".pytest_cache" / "d" / "tcav")
    monkeypatch.chdir(project / "sub")  # the ini file is found upwards, as pytest finds it
    code, out, err = run("cache", "export", str(tmp_path / "c.tar"))
    assert code == 0 and "exported 2 entries" in out and str(project / ".pytest_cache" / "d" / "tcav") in out, err
    (project / "pytest.ini").write_text("[pytest]\ntcav_cache_dir = elsewhere\ncache_dir = .pc\n")
    code, out, err = run("cache", "import", str(tmp_path / "c.tar"))
    assert code == 0 and str(project / "elsewhere") in out, err
    (project / "pytest.ini").write_text("[pytest]\ncache_dir = .pc\n")
    code, out, err = run("cache", "import", str(tmp_path / "c.tar"))
    assert code == 0 and str(project / ".pc" / "d" / "tcav") in out, err
    assert len([p for p, _ in layout.entry_files(project / ".pc" / "d" / "tcav")]) == 2


def test_refusals_and_usage_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = run("cache", "export", "--no-inifile", "--cache-dir", "missing", "x.tar")
    assert code == 2 and "no cache at" in err
    (tmp_path / "bad.tar").write_bytes(b"not an archive" * 50)
    code, _, err = run("cache", "import", "--no-inifile", "--cache-dir", "b", "bad.tar")
    assert code == 1 and "not a tar archive" in err and "nothing was imported" in err
    fill(tmp_path / "a")
    run("cache", "export", "--no-inifile", "--cache-dir", "a", "ok.tar")
    code, _, err = run("cache", "import", "--no-inifile", "--cache-dir", "b", "--max-entry-size", "100", "ok.tar")
    assert code == 1 and "more than the limit of 100" in err
    code, _, err = run("cache", "import", "--no-inifile", "--max-entry-size", "lots", "ok.tar")
    assert code == 2 and "--max-entry-size" in err
    code, _, err = run("cache")
    assert code == 2
    code, out, _ = run("--help")
    assert "cache" in out
