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

import os
import re
import types
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_tcav.checks import records
from pytest_tcav.errors import TCAVError

if TYPE_CHECKING:
    from pytest_tcav.session.session import TCAVSession

#: The package's folder: frames of files under it are the library's.
_PACKAGE = str(Path(__file__).resolve().parent.parent) + os.sep
#: ``nn.Module.__call__``'s own frames: the call into the model, not the model.
_MODULE_CALL = (os.path.join("torch", "nn", "modules", "module.py"), frozenset({"_wrapped_call_impl", "_call_impl"}))
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
    """``exc`` ready to re-raise to the user: hints added, the library's frames taken out.

    A :class:`TCAVError` is about the test's own line, so it loses every frame
    below it.  Any other exception keeps its frames when it was raised in the
    library itself (a bug to report, with the frames that locate it), and keeps
    only the model's frames when it was raised inside the model.
    """
    _channel_hint(exc)
    if isinstance(exc, TCAVError):
        if exc.__cause__ is not None:
            exc.__cause__.with_traceback(_trimmed(exc.__cause__.__traceback__))
        return exc.with_traceback(None)
    return exc.with_traceback(_trimmed(exc.__traceback__))


def _library(frame: types.FrameType) -> bool:
    filename = frame.f_code.co_filename
    if filename.startswith(_PACKAGE):
        return True
    return filename.endswith(_MODULE_CALL[0]) and frame.f_code.co_name in _MODULE_CALL[1]


def _trimmed(tb: types.TracebackType | None) -> types.TracebackType | None:
    """The model's part of a traceback, if it was raised inside the model; else the traceback unchanged.

    Raised inside the model means: below a call of ``nn.Module.__call__``, in
    a frame that is not the library's (the engine's forward hooks are).
    """
    entries = []
    while tb is not None:
        entries.append(tb)
        tb = tb.tb_next
    if not entries or _library(entries[-1].tb_frame):
        return entries[0] if entries else None
    calls = [k for k, entry in enumerate(entries) if _library(entry.tb_frame)
             and not entry.tb_frame.f_code.co_filename.startswith(_PACKAGE)]
    if not calls:
        return entries[0]
    kept = [entry for entry in entries[calls[0]:] if not _library(entry.tb_frame)]
    out: types.TracebackType | None = None
    for entry in reversed(kept):
        out = types.TracebackType(out, entry.tb_frame, entry.tb_lasti, entry.tb_lineno)
    return out


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
