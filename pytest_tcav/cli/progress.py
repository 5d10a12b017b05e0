"""A small progress bar for the command line, written to stderr.

Scoring a concept library can take minutes on a CPU; a bar says that work is
moving and roughly how much is left.  It is deliberately tiny (no dependency):
one line redrawn with a carriage return on a terminal.  Where stderr is not a
terminal (CI logs, pipes, files) it stays silent by default, because redrawn
lines turn into hundreds of log lines; forced on there (``--progress``), it
writes one plain line per step instead, so a log stays readable.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO


def is_tty(stream: TextIO) -> bool:
    """Whether ``stream`` is an interactive terminal (streams without ``isatty`` are not)."""
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if isatty is not None else False
    except (ValueError, OSError):  # a closed stream
        return False


class ProgressBar:
    """``[#######.......] 3/8 label: status``, advanced with :meth:`advance`, ended with :meth:`close`.

    ``enabled=None`` shows the bar only when ``stream`` is a terminal.  On a
    terminal the line is redrawn at most every ``min_interval`` seconds (and
    always on the last step), so that thousands of small steps cost nothing.
    """

    def __init__(self, total: int, *, label: str = "", stream: TextIO | None = None,
                 enabled: bool | None = None, width: int = 24, min_interval: float = 0.1,
                 clock: Callable[[], float] | None = None) -> None:
        self.total = max(int(total), 0)
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.tty = is_tty(self.stream)
        self.enabled = self.tty if enabled is None else bool(enabled)
        self.width = width
        self.min_interval = min_interval
        self._clock = clock or time.monotonic
        self.position = 0
        self.status = ""
        self._last_draw = float("-inf")
        self._drawn_width = 0
        self._closed = False

    def render(self) -> str:
        """The bar's text for the current position (without carriage return or newline)."""
        total = self.total or 1
        filled = min(self.width, round(self.width * min(self.position, total) / total))
        bar = "#" * filled + "." * (self.width - filled)
        text = f"[{bar}] {min(self.position, self.total)}/{self.total}"
        if self.label:
            text += f" {self.label}"
        if self.status:
            text += f": {self.status}"
        return text

    def set_status(self, status: str) -> None:
        """Say what is being worked on now; redrawn only on a terminal (plain lines are per step)."""
        self.status = status
        if self.enabled and self.tty:
            self._draw(force=False)

    def advance(self, steps: int = 1, status: str | None = None) -> None:
        """Move ``steps`` forward (never past ``total``)."""
        self.update(self.position + steps, status)

    def update(self, position: int, status: str | None = None) -> None:
        """Move to ``position`` (clamped to ``0..total``); a plain-line bar writes one line per change."""
        position = max(0, min(int(position), self.total))
        if status is not None:
            self.status = status
        moved = position != self.position
        self.position = position
        if not self.enabled or self._closed:
            return
        if self.tty:
            self._draw(force=position >= self.total)
        elif moved:
            self.stream.write(self.render() + "\n")
            self.stream.flush()

    def _draw(self, force: bool) -> None:
        now = self._clock()
        if self._closed or (not force and now - self._last_draw < self.min_interval):
            return
        self._last_draw = now
        text = self.render()
        padding = " " * max(0, self._drawn_width - len(text))  # wipe the rest of a longer previous line
        self.stream.write("\r" + text + padding)
        self.stream.flush()
        self._drawn_width = len(text)

    def clear(self) -> None:
        """Wipe the bar's line on a terminal, so that other output can be printed in its place."""
        if self.enabled and self.tty and not self._closed and self._drawn_width:
            self.stream.write("\r" + " " * self._drawn_width + "\r")
            self.stream.flush()
            self._drawn_width = 0

    def redraw(self) -> None:
        """Draw the bar again now (after :meth:`clear`), on a terminal only."""
        if self.enabled and self.tty:
            self._draw(force=True)

    def close(self) -> None:
        """End the bar: on a terminal, draw the last state and move to a fresh line."""
        if self._closed:
            return
        if self.enabled and self.tty:
            self._draw(force=True)
            self.stream.write("\n")
            self.stream.flush()
        self._closed = True

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
