"""What a pytest-xdist worker tells the controller: one JSON payload per worker.

The controller prints the summary and writes the reports, but the workers ran
the concept checks: their records, cache counts, baseline folders and (when a
report is asked for) environment must reach it.  pytest-xdist sends a worker's
``workeroutput`` once, when the worker finishes, so each hook that knows a part
:func:`put` s it during the worker's session finish, :class:`Exchange` sends
them all after those hooks (``trylast``) as one JSON document under one key,
and keeps each finished worker's payload on the controller, where the hooks
read their part back with :func:`parts` or :func:`by_worker`.  JSON rather
than pickles: the controller never imports torch to read it.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from pytest_tcav.plugin.stash import OUTBOX_KEY, RECEIVED_KEY

#: The ``workeroutput`` key of the payload.
WORKEROUTPUT_KEY = "pytest_tcav"


def sending(config: pytest.Config) -> bool:
    """Is this process a pytest-xdist worker, with a payload to send at session finish?"""
    return getattr(config, "workeroutput", None) is not None


def put(config: pytest.Config, part: str, value: Any) -> None:
    """On a worker: add one part (plain JSON data) to the payload it sends when it finishes."""
    config.stash.setdefault(OUTBOX_KEY, {})[part] = value


def by_worker(config: pytest.Config, part: str) -> dict[str, Any]:
    """On the controller: one part of every finished worker's payload, by worker id, in the order they finished."""
    return {worker: payload[part] for worker, payload in config.stash.get(RECEIVED_KEY, []) if part in payload}


def parts(config: pytest.Config, part: str) -> list[Any]:
    """On the controller: one part of every finished worker's payload, in the order the workers finished."""
    return [payload[part] for _worker, payload in config.stash.get(RECEIVED_KEY, []) if part in payload]


class Exchange:
    """The hooks that send the payload (on a worker) and receive it (on the controller).

    Registered by the plugin at configure time, like the baseline tracker.
    """

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        # trylast: after every hook that puts a part; pytest-xdist sends workeroutput after all of them.
        workeroutput = getattr(session.config, "workeroutput", None)
        if workeroutput is not None:
            workeroutput[WORKEROUTPUT_KEY] = json.dumps(session.config.stash.get(OUTBOX_KEY, {}))

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        data = getattr(node, "workeroutput", {}).get(WORKEROUTPUT_KEY)
        if not data:
            return
        received = node.config.stash.setdefault(RECEIVED_KEY, [])
        worker = getattr(getattr(node, "gateway", None), "id", None) or str(len(received))
        received.append((worker, json.loads(data)))
