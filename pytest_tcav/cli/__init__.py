"""``pytest-tcav`` / ``python -m pytest_tcav``: score a model's concepts outside pytest.

Before writing concept tests one wants to look: which concepts matter for a
class, on which layers, how clearly.  ``pytest-tcav score`` runs the same
session and engine as the ``tcav`` fixture (so the numbers are the ones a test
would see) and prints, per concept, the table a failing assertion prints.  It
can write the same JSON and HTML reports as ``--tcav-json`` / ``--tcav-html``.

Exit status: 0 when every concept was scored, 2 on a usage error (a missing or
malformed argument or setting), 1 when scoring failed (any
:class:`~pytest_tcav.errors.TCAVError`: a missing folder, an unknown layer...,
or a model loader that failed), with a one-line message on stderr.
"""

from __future__ import annotations

import argparse
import configparser
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from pytest_tcav._version import __version__
from pytest_tcav.config import OPTIONS, TCAVConfig, build_config, import_callable
from pytest_tcav.errors import ConfigurationError, TCAVError
from pytest_tcav.cli.progress import ProgressBar

PROG = "pytest-tcav"

#: ``--flag`` of the score command -> the ini key it overrides.
SETTING_FLAGS = {
    "concepts": "tcav_concepts",
    "classes": "tcav_classes",
    "transform": "tcav_transform",
    "random_sets": "tcav_random_sets",
    "alpha": "tcav_alpha",
    "seed": "tcav_seed",
    "device": "tcav_device",
    "batch_size": "tcav_batch_size",
    "method": "tcav_method",
    "n_steps": "tcav_n_steps",
    "correction": "tcav_correction",
}
#: ini keys whose values are folders, relative to the ini file's directory.
_PATH_KEYS = frozenset(option.key for option in OPTIONS if option.metavar == "DIR")

SCORE_EPILOG = """\
examples:
  pytest-tcav score --model example_suite.model:load_model --transform example_suite.model:transform \\
      --concepts example_suite/concepts --inputs example_suite/inputs/zebra --target 0 \\
      --layers features.conv2,features.conv3 --concept striped --concept watermark
  pytest-tcav score --inifile example_suite/pytest.ini --model model:load_model --target zebra \\
      --layers features.conv2,features.conv3 --html tcav.html

--inputs is a folder of images, a folder with one sub-folder per target (the
target's folder is used), or a class whose folder in the ini file's input
library is used (e.g. the inputs of another class than the target).  Without --concept every concept folder of the library is scored.
Exit status: 0 scored, 1 scoring failed (message on stderr), 2 usage error.
"""


class UsageError(Exception):
    """A bad argument or setting: exit status 2, like argparse's own errors."""


@dataclass(frozen=True)
class InputsOfClass:
    """``--inputs NAME``: the inputs of that class (index or name) in the input library."""

    target: int | str


# -- arguments --------------------------------------------------------------------------


def _comma_list(values: Sequence[str] | None) -> list[str]:
    """``--layers a,b --layers c`` -> ``["a", "b", "c"]``."""
    return [part.strip() for value in values or [] for part in value.split(",") if part.strip()]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser: ``pytest-tcav score ...`` (``--help`` documents every option)."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Concept tests for PyTorch models (TCAV) outside pytest: score concepts to explore "
                    "before writing tests.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    score = commands.add_parser(
        "score", help="score concepts of a model and print the per-layer tables",
        description="Score concepts of a model for one target on some layers; print, per concept, the "
                    "per-layer table that a failing concept assertion prints.",
        epilog=SCORE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    what = score.add_argument_group("what to score")
    what.add_argument("--model", required=True, metavar="MODULE:CALLABLE",
                      help="the model: a callable returning a torch.nn.Module (called with no arguments), "
                           "or a module attribute that is one; the current folder is importable")
    what.add_argument("--target", required=True, metavar="N|NAME",
                      help="class index, or a class name from --classes / tcav_classes")
    what.add_argument("--layers", required=True, action="append", metavar="A,B",
                      help="layer names from model.named_modules(), comma-separated (may repeat)")
    what.add_argument("--concept", action="append", metavar="NAME",
                      help="a concept folder of the library (may repeat, or comma-separated; default: all)")
    what.add_argument("--concepts", metavar="DIR", help="concept library folder (tcav_concepts)")
    what.add_argument("--inputs", metavar="DIR_OR_CLASS",
                      help="inputs: a folder of images, a folder of per-target folders (the target's is "
                           "used), or a class (index or name) whose folder in the ini file's tcav_inputs "
                           "is used (default: the target's folder there)")
    how = score.add_argument_group("settings (default: the --inifile's tcav_* values, else the plugin's defaults)")
    how.add_argument("--direction", choices=("positive", "negative", "either"), default="positive",
                     help="which way the concept should push the target (default: positive)")
    how.add_argument("--random-sets", metavar="N", help="random counterparts per concept (tcav_random_sets)")
    how.add_argument("--seed", metavar="SEED", help="seed of random sets and CAV training (tcav_seed)")
    how.add_argument("--alpha", metavar="ALPHA", help="significance level over the layers (tcav_alpha)")
    how.add_argument("--method", metavar="METHOD", help="gradient or integrated_gradients (tcav_method)")
    how.add_argument("--n-steps", metavar="N", help="integrated-gradients steps (tcav_n_steps)")
    how.add_argument("--correction", metavar="NAME", help="holm, bonferroni or none (tcav_correction)")
    how.add_argument("--transform", metavar="MODULE:CALLABLE",
                     help="PIL image -> input tensor (tcav_transform)")
    how.add_argument("--classes", metavar="NAME=INDEX,...", help="class names for --target (tcav_classes)")
    how.add_argument("--device", metavar="DEVICE", help="cpu, cuda, cuda:1... (tcav_device; default: CUDA "
                                                        "when present, else the CPU)")
    how.add_argument("--batch-size", metavar="N", help="examples per pass (tcav_batch_size)")
    how.add_argument("--inifile", metavar="PATH",
                     help="read tcav_* defaults (and pythonpath) from this pytest.ini, tox.ini, setup.cfg or "
                          "pyproject.toml; its relative paths are relative to it")
    out = score.add_argument_group("output")
    out.add_argument("--json", metavar="PATH", help="write the results as a JSON report (as --tcav-json)")
    out.add_argument("--html", metavar="PATH", help="write a self-contained HTML report (as --tcav-html)")
    out.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                     help="show a progress bar on stderr (default: only when stderr is a terminal)")
    return parser


# -- the ini file ----------------------------------------------------------------------


def read_inifile(path: Path) -> tuple[dict[str, tuple[Any, str]], list[Path]]:
    """``tcav_*`` values (key -> (value, origin)) and ``pythonpath`` folders of a pytest ini file.

    Reads ``[pytest]`` (pytest.ini, tox.ini), ``[tool:pytest]`` (setup.cfg) and
    ``[tool.pytest.ini_options]`` (pyproject.toml), like pytest; folder values
    become absolute, relative to the file's directory.
    """
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"--inifile: {str(path)!r} is not a file")
    values: dict[str, Any]
    if path.suffix == ".toml":
        import tomllib

        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise UsageError(f"--inifile: {path} is not valid TOML ({exc})") from None
        values = data.get("tool", {}).get("pytest", {}).get("ini_options")
        if values is None:
            raise UsageError(f"--inifile: {path} has no [tool.pytest.ini_options] table")
    else:
        parser = configparser.ConfigParser(interpolation=None)
        try:
            parser.read(path, encoding="utf-8")
        except configparser.Error as exc:
            raise UsageError(f"--inifile: cannot read {path} ({type(exc).__name__}: {exc})") from None
        section = next((s for s in ("pytest", "tool:pytest") if parser.has_section(s)), None)
        if section is None:
            raise UsageError(f"--inifile: {path} has no [pytest] (or [tool:pytest]) section")
        values = dict(parser.items(section))
    root = path.resolve().parent
    raw: dict[str, tuple[Any, str]] = {}
    for option in OPTIONS:
        value = values.get(option.key)
        if value is None or value == "" or value == []:
            continue
        if option.key in _PATH_KEYS:
            value = (root / os.path.expanduser(str(value).strip())).resolve()
        raw[option.key] = (value, f"{option.key} in {path.name}")
    pythonpath = values.get("pythonpath") or []
    entries = pythonpath.split() if isinstance(pythonpath, str) else [str(p) for p in pythonpath]
    return raw, [(root / entry).resolve() for entry in entries]


# -- progress --------------------------------------------------------------------------


class ObservedStore:
    """The session's store, reporting each step of the engine to ``on_step(kind, done)``.

    The engine fetches everything it computes from its store (activations,
    gradients, CAVs per layer), so watching the store is how the command line
    sees progress without the engine knowing about progress bars.
    """

    def __init__(self, store: Any, on_step: Callable[[str, bool], None]) -> None:
        self._store = store
        self._on_step = on_step

    def fetch(self, kind: str, key: str, compute: Callable[[], Any], **kwargs: Any) -> Any:
        self._on_step(kind, False)
        return self._store.fetch(kind, key, compute, **kwargs)

    def fetch_many(self, kind: str, keys: list[str], compute_many: Callable[[list[str]], Any], **kwargs: Any) -> Any:
        self._on_step(kind, False)
        result = self._store.fetch_many(kind, keys, compute_many, **kwargs)
        self._on_step(kind, True)
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


@contextmanager
def _above_bar(bar: ProgressBar, stream: TextIO) -> Iterator[None]:
    """Print to ``stream`` without mixing into a bar being redrawn on the same terminal."""
    bar.clear()
    yield
    stream.flush()
    bar.redraw()


# -- scoring ---------------------------------------------------------------------------


def _load_model(spec: str) -> Any:
    from torch import nn

    value = import_callable(spec, "--model")
    if isinstance(value, nn.Module):
        return value
    try:
        model = value()
    except TCAVError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure of the user's loader is reported in one line
        raise TCAVError(f"--model: {spec} raised {type(exc).__name__}: {exc}") from exc
    if not isinstance(model, nn.Module):
        raise ConfigurationError(f"--model: {spec}() returned {type(model).__name__}, not a torch.nn.Module")
    return model


def _settings(args: argparse.Namespace) -> tuple[TCAVConfig, Any]:
    """The settings (ini file, then the command line) and what ``inputs=`` to pass to the session."""
    raw: dict[str, tuple[Any, str]] = {}
    root = Path.cwd()
    if args.inifile:
        ini_raw, pythonpath = read_inifile(Path(args.inifile))
        raw.update(ini_raw)
        root = Path(args.inifile).resolve().parent
        for folder in reversed(pythonpath):
            if str(folder) not in sys.path:
                sys.path.insert(0, str(folder))
    for dest, key in SETTING_FLAGS.items():
        value = getattr(args, dest)
        if value is None or str(value).strip() == "":
            continue
        flag = "--" + dest.replace("_", "-")
        raw[key] = (Path(value).expanduser().resolve() if key in _PATH_KEYS else value, flag)
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
                                 "(tcav_inputs in --inifile) is configured to look it up in")
            name = args.inputs.strip()
            inputs = InputsOfClass(int(name) if name.isdigit() else name)
    try:
        return build_config(raw, root=root), inputs
    except ConfigurationError as exc:
        raise UsageError(str(exc)) from None


def _record(index: int, result: Any, layers: list[str], direction: str) -> dict[str, Any]:
    """A session-style record of one scored concept, for the reports."""
    from pytest_tcav.checks.records import result_fields

    return {"nodeid": None, "seq": index, "concept": result.concept, "target": result.target,
            "layers": layers, "expectation": None, "direction": direction, "require": None,
            "score_range": None, "alpha": result.alpha, **result_fields(result), "outcome": "scored",
            "message": None}


def score(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    """The ``score`` command; raises :class:`UsageError` or :class:`TCAVError`, returns 0 when done."""
    if str(Path.cwd()) not in sys.path:  # as ``python -m`` does: --model may name a module here
        sys.path.insert(0, str(Path.cwd()))
    config, inputs = _settings(args)
    layers = _comma_list(args.layers)
    if not layers:
        raise UsageError("--layers: give at least one layer name")
    target: int | str = int(args.target) if args.target.strip().isdigit() else args.target.strip()

    from pytest_tcav.session.session import TCAVSession

    session = TCAVSession(config)
    concepts = _comma_list(args.concept)
    if not concepts:
        if not session.concepts.configured:
            raise UsageError("give --concepts DIR (or tcav_concepts in --inifile), or --concept with folders")
        concepts = session.concepts.names()
        if not concepts:
            raise TCAVError(f"the concept library {str(config.concepts)!r} has no concept folders")
    if isinstance(inputs, InputsOfClass):
        inputs = session.inputs.for_target(inputs.target)  # class names through tcav_classes, like a target
    model = _load_model(args.model)
    model = model.to(session.device).eval()

    bar = ProgressBar(len(concepts) * len(layers), label="concept-layers", stream=stderr, enabled=args.progress)
    current = {"concept": "", "done": 0}

    def on_step(kind: str, done: bool) -> None:
        if kind == "cav" and done:
            current["done"] += 1
            bar.update(current["done"], f"{current['concept']}: CAVs")
        else:
            bar.set_status(f"{current['concept']}: {kind}")

    session.store = ObservedStore(session.store, on_step)  # type: ignore[assignment]
    records = []
    try:
        for index, concept in enumerate(concepts):
            current["concept"] = concept
            result = session.score(model, concept, target=target, layers=layers, inputs=inputs,
                                   direction=args.direction)
            current["done"] = (index + 1) * len(layers)
            bar.update(current["done"], f"{concept}: done")
            records.append(_record(index, result, layers, args.direction))
            with _above_bar(bar, stdout):
                stdout.write(("\n" if index else "") + result.table() + "\n")
    finally:
        bar.close()
    _write_reports(args, records, config, str(session.device), stdout)
    return 0


def _write_reports(args: argparse.Namespace, records: list[dict[str, Any]], config: TCAVConfig,
                   device: str, stdout: TextIO) -> None:
    if not (args.json or args.html):
        return
    from pytest_tcav.reports.json import build_report, config_settings, environment, write_json

    report = build_report(records, env=environment(device), settings=config_settings(config), exitstatus=0,
                          generator="pytest-tcav score")
    if args.json:
        stdout.write(f"\nJSON report: {write_json(Path(args.json).expanduser().resolve(), report)}\n")
    if args.html:
        from pytest_tcav.reports.html import write_html

        stdout.write(f"{'' if args.json else chr(10)}HTML report: "
                     f"{write_html(Path(args.html).expanduser().resolve(), report)}\n")


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
        return score(args, stdout, stderr)
    except UsageError as exc:
        stderr.write(f"{PROG} score: error: {exc}\n")
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
