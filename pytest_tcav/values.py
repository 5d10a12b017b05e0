"""Reading setting values people type: cache sizes (``2GiB``, ``500MB``), thread counts (``auto``, ``4``), devices.

Apart from :mod:`pytest_tcav.config` so that the table of settings stays one
module's length; :mod:`~pytest_tcav.config` re-exports both functions.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from pytest_tcav.errors import ConfigurationError

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?)b?\s*$", re.IGNORECASE)


def parse_size(text: str | int | None) -> int | None:
    """Bytes from ``"2GiB"``, ``"500MB"``, ``"1.5g"``, ``"1048576"``; ``None``/``"none"``/``"0"`` mean unbounded.

    Binary and decimal prefixes are both accepted (``GiB`` = 1024**3,
    ``GB`` = 1000**3; a bare ``G`` is binary), so a command-line option can
    take whatever people type.
    """
    if text is None:
        return None
    if isinstance(text, int):
        return None if text <= 0 else text
    if text.strip().lower() in ("none", "unlimited", "0", ""):
        return None
    match = _SIZE_RE.match(text)
    if not match:
        raise ConfigurationError(f"cannot read cache size {text!r}; write e.g. 2GiB, 500MB or a number of bytes")
    number, prefix, binary = match.groups()
    power = "kmgt".find(prefix.lower()) + 1 if prefix else 0
    base = 1024 if (binary or (prefix and not text.strip().lower().endswith("b"))) else 1000
    size = int(float(number) * base**power)
    return None if size <= 0 else size


def parse_threads(text: Any, origin: str) -> int | None:
    """``tcav_threads``: ``auto`` (None) or a number of threads (at least 1)."""
    value = str(text).strip()
    if value.lower() == "auto":
        return None
    if not value.isdigit() or int(value) < 1:
        raise ConfigurationError(f"{origin} must be auto or a number of threads (at least 1), got {text!r}")
    return int(value)


def check_device(device: str | None, origin: str) -> None:
    """``tcav_device`` names a device this machine has: said at startup, not by torch in every test.

    Imports torch, so it is called only when the setting is given.
    """
    if device is None or device == "cpu":
        return
    import torch

    kind, _, index = device.partition(":")
    backend = {"cuda": torch.cuda, "xpu": getattr(torch, "xpu", None), "mps": torch.backends.mps}[kind]
    count = 0
    if backend is not None and backend.is_available():
        count = int(backend.device_count()) if hasattr(backend, "device_count") else 1
    if count > int(index or 0):
        return
    have = "none" if count == 0 else f"{kind}:0" + (f" to {kind}:{count - 1}" if count > 1 else "")
    raise ConfigurationError(
        f"{origin}: {device!r} is not available on this machine ({kind} devices: "
        f"{have}; torch {torch.__version__}); use {'one of those' if count else 'cpu'}, or leave tcav_device "
        "unset to test on CUDA when present, else the CPU"
    )


def default_cache_dir(config: Any) -> Path:
    """``d/tcav`` under pytest's cache directory (its ``cache_dir`` ini option, ``.pytest_cache``)."""
    try:
        cache_dir = str(config.getini("cache_dir") or ".pytest_cache")
    except ValueError:  # the cacheprovider plugin is disabled (-p no:cacheprovider)
        cache_dir = ".pytest_cache"
    return Path(config.rootpath) / os.path.expanduser(os.path.expandvars(cache_dir)) / "d" / "tcav"
