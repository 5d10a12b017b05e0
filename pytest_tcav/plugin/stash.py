"""The keys under which the plugin keeps its per-run state on ``config.stash``.

In a module of their own so that the plugin's modules share them without
importing one another (the YAML items need the session handle, the plugin
needs the YAML items): state lives on the run's config, never in module
globals, so two runs in one process (pytester) never see each other's.
"""

from __future__ import annotations

import pytest

from pytest_tcav.session.registry import SessionHandle

#: The run's session handle (the session itself is built on the first concept check).
HANDLE_KEY = pytest.StashKey[SessionHandle]()
#: The report files written at session finish (``reporting.Written``), for the terminal summary.
REPORTS_KEY = pytest.StashKey[list]()
#: On a pytest-xdist worker: the parts of the payload it sends to the controller (see plugin/xdist.py).
OUTBOX_KEY = pytest.StashKey[dict]()
#: On the pytest-xdist controller: ``(worker id, payload)`` of each finished worker, in the order they finished.
RECEIVED_KEY = pytest.StashKey[list]()
