"""``pytest-tcav calibrate``: measure the false-positive rate of the configured random library, per layer.

Every check of a suite is judged against the same random sets, so they share
that library's luck; this command measures it.  It draws ``K`` pseudo-concepts
from random data the tests do not use, tests each one as a concept with the
suite's settings, and prints per layer how many came out significant, the
exact 95% interval of that rate, and what it implies.  The result is stored in
the disk cache, where ``tcav_require_calibration`` looks for it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from pytest_tcav.atomic_files import atomic_write_text
from pytest_tcav.cli.progress import ProgressBar
from pytest_tcav.cli.score import InputsOfClass, ObservedStore, comma_list, load_model
from pytest_tcav.config import DEFAULT_PSEUDO_CONCEPTS, TCAVConfig

EPILOG = """\
examples:
  pytest-tcav calibrate --model model:load_model --target zebra --layers features.conv2,features.conv3
  pytest-tcav calibrate --model model:load_model --target 0 --target 1 --layers conv2 \\
      --pseudo-concepts 100 --json calibration.json

Settings come from the ini file pytest would read (as for score).  Pseudo-concepts are drawn
from random data the tests do not use: random_* folders beyond tcav_random_sets, a pool folder
('random' or 'random_pool') the explicit sets leave unused, or the pool images that the random
sets drawn from it leave unused.  The result is stored in the disk cache (tcav_cache_dir, by
default .pytest_cache/d/tcav next to the ini file), where tcav_require_calibration finds it.
Exit status: 0 measured, 1 calibration failed (message on stderr), 2 usage error.
"""


def add_calibrate_parser(commands: Any, add_settings: Callable[[Any, str], None]) -> argparse.ArgumentParser:
    """The ``calibrate`` sub-command; ``add_settings`` adds the table's settings flags to a group."""
    parser = commands.add_parser(
        "calibrate", help="measure the false-positive rate of the random library, per layer",
        description="Test pseudo-concepts (random images the tests do not use) as concepts and report, per "
                    "layer, the share found significant: the false-positive rate of the checks on this random "
                    "library, with its exact 95% interval next to alpha.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    what = parser.add_argument_group("what to calibrate")
    what.add_argument("--model", required=True, metavar="MODULE:CALLABLE",
                      help="the model: a callable returning a torch.nn.Module, or a module attribute that is one")
    what.add_argument("--target", required=True, action="append", metavar="N|NAME",
                      help="a target the suite tests (class index or name; may repeat)")
    what.add_argument("--layers", required=True, action="append", metavar="A,B",
                      help="layer names, comma-separated (may repeat)")
    what.add_argument("--pseudo-concepts", type=int, metavar="K",
                      help=f"pseudo-concepts per target; more narrow the interval, and the same K as "
                           f"tcav_pseudo_concepts lets tcav_null = pseudo reuse the measurement (default: "
                           f"tcav_pseudo_concepts, {DEFAULT_PSEUDO_CONCEPTS})")
    what.add_argument("--concept-size", type=int, metavar="N",
                      help="examples per pseudo-concept (default: the median size of the concept folders)")
    add_settings(what, "what")
    what.add_argument("--inputs", metavar="DIR_OR_CLASS",
                      help="inputs, as for score (default: the target's folder in tcav_inputs)")
    how = parser.add_argument_group("settings (default: the ini file's tcav_* values, else the plugin's defaults)")
    how.add_argument("--direction", choices=("positive", "negative", "either"), default="positive",
                     help="the direction of the suite's checks (default: positive)")
    add_settings(how, "settings")
    ini = how.add_mutually_exclusive_group()
    ini.add_argument("--inifile", metavar="PATH", help="read tcav_* defaults from this file (default: as pytest)")
    ini.add_argument("--no-inifile", action="store_true", help="read no ini file")
    out = parser.add_argument_group("output")
    out.add_argument("--json", metavar="PATH", help="write the measurement as JSON")
    out.add_argument("--no-store", action="store_true",
                     help="do not store the calibration in the disk cache")
    out.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                     help="show a progress bar on stderr (default: only when stderr is a terminal)")
    return parser


def _with_cache_dir(config: TCAVConfig) -> TCAVConfig:
    """The cache pytest would use: ``tcav_cache_dir``, else ``.pytest_cache/d/tcav`` next to the ini file."""
    if config.cache_dir is not None:
        return config
    return dataclasses.replace(config, cache_dir=config.root / ".pytest_cache" / "d" / "tcav")


def run_calibrate(args: argparse.Namespace, config: TCAVConfig, inputs: Any, stdout: TextIO,
                  stderr: TextIO) -> int:
    """The ``calibrate`` command on checked arguments; raises :class:`TCAVError`, returns 0 when done."""
    from pytest_tcav.checks import pseudo_concepts as calib
    from pytest_tcav.checks.calibration import save
    from pytest_tcav.engine.spec import CheckSpec, settle
    from pytest_tcav.errors import ConfigurationError
    from pytest_tcav.session.pseudo_null import default_concept_size, spare_data
    from pytest_tcav.session.session import TCAVSession

    if args.pseudo_concepts is None:
        args.pseudo_concepts = config.pseudo_concepts
    if args.pseudo_concepts < 1:
        raise ConfigurationError(f"--pseudo-concepts must be at least 1, got {args.pseudo_concepts}")
    config = _with_cache_dir(config)
    layers = comma_list(args.layers)
    targets: list[int | str] = [int(t) if t.strip().isdigit() else t.strip() for t in comma_list(args.target)]
    session = TCAVSession(config)
    size = args.concept_size or default_concept_size(session.concepts)
    count = args.pseudo_concepts
    spare = spare_data(session.concepts, size, count, in_use=config.random_sets, seed=config.seed)
    model = load_model(args.model).to(session.device).eval()

    total = len(targets) * count
    bar = ProgressBar(total, label="pseudo-concepts", stream=stderr, enabled=args.progress)
    session.store = ObservedStore(session.store, lambda kind, done: bar.set_status(kind))  # type: ignore[assignment]
    results = []
    try:
        for index, target in enumerate(targets):
            target_inputs = session.inputs.for_target(inputs.target) if isinstance(inputs, InputsOfClass) else inputs

            def done(k: int, index: int = index) -> None:
                bar.update(index * count + k, f"target {targets[index]}")

            # the request of a check of this target with the suite's settings; each pseudo-concept is its concept
            # (its concept stands for the pseudo-concepts: what kind of data they are)
            stand_in: Any = spare.examples if spare.examples is not None else list(spare.texts or ())
            spec = settle(CheckSpec(concept=stand_in, target=target, layers=layers, inputs=target_inputs,
                                    direction=args.direction), config)
            calibration, _null = calib.calibrate(session, model, spec, concept_size=size, count=count, on_done=done)
            results.append(calibration)
    finally:
        bar.close()
    stored = [] if args.no_store else [save(config.cache_dir, c) for c in results]  # type: ignore[arg-type]
    overlap = len(spare) < count * size
    stdout.write("\n".join(_lines(results, targets, config, spare.source, size, overlap, stored,
                                  session.cache_stats())) + "\n")
    if args.json:
        path = Path(args.json).expanduser().resolve()
        report = {"generator": "pytest-tcav calibrate", "concept_size": size, "data": spare.source,
                  "overlapping": overlap, "cache": session.cache_stats(),
                  "calibrations": [{**c.to_json(), "rates": [{"layer": r.layer, "rate": r.rate,
                                                               "reading": r.reading} for r in c.layers]}
                                   for c in results]}
        atomic_write_text(path, json.dumps(report, indent=1, sort_keys=True) + "\n")
        stdout.write(f"JSON: {path}\n")
    return 0


def _lines(results: list[Any], targets: list[int | str], config: TCAVConfig, source: str, size: int,
           overlap: bool, stored: list[Path], cache: dict[str, Any]) -> list[str]:
    from pytest_tcav.checks.calibration import implication, percent, why_off
    from pytest_tcav.tables import render_table

    rows: list[tuple[str, ...]] = [("target", "layer", "significant", "rate", "95% CI", "alpha", "reading")]
    for target, c in zip(targets, results):
        for r in c.layers:
            rows.append((str(target), r.layer, f"{r.significant}/{r.total}", percent(r.rate),
                         f"{percent(r.low)}-{percent(r.high)}", f"{r.alpha:g}", r.reading))
        if len(c.layers) > 1:
            rows.append((str(target), f"any ({config.correction})", f"{c.family_significant}/{c.pseudo_concepts}",
                         percent(c.family_significant / c.pseudo_concepts), "", f"{c.alpha:g}", "family-wise"))
    first = results[0]
    lines = [f"calibration of the random library: {first.pseudo_concepts} pseudo-concepts of {size} examples "
             f"from {source}; {first.settings['random_sets']} random sets, direction {first.direction}", ""]
    lines += render_table(rows)
    lines.append("")
    for target, c in zip(targets, results):
        for r in c.layers:
            shift, spread = c.shifts.get(r.layer), c.spreads.get(r.layer)
            meaning = implication(r, c.settings["random_sets"], shift=shift, spread=spread,
                                  pseudo_cost=c.pseudo_concepts)
            lines.append(f"target {target}: {meaning}")
            if shift is not None and spread is not None and r.reading != "above alpha":
                lines.append(f"target {target}: "
                             f"{why_off(r.layer, shift, spread, c.settings['random_sets'], c.pseudo_concepts)}")
    if overlap:
        lines.append(f"note: the spare random data hold fewer than {first.pseudo_concepts} x {size} images, so "
                     "pseudo-concepts share images; the interval is then somewhat optimistic.")
    computed = cache["computed"]
    lines.append(f"computed: {computed.get('activations', 0)} activation sets, {computed.get('cav', 0)} CAVs "
                 f"({cache['reused'].get('cav', 0)} reused from the cache)")
    if not any(computed.values()) and not any(cache["reused"].values()):
        lines.append("(the pseudo-concepts' numbers were read back from their stored measurement, pseudo_null/ in "
                     "the disk cache: the same K, settings, random sets, model and inputs)")
    lines += [f"stored: {path}" for path in stored]
    return lines
