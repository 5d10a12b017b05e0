"""``pytest-tcav`` / ``python -m pytest_tcav``: score a model's concepts outside pytest.

Before writing concept tests one wants to look: which concepts matter for a
class, on which layers, how clearly.  ``pytest-tcav score`` runs the same
session and engine as the ``tcav`` fixture (so the numbers are the ones a test
would see) and prints, per concept, the table a failing assertion prints.  It
can write the same JSON and HTML reports as ``--tcav-json`` / ``--tcav-html``.

:mod:`~pytest_tcav.cli.main` reads the arguments and the ini file and sets the
exit status, :mod:`~pytest_tcav.cli.score` scores, :mod:`~pytest_tcav.cli.progress`
draws the progress bar.  ``pytest_tcav.cli:entry_point`` is the console script.
"""

from __future__ import annotations

from pytest_tcav.cli.main import UsageError, entry_point, main, read_inifile
from pytest_tcav.config import build_config  # what the command validates its settings with

__all__ = ["UsageError", "build_config", "entry_point", "main", "read_inifile"]
