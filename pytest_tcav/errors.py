"""Exceptions raised by pytest-tcav.

Every error the engine raises on bad input is a :class:`TCAVError`, so that the
pytest glue can turn it into a readable test failure (a user mistake) instead
of an internal traceback, and callers of the library can catch one base class.
"""

from __future__ import annotations


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
