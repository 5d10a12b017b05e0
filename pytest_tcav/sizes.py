"""Byte sizes as people type them (``2GiB``, ``500MB``): torch-free, so the plugin can check them at startup."""

from __future__ import annotations

import re

from .errors import ConfigurationError

#: Default bound on the disk cache's total size.
DEFAULT_MAX_BYTES = 2 * 1024**3

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
