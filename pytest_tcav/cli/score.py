"""``pytest-tcav score``: build the session, score each concept, print its table, write the reports.

The command runs the same session and engine as the ``tcav`` fixture, so the
numbers are the ones a test would see; it prints, per concept, the table a
failing assertion prints.  Its arguments arrive checked by
:mod:`pytest_tcav.cli.main` (settings, layers, where the concepts come from),
so what fails here is scoring itself: a :class:`~pytest_tcav.errors.TCAVError`
(a missing folder, an unknown layer, a model loader that failed...) or an
``OSError`` writing a report.  torch and the session are imported inside the
command, so ``pytest-tcav --help`` does not pay for them.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from pytest_tcav.cli.progress import ProgressBar
from pytest_tcav.config import TCAVConfig, import_callable
from pytest_tcav.errors import ConfigurationError, TCAVError

if TYPE_CHECKING:
    from pytest_tcav.checks.records import CheckRecord


@dataclass(frozen=True)
class InputsOfClass:
    """``--inputs NAME``: the inputs of that class (index or name) in the input library."""

    target: int | str


def comma_list(values: Sequence[str] | None) -> list[str]:
    """``--layers a,b --layers c`` -> ``["a", "b", "c"]``; a comma inside a layer's selector (``enc['a,b']``) stays."""
    return [part.strip() for value in values or [] for part in _split_commas(value) if part.strip()]


def _split_commas(value: str) -> list[str]:
    parts, start, depth = [], 0, 0
    for position, char in enumerate(value):
        if char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
        elif char == "," and depth <= 0:
            parts.append(value[start:position])
            start = position + 1
    return [*parts, value[start:]]


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


def load_model(spec: str) -> Any:
    from torch import nn

    value: Any = import_callable(spec, "--model")  # a loader taking no arguments, or the model itself
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


def _record(index: int, result: Any, layers: list[str], direction: str) -> CheckRecord:
    """A session-style record of one scored concept, for the reports."""
    from pytest_tcav.checks.records import scored

    return scored(index, result, layers, direction)


def _inputs_kind(session: Any, inputs: Any, target: int | str) -> str:
    """``"text"`` or ``"image"``: what the inputs to score on hold (a folder, or the target's library entry)."""
    from pytest_tcav.engine.text_examples import is_text_path

    if isinstance(inputs, (str, os.PathLike)):
        return "text" if is_text_path(inputs) else "image"
    wanted = inputs.target if isinstance(inputs, InputsOfClass) else target
    for name in session.inputs.candidates(wanted):
        if name in session.inputs:
            return str(session.inputs.kind_of(name))
    return "image"


def score(args: argparse.Namespace, config: TCAVConfig, inputs: Any, stdout: TextIO, stderr: TextIO) -> int:
    """The ``score`` command on checked arguments; raises :class:`TCAVError`, returns 0 when done.

    ``inputs`` is what to pass the session: None (the target's folder in the
    input library), a folder of images, or an :class:`InputsOfClass`.
    """
    layers = comma_list(args.layers)
    target: int | str = int(args.target) if args.target.strip().isdigit() else args.target.strip()

    from pytest_tcav.engine.spec import CheckSpec, settle
    from pytest_tcav.session.session import TCAVSession

    session = TCAVSession(config)
    concepts = comma_list(args.concept)
    against = comma_list(args.against) or None
    if not concepts:  # the library is configured: the command line checked it
        concepts = [name for name in session.concepts.names() if name not in (against or [])]
        if not concepts:
            raise TCAVError(f"the concept library {str(config.concepts)!r} has no concept folders")
        kinds = {name: session.concepts.kind_of(name) for name in concepts}
        if len(set(kinds.values())) > 1:  # images and text side by side: the concepts of the inputs' kind
            kind = _inputs_kind(session, inputs, target)
            concepts = [name for name in concepts if kinds[name] == kind]
    if isinstance(inputs, InputsOfClass):
        inputs = session.inputs.for_target(inputs.target)  # class names through tcav_classes, like a target
    model = load_model(args.model)
    model = model.to(session.device).eval()

    # concepts, not concept x layer: the engine works in units (a set's activations at every layer, groups of
    # CAVs) that do not follow layers, and says which one it is on through the store it fetches from
    bar = ProgressBar(len(concepts), label="concepts", stream=stderr, enabled=args.progress)
    current: dict[str, Any] = {"concept": ""}

    def on_step(kind: str, done: bool) -> None:
        bar.set_status(f"{current['concept']}: {'CAVs' if kind == 'cav' else kind}")

    session.store = ObservedStore(session.store, on_step)  # type: ignore[assignment]
    records = []
    try:
        for index, concept in enumerate(concepts):
            current["concept"] = concept
            spec = CheckSpec(concept=concept, target=target, layers=layers, inputs=inputs, direction=args.direction,
                             against=against)
            result = session.measure(model, settle(spec, config))
            bar.update(index + 1, f"{concept}: done")
            records.append(_record(index, result, layers, args.direction))
            with _above_bar(bar, stdout):
                stdout.write(("\n" if index else "") + result.table() + "\n")
    finally:
        bar.close()
    _write_reports(args, records, config, str(session.device), stdout)
    return 0


def _write_reports(args: argparse.Namespace, records: list[CheckRecord], config: TCAVConfig,
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
