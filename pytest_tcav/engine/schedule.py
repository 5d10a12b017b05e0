"""Run units of work so that concurrent workers share them instead of waiting on each other.

Under pytest-xdist, tests on different workers often need the same values
(the activations of shared random sets, the CAVs between them).  The disk
cache's locks make sure each value is computed once; but a worker that waits
for a lock another worker holds does nothing meanwhile.  So each unit is first
tried without waiting: a unit whose values another process is computing
raises :class:`~pytest_tcav.storage.memory.StoreBusy` and is put back, and the
worker moves on to the next.  When every remaining unit is busy, the worker
waits for the first (by then often done, so it is just read).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pytest_tcav.storage.memory import StoreBusy

#: A unit of work: called with ``wait=False`` it may raise StoreBusy; with ``wait=True`` it must not.
Unit = Callable[[bool], None]


def run_units(units: Sequence[Unit], *, after: Callable[[], None] = lambda: None) -> None:
    """Run every unit once, in order, except that a busy unit is retried after the others.

    ``after`` runs after each unit that ran (to give its memory back, say).
    """
    pending = list(units)
    while pending:
        busy: list[Unit] = []
        for unit in pending:
            try:
                unit(False)
            except StoreBusy:
                busy.append(unit)
                continue
            after()
        if len(busy) == len(pending):  # nothing else to do: wait for the first
            busy.pop(0)(True)
            after()
        pending = busy
