"""The end-of-run line about the cache, from plain per-process counts (torch-free).

Each process (a serial run, or every pytest-xdist worker) reports
:meth:`TCAVSession.cache_stats`: what its store computed and reused, and what
its disk cache hit, missed, wrote and evicted.  The controller adds the
workers' counts up, so the line reads the same whether a run was serial or
parallel: with the disk cache's locks, each shared value is computed once in
either case.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

#: Kinds of values in the order the line names them.
KINDS = ("activations", "gradients", "cav")
_LABELS = {"activations": "activations", "gradients": "gradients", "cav": "CAVs"}


def merge(stats: Iterable[dict[str, Any]]) -> dict[str, Any] | None:
    """Counts of several processes added up; ``None`` when there are none."""
    stats = [s for s in stats if s]
    if not stats:
        return None
    computed: Counter[str] = Counter()
    reused: Counter[str] = Counter()
    disk: dict[str, Any] | None = None
    for s in stats:
        computed.update(s.get("computed") or {})
        reused.update(s.get("reused") or {})
        if s.get("disk") is not None:
            if disk is None:
                disk = {"hits": Counter(), "misses": Counter(), "writes": Counter(), "corrupt": Counter(),
                        "stale": Counter(), "evicted": 0, "evicted_bytes": 0, "write_errors": 0}
            for name in ("hits", "misses", "writes", "corrupt", "stale"):
                disk[name].update(s["disk"].get(name) or {})
            for name in ("evicted", "evicted_bytes", "write_errors"):
                disk[name] += int(s["disk"].get(name) or 0)
    first = stats[0]
    return {
        "dir": first.get("dir"),
        "mode": first.get("mode", "off"),
        "processes": len(stats),
        "computed": dict(computed),
        "reused": dict(reused),
        "disk": None if disk is None else {k: dict(v) if isinstance(v, Counter) else v for k, v in disk.items()},
    }


def _counts(counts: dict[str, int]) -> str:
    kinds = [k for k in KINDS if counts.get(k)] + sorted(k for k in counts if k not in KINDS and counts[k])
    return ", ".join(f"{counts[k]} {_LABELS.get(k, k)}" for k in kinds) or "nothing"


def cache_line(merged: dict[str, Any] | None) -> str | None:
    """One line such as ``computed 12 activations, 3 gradients, 30 CAVs; disk: 0 hits, ... (DIR, readwrite)``.

    ``None`` when the run computed and reused nothing (no concept was tested).
    """
    if merged is None:
        return None
    computed, reused, disk = merged["computed"], merged["reused"], merged["disk"]
    if not any(computed.values()) and not any(reused.values()) and not (disk and any(disk["hits"].values())):
        return None
    line = f"computed {_counts(computed)}"
    if disk is None:
        return f"{line}; disk cache off"
    hits, misses, writes = (sum(disk[name].values()) for name in ("hits", "misses", "writes"))
    line += f"; disk: {hits} hits, {misses} misses, {writes} written, {disk['evicted']} evicted"
    if disk["corrupt"]:
        line += f", {sum(disk['corrupt'].values())} corrupt entries recomputed"
    if disk["write_errors"]:
        line += ", not persisting (disk error)"
    return f"{line} ({merged['dir']}, {merged['mode']})"
