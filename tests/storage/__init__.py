"""Tests of pytest_tcav.storage: the disk cache's format, bounds, concurrency and faults."""
