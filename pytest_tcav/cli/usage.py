"""The command's name and its usage error, shared by every subcommand."""

from __future__ import annotations

PROG = "pytest-tcav"


class UsageError(Exception):
    """A bad argument, setting or input file: exit status 2, like argparse's own errors."""
