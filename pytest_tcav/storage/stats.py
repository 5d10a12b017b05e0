"""What a disk store did, per kind of value: the counts behind the run's cache line."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class CacheStats:
    """What a :class:`DiskStore` did, per kind of value (for the run's summary line)."""

    hits: Counter[str] = field(default_factory=Counter)
    misses: Counter[str] = field(default_factory=Counter)
    writes: Counter[str] = field(default_factory=Counter)
    corrupt: Counter[str] = field(default_factory=Counter)
    stale: Counter[str] = field(default_factory=Counter)
    evicted: int = 0
    evicted_bytes: int = 0
    write_errors: int = 0

    def as_dict(self) -> dict[str, Any]:
        """Plain numbers, e.g. to send from an xdist worker to the controller."""
        return {
            "hits": dict(self.hits), "misses": dict(self.misses), "writes": dict(self.writes),
            "corrupt": dict(self.corrupt), "stale": dict(self.stale), "evicted": self.evicted,
            "evicted_bytes": self.evicted_bytes, "write_errors": self.write_errors,
        }

    def summary(self) -> str:
        """One line such as ``12 hits, 3 misses, 3 written, 0 evicted``."""
        text = (f"{sum(self.hits.values())} hits, {sum(self.misses.values())} misses, "
                f"{sum(self.writes.values())} written, {self.evicted} evicted")
        if self.corrupt:
            text += f", {sum(self.corrupt.values())} corrupt entries recomputed"
        if self.write_errors:
            text += ", not persisting (disk error)"
        return text
