"""The command line's progress bar: silent off a terminal, one line redrawn at a limited rate on one."""

from __future__ import annotations

import io

from pytest_tcav.cli.progress import ProgressBar


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_is_silent_off_a_terminal_unless_forced() -> None:
    stream = io.StringIO()
    bar = ProgressBar(3, label="steps", stream=stream)
    assert not bar.enabled
    for _ in range(3):
        bar.advance(status="working")
    bar.close()
    assert stream.getvalue() == ""
    forced = io.StringIO()
    with ProgressBar(4, label="steps", stream=forced, enabled=True, width=8) as bar:
        bar.set_status("loading")  # no line for a status alone: lines are per step
        bar.advance(status="a")
        bar.advance(0)  # no move, no line
        bar.update(10, status="b")  # clamped to the total
    assert forced.getvalue() == "[##......] 1/4 steps: a\n[########] 4/4 steps: b\n"


def test_progress_bar_redraws_one_line_on_a_terminal_at_a_limited_rate() -> None:
    now = [0.0]
    stream = FakeTerminal()
    bar = ProgressBar(100, stream=stream, width=10, min_interval=0.5, clock=lambda: now[0])
    assert bar.enabled
    for step in range(1, 100):
        now[0] = step * 0.01  # 99 steps in one second: only a few redraws
        bar.advance()
    bar.advance()  # the last step is always drawn
    bar.close()
    text = stream.getvalue()
    assert "\n" not in text[:-1] and text.endswith("[##########] 100/100\n")
    assert 2 <= text.count("\r") <= 5
    bar.advance()  # after close: nothing
    assert stream.getvalue() == text
