"""Units that another process is computing are left for later, not waited on."""

from __future__ import annotations

import pytest

from pytest_tcav.engine.schedule import run_units
from pytest_tcav.storage.memory import StoreBusy


def test_busy_units_are_tried_again_after_the_others() -> None:
    log: list[str] = []
    busy_for = {"a": 1, "b": 0, "c": 2}

    def unit(name: str):
        def run(wait: bool) -> None:
            if not wait and busy_for[name] > 0:
                busy_for[name] -= 1
                log.append(f"{name} busy")
                raise StoreBusy(name)
            log.append(f"{name} done")
        return run

    after: list[int] = []
    run_units([unit("a"), unit("b"), unit("c")], after=lambda: after.append(1))
    assert log == ["a busy", "b done", "c busy", "a done", "c busy", "c done"]
    assert len(after) == 3  # once per unit that ran


def test_when_everything_is_busy_the_first_is_waited_for() -> None:
    calls: list[bool] = []

    def always_busy(wait: bool) -> None:
        calls.append(wait)
        if not wait:
            raise StoreBusy("held elsewhere")

    run_units([always_busy])
    assert calls == [False, True]


def test_other_errors_propagate() -> None:
    def broken(wait: bool) -> None:
        raise ValueError("a bug")

    with pytest.raises(ValueError, match="a bug"):
        run_units([broken])
