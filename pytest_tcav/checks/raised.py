"""A check that raised before its verdict: what its record says, and the traceback the user sees.

Whatever stops a check (a :class:`~pytest_tcav.errors.TCAVError` about the
test's setup, or any exception from inside the user's model) must leave a
record, or the check vanishes from the summary and the reports while its
test fails.  The traceback should point at what the user can fix: the test's
line and, for an exception raised inside the model, the model's own frames,
not the engine's and storage's frames between them (nor the frames of
``nn.Module.__call__``), which say nothing to the user and push the model's
line off the screen.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from pytest_tcav.checks import records
from pytest_tcav.errors import without_library_frames

if TYPE_CHECKING:
    from pytest_tcav.session.session import TCAVSession

#: torch's message for a convolution fed the wrong number of channels.
_CHANNELS = re.compile(r"expected input\[[^\]]*\] to have (\d+) channels, but got (\d+) channels")


def recorded(session: TCAVSession, entry: records.CheckRecord, exc: BaseException) -> BaseException:
    """Record ``exc`` as the check's error; returns it ready to re-raise (see :func:`shown`)."""
    _channel_hint(exc)
    fields = error_fields(exc)
    session.record(records.failed_to_run(entry, fields["message"], fields["error"]))
    return shown(exc)


def error_fields(exc: BaseException) -> dict[str, Any]:
    """What a record keeps of an exception: its type's name and its message, notes included."""
    notes = [str(note) for note in getattr(exc, "__notes__", None) or []]
    return {"error": type(exc).__name__, "message": "\n".join([str(exc), *notes]).strip()}


def shown(exc: BaseException) -> BaseException:
    """``exc`` ready to re-raise to the user: hints added, the library's frames taken out
    (:func:`pytest_tcav.errors.without_library_frames`, which the session's ``score`` uses too)."""
    _channel_hint(exc)
    return without_library_frames(exc)


def _channel_hint(exc: BaseException) -> None:
    """A convolution that got the wrong number of channels: say how to convert the images."""
    match = _CHANNELS.search(str(exc))
    if match is None or not hasattr(exc, "add_note"):
        return
    expected, got = int(match.group(1)), int(match.group(2))
    mode = {3: "RGB", 1: "L"}.get(expected)
    if mode is None:
        return
    kind = {1: "greyscale", 2: "greyscale with alpha", 3: "RGB", 4: "RGBA"}.get(got, f"{got}-channel")
    exc.add_note(f"pytest-tcav: the examples have {got} channel(s) ({kind} images?) and the model's layer expects "
                 f"{expected}; convert them in the transform (tcav_transform or transform=), e.g. "
                 f"image.convert({mode!r}) before turning the image into a tensor")
