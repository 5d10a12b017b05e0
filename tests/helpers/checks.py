"""Checks on a session a test built itself, through the public assertions.

``TCAVSession.assert_significant`` and its siblings are gone: the assertions use the current
session (the pytest run's).  A test that builds its own ``TCAVSession`` (other settings, its
own store) makes it current for a block instead::

    with current(session):
        assert_concept_significant(model, concept, target=1, layers="relu")
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from pytest_tcav.session.registry import SessionHandle, activate, deactivate
from pytest_tcav.session.session import TCAVSession


class _Built(SessionHandle):
    """A handle of a session that already exists (a plain handle builds its own on first use)."""

    def __init__(self, session: TCAVSession) -> None:
        super().__init__(session.config)
        self._session = session


@contextmanager
def current(session: TCAVSession) -> Iterator[TCAVSession]:
    """``session`` is the one the assertion functions use inside the block."""
    handle = _Built(session)
    activate(handle)
    try:
        yield session
    finally:
        deactivate(handle)
