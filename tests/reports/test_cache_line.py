"""The end-of-run cache line, added up over the processes of a run."""

from __future__ import annotations

from pytest_tcav.reports.cache_line import cache_line, merge


def test_cache_line_adds_up_the_processes() -> None:
    disk = {"hits": {"cav": 2}, "misses": {"activations": 3, "cav": 1}, "writes": {"activations": 3, "cav": 1},
            "corrupt": {}, "stale": {}, "evicted": 0, "evicted_bytes": 0, "write_errors": 0}
    worker = {"dir": "/c", "mode": "readwrite", "computed": {"activations": 3, "cav": 1}, "reused": {"cav": 4},
              "disk": disk}
    merged = merge([worker, worker, {}])
    assert merged is not None and merged["processes"] == 2
    assert cache_line(merged) == ("computed 6 activations, 2 CAVs; disk: 4 hits, 8 misses, 8 written, "
                                  "0 evicted (/c, readwrite)")
    off = {"dir": None, "mode": "off", "computed": {"gradients": 1}, "reused": {}, "disk": None}
    assert cache_line(merge([off])) == "computed 1 gradients; disk cache off"
    assert cache_line(merge([{"computed": {}, "reused": {}, "disk": None}])) is None
    assert merge([]) is None and cache_line(None) is None
