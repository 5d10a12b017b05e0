"""The ``pytest-tcav`` command line: its arguments, its ini file, its exit status.

Five commands: ``score`` (here and in :mod:`pytest_tcav.cli.score`),
``calibrate`` (:mod:`pytest_tcav.cli.calibrate`),
``diff`` (:mod:`pytest_tcav.cli.diff`), ``report``
(:mod:`pytest_tcav.cli.stored`) and ``cache`` (:mod:`pytest_tcav.cli.cache`).  ``score`` reads the ini file pytest would
read (:mod:`pytest_tcav.cli.inifile`), unless ``--inifile`` names another or
``--no-inifile`` asks for none.

The settings flags of ``score`` (``--concepts``, ``--random-sets``, ``--alpha``...)
are generated from :data:`pytest_tcav.config.OPTIONS`, the table the plugin
builds its ``--tcav-*`` options and ``tcav_*`` ini keys from, so the command
and the plugin cannot drift apart; the flags that only the command has
(``--model``, ``--concept``, ``--inputs``, the outputs...) are declared here.

Exit status of ``score``: 0 when every concept was scored, 2 on a usage error
(a missing or malformed argument or setting), 1 when scoring failed (any
:class:`~pytest_tcav.errors.TCAVError`: a missing folder, an unknown layer...,
or a model loader that failed), with a one-line message on stderr.  ``diff``
exits 0 (no change), 1 (changed) or 2; ``report`` 0, 1 (not written) or 2;
``cache`` 0, 1 (archive refused or not written) or 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any, TextIO

from pytest_tcav._version import __version__
from pytest_tcav.cli.cache import add_cache_parser, run_cache
from pytest_tcav.cli.calibrate import add_calibrate_parser, run_calibrate
from pytest_tcav.cli.diff import add_diff_parser, run_diff
from pytest_tcav.cli.inifile import PATH_KEYS, find_inifile, read_inifile
from pytest_tcav.cli.score import InputsOfClass, comma_list, score
from pytest_tcav.cli.stored import add_report_parser, run_report
from pytest_tcav.cli.usage import PROG, UsageError
from pytest_tcav.config import OPTIONS, Option, TCAVConfig, build_config, check_device_available
from pytest_tcav.errors import ConfigurationError, TCAVError

#: The settings that are flags of ``score`` too, in the table's order.
COMMAND_OPTIONS: tuple[Option, ...] = tuple(option for option in OPTIONS if option.cli_help is not None)

SCORE_EPILOG = """\
examples:
  pytest-tcav score --model example_suite.model:load_model --transform example_suite.model:transform \\
      --concepts example_suite/concepts --inputs example_suite/inputs/zebra --target 0 \\
      --layers features.conv2,features.conv3 --concept striped --concept watermark
  pytest-tcav score --inifile example_suite/pytest.ini --model model:load_model --target zebra \\
      --layers features.conv2,features.conv3 --html tcav.html

--inputs is a folder of images, a folder with one sub-folder per target (the
target's folder is used), or a class whose folder in the ini file's input
library is used (e.g. the inputs of another class than the target).  \
Without --concept every concept folder of the library is scored.
Exit status: 0 scored, 1 scoring failed (message on stderr), 2 usage error.
"""


# -- arguments --------------------------------------------------------------------------


def _add_settings(group: argparse._ArgumentGroup, name: str) -> None:
    """The table's settings of argument group ``name``: ``--random-sets N``, help ending in its ini key."""
    for option in COMMAND_OPTIONS:
        if option.cli_group != name:
            continue
        default = f"; default: {option.cli_default}" if option.cli_default else ""
        group.add_argument(option.cli_flag, dest=option.cli_dest, metavar=option.metavar,
                           help=f"{option.cli_help} ({option.key}{default})")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser: ``pytest-tcav score ...`` (``--help`` documents every option)."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Concept tests for PyTorch models (TCAV) outside pytest: score concepts to explore "
                    "before writing tests, compare two runs' reports, render a stored report.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    score_parser = commands.add_parser(
        "score", help="score concepts of a model and print the per-layer tables",
        description="Score concepts of a model for one target on some layers; print, per concept, the "
                    "per-layer table that a failing concept assertion prints.",
        epilog=SCORE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    what = score_parser.add_argument_group("what to score")
    what.add_argument("--model", required=True, metavar="MODULE:CALLABLE",
                      help="the model: a callable returning a torch.nn.Module (called with no arguments), "
                           "or a module attribute that is one; the current folder is importable")
    what.add_argument("--target", required=True, metavar="N|NAME",
                      help="class index, or a class name from --classes / tcav_classes")
    what.add_argument("--layers", required=True, action="append", metavar="A,B",
                      help="layer names from model.named_modules(), comma-separated (may repeat)")
    what.add_argument("--concept", action="append", metavar="NAME",
                      help="a concept folder of the library (may repeat, or comma-separated; default: all)")
    what.add_argument("--against", action="append", metavar="NAME",
                      help="relative TCAV: score each concept against these (may repeat, or comma-separated; "
                           "with several, against their union); --random-sets is then its number of repetitions")
    _add_settings(what, "what")
    what.add_argument("--inputs", metavar="DIR_OR_CLASS",
                      help="inputs: a folder of images, a folder of per-target folders (the target's is "
                           "used), or a class (index or name) whose folder in the ini file's tcav_inputs "
                           "is used (default: the target's folder there)")
    how = score_parser.add_argument_group(
        "settings (default: the ini file's tcav_* values, else the plugin's defaults)")
    how.add_argument("--direction", choices=("positive", "negative", "either"), default="positive",
                     help="which way the concept should push the target (default: positive)")
    _add_settings(how, "settings")
    ini = how.add_mutually_exclusive_group()
    ini.add_argument("--inifile", metavar="PATH",
                     help="read tcav_* defaults (and pythonpath) from this pytest.ini, tox.ini, setup.cfg or "
                          "pyproject.toml; its relative paths are relative to it (default: the file pytest "
                          "would use, searched from the current folder upwards)")
    ini.add_argument("--no-inifile", action="store_true",
                     help="read no ini file: only the command line and the plugin's defaults")
    out = score_parser.add_argument_group("output")
    out.add_argument("--json", metavar="PATH", help="write the results as a JSON report (as --tcav-json)")
    out.add_argument("--html", metavar="PATH", help="write a self-contained HTML report (as --tcav-html)")
    out.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                     help="show a progress bar on stderr (default: only when stderr is a terminal)")
    add_calibrate_parser(commands, _add_settings)
    add_diff_parser(commands)
    add_report_parser(commands)
    add_cache_parser(commands)
    return parser


# -- settings --------------------------------------------------------------------------


def _inifile(args: argparse.Namespace) -> tuple[Path | None, str]:
    """The ini file to read (named, found as pytest finds it, or none) and how to name it in errors."""
    if args.no_inifile:
        return None, ""
    if args.inifile:
        return Path(args.inifile), "--inifile"
    found = find_inifile(Path.cwd())
    return found, str(found)


def _settings(args: argparse.Namespace) -> tuple[TCAVConfig, Any]:
    """The settings (ini file, then the command line) and what ``inputs=`` to pass to the session."""
    raw: dict[str, tuple[Any, str]] = {}
    root = Path.cwd()
    inifile, label = _inifile(args)
    if inifile is not None:
        ini_raw, pythonpath = read_inifile(inifile, label)
        raw.update(ini_raw)
        root = inifile.resolve().parent
        for folder in reversed(pythonpath):
            if str(folder) not in sys.path:
                sys.path.insert(0, str(folder))
    for option in COMMAND_OPTIONS:
        value = getattr(args, option.cli_dest)
        if value is None or str(value).strip() == "":
            continue
        raw[option.key] = (Path(value).expanduser().resolve() if option.key in PATH_KEYS else value,
                           option.cli_flag)
    inputs: Any = None
    if args.inputs:
        path = Path(args.inputs).expanduser()
        if path.is_dir():
            from pytest_tcav.engine.examples import IMAGE_SUFFIXES

            has_images = any(p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES for p in path.iterdir())
            if has_images:
                inputs = path.resolve()
            else:
                raw["tcav_inputs"] = (path.resolve(), "--inputs")
        elif os.sep in args.inputs or "/" in args.inputs:
            raise UsageError(f"--inputs: folder {args.inputs!r} does not exist")
        else:
            if "tcav_inputs" not in raw:
                raise UsageError(f"--inputs: {args.inputs!r} is not a folder, and no input library "
                                 "(tcav_inputs in the ini file) is configured to look it up in")
            name = args.inputs.strip()
            inputs = InputsOfClass(int(name) if name.isdigit() else name)
    try:
        config = build_config(raw, root=root)
        check_device_available(config)  # a device this machine lacks: a usage error now, not torch's later
        return config, inputs
    except ConfigurationError as exc:
        raise UsageError(str(exc)) from None


def _checked(args: argparse.Namespace) -> tuple[TCAVConfig, Any]:
    """``score``'s and ``calibrate``'s settings and inputs (see :func:`_settings`), once they make sense."""
    if str(Path.cwd()) not in sys.path:  # as ``python -m`` does: --model may name a module here
        sys.path.insert(0, str(Path.cwd()))
    config, inputs = _settings(args)
    if not comma_list(args.layers):
        raise UsageError("--layers: give at least one layer name")
    if args.command == "calibrate":
        if config.concepts is None:
            raise UsageError("give --concepts DIR (or tcav_concepts in the ini file): the random library "
                             "to calibrate lives there")
    elif not comma_list(args.concept) and config.concepts is None:
        raise UsageError("give --concepts DIR (or tcav_concepts in the ini file), or --concept with folders")
    else:
        both = [name for name in comma_list(args.concept) if name in comma_list(args.against)]
        if both:
            raise UsageError(f"--against: {', '.join(both)} is also a --concept; a concept cannot be scored "
                             "against itself")
    return config, inputs


# -- running ---------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None, *, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Run the command line; returns the exit status instead of exiting (the caller exits)."""
    stdout = stdout if stdout is not None else sys.stdout
    stderr = stderr if stderr is not None else sys.stderr
    parser = build_parser()
    try:
        # argparse prints help and errors to sys.stdout / sys.stderr itself
        with redirect_stdout(stdout), redirect_stderr(stderr):
            args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version (0) or a usage error (2), already printed
        return int(exc.code) if isinstance(exc.code, int) else 2
    if args.command is None:
        parser.print_help(stderr)
        return 2
    try:
        if args.command == "diff":
            return run_diff(args, stdout)
        if args.command == "report":
            return run_report(args, stdout)
        if args.command == "cache":
            return run_cache(args, stdout)
        config, inputs = _checked(args)
        if args.command == "calibrate":
            return run_calibrate(args, config, inputs, stdout, stderr)
        return score(args, config, inputs, stdout, stderr)
    except UsageError as exc:
        stderr.write(f"{PROG} {args.command}: error: {exc}\n")
        return 2
    except TCAVError as exc:
        stderr.write(f"{PROG}: error: {exc}\n")
        return 1
    except OSError as exc:  # writing a report
        stderr.write(f"{PROG}: error: {type(exc).__name__}: {exc}\n")
        return 1


def entry_point() -> None:
    """The ``pytest-tcav`` console script."""
    sys.exit(main())
