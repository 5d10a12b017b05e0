"""Reading setting values people type: cache sizes (``2GiB``, ``500MB``) and thread counts (``auto``, ``4``).

Apart from :mod:`pytest_tcav.config` so that the table of settings stays one
module's length; :mod:`~pytest_tcav.config` re-exports both functions.
"""

from __future__ import annotations

import re
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
