"""Which session the assertion functions use, so that they work without a fixture.

``assert_concept_significant`` is a plain function users import; it needs the
run's settings and shared cache.  The plugin makes its session active at
``pytest_configure`` and inactive at ``pytest_unconfigure``; nested pytest
runs (``pytester``) push and pop their own, hence a stack.  Outside pytest
(a notebook, a script) one default session with default settings is created
on first use.

A session is built lazily, on the first concept check, because building it
imports torch: a pytest run with no concept test pays nothing for the plugin.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_tcav.config import TCAVConfig

if TYPE_CHECKING:
    from pytest_tcav.session.session import TCAVSession


class SessionHandle:
    """The session of one pytest run (or of the default), built on first use."""

    def __init__(self, config: TCAVConfig) -> None:
        self.config = config
        self.current_nodeid: str | None = None
        self.current_path: Path | None = None  # the running test's file (set by the plugin)
        self._session: TCAVSession | None = None

    def get(self) -> TCAVSession:
        if self._session is None:
            from pytest_tcav.session.session import TCAVSession

            self._session = TCAVSession(self.config, nodeid=lambda: self.current_nodeid,
                                        test_path=lambda: self.current_path)
        return self._session

    @property
    def built(self) -> bool:
        return self._session is not None

    def records(self) -> list[Any]:
        """Every concept check made so far (none if the session was never built)."""
        return list(self._session.records) if self._session is not None else []


_active: list[SessionHandle] = []
_default: SessionHandle | None = None


def activate(handle: SessionHandle) -> None:
    """Make ``handle`` the session of the assertion functions until :func:`deactivate`."""
    _active.append(handle)


def deactivate(handle: SessionHandle) -> None:
    """Remove ``handle``; the session active before it becomes current again."""
    for index in range(len(_active) - 1, -1, -1):
        if _active[index] is handle:
            del _active[index]
            return


def active_handle() -> SessionHandle:
    """The handle of the innermost running pytest session, else the default one."""
    global _default
    if _active:
        return _active[-1]
    if _default is None:
        _default = SessionHandle(TCAVConfig())
    return _default


def current_session() -> TCAVSession:
    """The session assertion functions use now."""
    return active_handle().get()
