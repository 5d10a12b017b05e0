"""``python -m pytest_tcav``: the ``pytest-tcav`` command line (see :mod:`pytest_tcav.cli`)."""

from __future__ import annotations

import sys

from pytest_tcav.cli import main

if __name__ == "__main__":
    sys.exit(main())
