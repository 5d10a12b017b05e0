"""torch's intra-op threads, set when a session is built (on the first concept check, before any work).

``tcav_threads = N`` sets N in every process.  Under pytest-xdist, ``auto``
usually reached torch already, through the ``OMP_NUM_THREADS`` the plugin set
before torch was loaded (:mod:`pytest_tcav.plugin.xdist_threads`); ``worker_threads``
is the case where torch was loaded first.
"""

from __future__ import annotations

import torch

from pytest_tcav.config import TCAVConfig


def apply_threads(config: TCAVConfig) -> TCAVConfig:
    """Set torch's threads as ``config`` says; returns ``config``.

    auto's choice for a worker whose torch was loaded before the plugin could
    act is set only if nobody changed torch's count since the plugin looked,
    so a ``torch.set_num_threads`` in a conftest wins.
    """
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    elif config.worker_threads is not None:
        threads, seen = config.worker_threads
        if torch.get_num_threads() == seen:
            torch.set_num_threads(threads)
    return config
