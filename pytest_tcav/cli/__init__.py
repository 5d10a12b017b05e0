"""``pytest-tcav`` / ``python -m pytest_tcav``: score a model's concepts outside pytest, compare reports.

Before writing concept tests one wants to look: which concepts matter for a
class, on which layers, how clearly.  ``pytest-tcav score`` runs the same
session and engine as the ``tcav`` fixture (so the numbers are the ones a test
would see) and prints, per concept, the table a failing assertion prints.  It
can write the same JSON and HTML reports as ``--tcav-json`` / ``--tcav-html``.

:mod:`~pytest_tcav.cli.main` reads the arguments and sets the exit status,
:mod:`~pytest_tcav.cli.inifile` finds and reads the ini file as pytest does,
:mod:`~pytest_tcav.cli.score` scores, :mod:`~pytest_tcav.cli.progress` draws the
progress bar, :mod:`~pytest_tcav.cli.diff` compares two JSON reports
(``pytest-tcav diff``) and :mod:`~pytest_tcav.cli.stored` reads them back and
renders one as HTML (``pytest-tcav report``).  ``pytest_tcav.cli:entry_point`` is the console script.
"""

from __future__ import annotations

from pytest_tcav.cli.inifile import find_inifile, read_inifile
from pytest_tcav.cli.main import entry_point, main
from pytest_tcav.cli.usage import UsageError
from pytest_tcav.config import build_config  # what the command validates its settings with

__all__ = ["UsageError", "build_config", "entry_point", "find_inifile", "main", "read_inifile"]
