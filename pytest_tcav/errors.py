"""Exceptions raised by pytest-tcav.

Every error the engine raises on bad input is a :class:`TCAVError`, so that the
pytest glue can turn it into a readable test failure (a user mistake) instead
of an internal traceback, and callers of the library can catch one base class.
"""

from __future__ import annotations

import os
import types
from pathlib import Path
from typing import Any


class TCAVError(Exception):
    """Base class of every error raised by pytest-tcav on bad input or state."""


class LayerError(TCAVError, LookupError):
    """A requested layer does not exist, is never reached, or has an unusable output."""


class ConceptDataError(TCAVError, ValueError):
    """Concept, random or input examples are missing, unreadable or malformed."""


class InsufficientDataError(TCAVError, ValueError):
    """Too few examples or random sets for the requested statistical test."""


class TargetError(TCAVError, ValueError):
    """The target class is out of range, or a target callable returns the wrong shape."""


class NonFiniteError(TCAVError, FloatingPointError):
    """Activations or gradients contain NaN or infinity."""


class ConfigurationError(TCAVError, ValueError):
    """An option has an invalid value."""


class TCAVDataWarning(UserWarning):
    """Data that a concept test can still use, but probably not as intended.

    Raised for image files skipped as unreadable and for concept examples that
    also appear in a random set.  A category of its own lets a project turn
    exactly these into errors (``filterwarnings = error::pytest_tcav.TCAVDataWarning``)
    without touching other warnings.
    """


class TCAVCacheWarning(UserWarning):
    """The disk cache met a problem it worked around (corrupt entry, unwritable disk).

    Results stay correct: a bad entry is recomputed, an unwritable disk only
    means values are not persisted.  The warning says what to look at.
    """


class CacheArchiveError(TCAVError):
    """An archive of the disk cache (``pytest-tcav cache import``) is unreadable, unsafe or altered."""


class TCAVCalibrationWarning(UserWarning):
    """A concept check ran without a current calibration of its random library, or above alpha by it.

    Raised under ``tcav_require_calibration = warn``; the message says what is
    missing or stale and how to measure it (``pytest-tcav calibrate``).
    """


class TCAVPowerWarning(UserWarning):
    """An insignificance check passed that could not have detected an effect of the size asked about.

    Raised when a check without a margin has a detectable effect above
    ``tcav_max_detectable_effect``; the message says how many random sets and
    inputs would do.  Turn it into a failure with pytest's
    ``-W error::pytest_tcav.TCAVPowerWarning``, or state the claim with ``margin=``.
    """


class BaselineError(TCAVError):
    """A baseline is missing, unreadable, not comparable with the check, or has an unsafe name."""


class YamlSpecError(TCAVError):
    """A declarative test file does not follow the schema; ``str()`` is ``path:line: message``."""

    def __init__(self, path: Path, line: int, message: str) -> None:
        super().__init__(f"{shown_path(path)}:{line}: {message}")
        self.path = path
        self.line = line
        self.message = message


class ConceptTestFailure(AssertionError):
    """A concept check did not hold; ``result`` holds everything that was measured.

    ``result`` is the check's :class:`~pytest_tcav.engine.results.TCAVResult`
    (per-layer scores, p-values, settings) and ``reason`` the failure's
    explanation in words.  This module is a leaf of the package (it imports
    nothing of it, not even for annotations), so the type is named here in words.
    """

    def __init__(self, message: str, result: Any, reason: str) -> None:
        super().__init__(message)
        self.result = result
        self.reason = reason


class ConceptStabilityFailure(ConceptTestFailure):
    """A concept's per-layer scores moved beyond the tolerance since its baseline.

    ``comparison`` holds the before/after of every layer: a
    :class:`~pytest_tcav.checks.stability.StabilityResult`, whose ``result``
    (this run's :class:`~pytest_tcav.engine.results.TCAVResult`) is the failure's ``result``.
    """

    def __init__(self, message: str, comparison: Any, reason: str) -> None:
        super().__init__(message, comparison.result, reason)
        self.comparison = comparison


def shown_path(path: Path) -> str:
    """A path as short as it is clear: relative to the working directory when below it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


# Shown in tracebacks under their public names (``pytest_tcav.ConceptTestFailure``), as before.
for _shown_publicly in (ConceptTestFailure, ConceptStabilityFailure, BaselineError, YamlSpecError):
    _shown_publicly.__module__ = "pytest_tcav"
del _shown_publicly


# -- the traceback the user sees ---------------------------------------------------------------
# Here, in the leaf every layer may import, so that the checks (checks/raised.py) and the session's
# own entry points (TCAVSession.score) show an error the same way.

#: The package's folder: frames of files under it are the library's.
_PACKAGE = str(Path(__file__).resolve().parent) + os.sep
#: ``nn.Module.__call__``'s own frames: the call into the model, not the model.
_MODULE_CALL = (os.path.join("torch", "nn", "modules", "module.py"), frozenset({"_wrapped_call_impl", "_call_impl"}))


def without_library_frames(exc: BaseException) -> BaseException:
    """``exc`` ready to re-raise to the user, the library's frames taken out.

    A :class:`TCAVError` is about the user's own line, so it loses every frame
    below it (its cause keeps only the model's frames).  Any other exception
    keeps its frames when it was raised in the library itself (a bug to
    report, with the frames that locate it), and keeps only the model's frames
    when it was raised inside the model.  The function that re-raises it sets
    ``__tracebackhide__`` so that pytest hides its own frame too.
    """
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
