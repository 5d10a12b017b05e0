"""torch's threads on a pytest-xdist worker: cores / workers, unless the user said otherwise.

torch starts as many intra-op threads as the machine has cores, in every
process.  Under ``pytest -n 2`` two workers then run twice as many busy
threads as there are cores, and OpenMP threads that wait for their turn spin:
a suite of concept tests ran about twice as slowly as serially.  With
``tcav_threads = auto`` (the default) each worker gets ``cores // workers``
threads (at least one).

The count must reach torch without importing it here (this module is loaded
by every pytest run), so it is given the way a user would give it: the
plugin sets ``OMP_NUM_THREADS`` in the worker before any conftest runs, and
torch, loaded later, starts with that many threads.  Anything the user does
afterwards wins by coming later: a ``torch.set_num_threads`` in a conftest or
a fixture.  A user's own ``OMP_NUM_THREADS`` or ``MKL_NUM_THREADS`` is left as
it is.  Where torch was loaded before the plugin could act (another plugin
imported it), the session sets the count when it is built, unless the
count changed since this module looked (:func:`pytest_tcav.session.torch_threads.apply_threads`).
"""

from __future__ import annotations

import dataclasses
import os
import sys
from typing import Any

import pytest

from pytest_tcav.config import TCAVConfig, parse_threads
from pytest_tcav.errors import ConfigurationError

#: Variables through which a user sets the threads of torch (and of the BLAS libraries) themselves.
USER_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
#: auto's choice for a worker whose torch was already loaded: (threads, torch's count then).
PLAN_KEY = pytest.StashKey[tuple[int, int]]()


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the platform tells it)."""
    affinity = getattr(os, "sched_getaffinity", None)
    if affinity is not None:
        try:
            return max(1, len(affinity(0)))
        except OSError:  # pragma: no cover - platform without the call's support
            pass
    return max(1, os.cpu_count() or 1)


def worker_count(environ: Any = os.environ) -> int | None:
    """The number of pytest-xdist workers if this process is one of them, else None."""
    if not environ.get("PYTEST_XDIST_WORKER"):
        return None
    try:
        count = int(environ.get("PYTEST_XDIST_WORKER_COUNT", ""))
    except ValueError:
        return None
    return count if count > 0 else None


def auto_threads(workers: int | None, cores: int, environ: Any = os.environ) -> int | None:
    """auto's choice: ``cores // workers`` (at least 1) on a worker of several; None: leave torch alone."""
    if workers is None or workers < 2 or any(environ.get(name) for name in USER_VARIABLES):
        return None
    return max(1, cores // workers)


def _setting(early_config: pytest.Config) -> int | None:
    """``--tcav-threads`` or ``tcav_threads``, as early as they can be read (invalid: auto; configure says why)."""
    value = getattr(getattr(early_config, "known_args_namespace", None), "tcav_threads", None)
    if value is None or str(value).strip() == "":
        try:
            value = early_config.getini("tcav_threads")
        except ValueError:  # pragma: no cover - the key is always declared by then
            value = None
    if value is None or str(value).strip() == "":
        return None
    try:
        return parse_threads(value, "tcav_threads")
    except ConfigurationError:
        return None


def prepare(early_config: pytest.Config) -> None:
    """Before any conftest: give this xdist worker's torch ``cores // workers`` threads (if auto applies)."""
    if _setting(early_config) is not None:
        return  # an explicit tcav_threads: the session sets it
    threads = auto_threads(worker_count(), usable_cores())
    if threads is None:
        return
    torch = sys.modules.get("torch")
    if torch is None:
        os.environ["OMP_NUM_THREADS"] = str(threads)
    else:  # loaded by another plugin: the session sets it, if nobody changes it before
        early_config.stash[PLAN_KEY] = (threads, int(torch.get_num_threads()))


def with_plan(config: pytest.Config, settings: TCAVConfig) -> TCAVConfig:
    """The settings, with auto's choice for the session to apply when torch was loaded before :func:`prepare`."""
    plan = config.stash.get(PLAN_KEY, None)
    return settings if plan is None else dataclasses.replace(settings, worker_threads=plan)
