"""Writing user-owned files: a failed write leaves the old file and no temporary file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pytest_tcav import atomic_files


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "deep" / "r.json"
    atomic_files.atomic_write_text(path, "old")
    assert path.read_text() == "old" and oct(path.stat().st_mode & 0o777) != oct(0o600)

    def broken(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError, match="disk full"):
        atomic_files.atomic_write_text(path, "new")
    assert path.read_text() == "old" and sorted(p.name for p in path.parent.iterdir()) == ["r.json"]
