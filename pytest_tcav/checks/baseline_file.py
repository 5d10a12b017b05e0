"""Baseline files: their format, and the reader and writer of that format.

A baseline is the record of one concept check (per-layer TCAV score,
statistic, p-values, CAV accuracy and the statistic of every random set) kept
in a small YAML file next to the test that owns it, under ``tcav_baselines/``;
:mod:`pytest_tcav.checks.stability` compares today's model with it.

Baselines are data a reviewer reads in a diff, so they are written
atomically (a crashed or parallel run never leaves half a file) in a layout
that changes only the lines of the numbers that moved, and read with
``yaml.safe_load`` and validated, with messages that name the file and the key.

It imports neither torch nor scipy; it does import PyYAML (its writer is a
``yaml.SafeDumper`` subclass), so a module that must import light (the
plugin) imports it inside the functions that need it.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import yaml

from pytest_tcav.atomic_files import atomic_write_text
from pytest_tcav.checks.baseline_names import SUFFIX, UPDATE_FLAG
from pytest_tcav.errors import BaselineError

if TYPE_CHECKING:
    from pytest_tcav.engine.results import TCAVResult

#: Version of the file layout; a file with a higher number was written by a newer pytest-tcav.
FORMAT = 1
_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-/]*$")
_PLAIN_TEXT = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-/()=+]*( [A-Za-z0-9_.\-/()=+]+)*$")
_YAML_WORDS = {"y", "n", "yes", "no", "on", "off", "true", "false", "null", "~"}


def atomic_write(path: Path, text: str) -> None:
    """Write a baseline file atomically (see :func:`pytest_tcav.atomic_files.atomic_write_text`)."""
    atomic_write_text(path, text)


# -- the file ------------------------------------------------------------------------------


def _round_sig(value: float, digits: int) -> float:
    """``value`` to ``digits`` significant digits; below 1e-12 it is summation noise around 0 (0.0)."""
    if not math.isfinite(value):
        return float(value)
    if abs(value) < 1e-12:
        return 0.0
    return float(f"{value:.{digits}g}")


@dataclass(frozen=True)
class LayerBaseline:
    """What a baseline keeps of one layer (rounded: see :meth:`Baseline.from_result`)."""

    layer: str
    score: float
    statistic: float
    null_mean: float
    null_sd: float
    p_value: float
    p_corrected: float
    cav_accuracy: float
    significant: bool
    concept_scores: tuple[float, ...] = ()
    concept_statistics: tuple[float, ...] = ()


@dataclass(frozen=True)
class Baseline:
    """The accepted measurement of one concept check, as kept in ``tcav_baselines/<name>.yaml``."""

    name: str
    library_version: str
    test: str | None
    concept: str
    target: str
    model_fingerprint: str
    concept_fingerprint: str
    settings: dict[str, Any]
    layers: tuple[LayerBaseline, ...]
    format: int = FORMAT

    def layer(self, name: str) -> LayerBaseline | None:
        return next((layer for layer in self.layers if layer.layer == name), None)

    @classmethod
    def from_result(cls, result: TCAVResult, name: str, test: str | None = None) -> Baseline:
        """A baseline from a result, rounded so that files diff cleanly.

        Statistics keep 6 significant digits (floating-point noise between
        machines is about 1e-7 relative, so a re-run on another machine writes
        the same file, while the comparison's noise floor, 1e-5 relative,
        stays above the rounding); scores 4 decimals (they are fractions of the
        inputs); p-values 3 significant digits (they are shown, not compared).
        """
        from pytest_tcav._version import __version__

        layers = tuple(
            LayerBaseline(
                layer=r.layer,
                score=round(r.score, 4),
                statistic=_round_sig(r.statistic, 6),
                null_mean=_round_sig(r.null_mean, 6),
                null_sd=_round_sig(r.null_sd, 6),
                p_value=_round_sig(r.p_value, 3),
                p_corrected=_round_sig(r.p_corrected, 3),
                cav_accuracy=round(r.cav_accuracy, 3),
                significant=bool(r.significant),
                concept_scores=tuple(round(v, 4) for v in r.concept_scores),
                concept_statistics=tuple(_round_sig(v, 6) for v in r.concept_statistics),
            )
            for r in result.layers
        )
        settings = {
            "method": result.method,
            "direction": result.direction,
            "seed": int(result.seed),
            "random_sets": int(result.n_random),
            "alpha": float(result.alpha),
            "correction": result.correction,
            "null_test": result.null_test,
            "concept_examples": int(result.n_concept_examples),
            "inputs": int(result.n_inputs),
        }
        return cls(name=name, library_version=__version__, test=test, concept=result.concept,
                   target=str(result.target), model_fingerprint=result.model_fingerprint,
                   concept_fingerprint=result.concept_fingerprint, settings=settings, layers=layers)

    # -- writing -----------------------------------------------------------------------

    def to_data(self) -> dict[str, Any]:
        """The file's content as plain data, in the order it is written."""
        return {
            "format": self.format,
            "library": f"pytest-tcav {self.library_version}",
            "test": self.test,
            "concept": self.concept,
            "target": self.target,
            "model_fingerprint": self.model_fingerprint,
            "concept_fingerprint": self.concept_fingerprint,
            "settings": dict(self.settings),
            "layers": {
                layer.layer: {
                    "score": layer.score,
                    "statistic": layer.statistic,
                    "random_mean": layer.null_mean,
                    "random_sd": layer.null_sd,
                    "p_value": layer.p_value,
                    "p_corrected": layer.p_corrected,
                    "significant": layer.significant,
                    "cav_accuracy": layer.cav_accuracy,
                    "concept_scores": list(layer.concept_scores),
                    "concept_statistics": list(layer.concept_statistics),
                }
                for layer in self.layers
            },
        }

    def to_yaml(self) -> str:
        """The file's text: block style, one value per line, per-random-set lists on one line.

        The layout (comments, key order, flow lists of numbers, quoting) is
        :class:`BaselineDumper`'s, so that a change of the model changes the
        lines of the numbers that moved and nothing else; the text is read back
        and compared before it is used.
        """
        data = self.to_data()
        # Comments are not part of YAML's data model, so no dumper writes them: the header is text.
        header = (f"# pytest-tcav baseline {self.name!r}: the accepted result of one concept check.\n"
                  f"# Written by `pytest {UPDATE_FLAG}`; review a change to it like a change to code.\n")
        text = header + yaml.dump(data, Dumper=BaselineDumper, allow_unicode=True, width=sys.maxsize)
        if yaml.safe_load(text) != json.loads(json.dumps(data)):  # pragma: no cover - a bug, never data
            raise RuntimeError(f"baseline {self.name!r} does not read back as written")
        return text

    # -- reading -----------------------------------------------------------------------

    @classmethod
    def from_yaml(cls, text: str, *, name: str, origin: str) -> Baseline:
        """Parse and validate a baseline file's text (``yaml.safe_load`` only)."""
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise BaselineError(f"{origin} is not valid YAML: {exc}") from None
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError, RecursionError) as exc:
            # PyYAML's safe constructors fail this way on malformed explicit tags (!!int abc)
            raise BaselineError(f"{origin} is not valid YAML: a malformed tagged value "
                                f"({type(exc).__name__}: {exc}); fix it, or re-record it with pytest "
                                f"{UPDATE_FLAG}") from None
        return cls.from_data(data, name=name, origin=origin)

    @classmethod
    def from_data(cls, data: Any, *, name: str, origin: str) -> Baseline:
        check = _Checker(origin)
        data = check.mapping(data, "the file", {
            "format", "library", "test", "concept", "target", "model_fingerprint", "concept_fingerprint",
            "settings", "layers",
        })
        version = data.get("format")
        if not isinstance(version, int) or isinstance(version, bool):
            check.fail(f"'format' must be an integer (this pytest-tcav writes {FORMAT}), got {version!r}")
        if version > FORMAT:
            check.fail(f"format {version} was written by a newer pytest-tcav (this one reads up to {FORMAT}); "
                       "upgrade pytest-tcav")
        library = check.text(data.get("library"), "library")
        settings = check.mapping(data.get("settings"), "settings", {
            "method", "direction", "seed", "random_sets", "alpha", "correction", "null_test",
            "concept_examples", "inputs",
        })
        for key in ("method", "direction", "correction", "null_test"):
            check.text(settings.get(key), f"settings.{key}")
        for key in ("seed", "random_sets", "concept_examples", "inputs"):
            check.integer(settings.get(key), f"settings.{key}")
        check.number(settings.get("alpha"), "settings.alpha")
        layers_data = data.get("layers")
        if not isinstance(layers_data, dict) or not layers_data:
            check.fail(f"'layers' must be a mapping of layer name to values, got {layers_data!r}")
        layers = []
        for layer_name, values in layers_data.items():
            where = f"layers.{layer_name}"
            values = check.mapping(values, where, {
                "score", "statistic", "random_mean", "random_sd", "p_value", "p_corrected", "significant",
                "cav_accuracy", "concept_scores", "concept_statistics",
            })
            significant = values.get("significant")
            if not isinstance(significant, bool):
                check.fail(f"'{where}.significant' must be true or false, got {significant!r}")
            statistics = check.numbers(values.get("concept_statistics"), f"{where}.concept_statistics")
            if len(statistics) != settings["random_sets"]:
                check.fail(f"'{where}.concept_statistics' has {len(statistics)} values but settings.random_sets "
                           f"is {settings['random_sets']}")
            layers.append(LayerBaseline(
                layer=str(layer_name),
                score=check.number(values.get("score"), f"{where}.score"),
                statistic=check.number(values.get("statistic"), f"{where}.statistic"),
                null_mean=check.number(values.get("random_mean"), f"{where}.random_mean"),
                null_sd=check.number(values.get("random_sd"), f"{where}.random_sd"),
                p_value=check.number(values.get("p_value"), f"{where}.p_value"),
                p_corrected=check.number(values.get("p_corrected"), f"{where}.p_corrected"),
                cav_accuracy=check.number(values.get("cav_accuracy"), f"{where}.cav_accuracy"),
                significant=significant,
                concept_scores=tuple(check.numbers(values.get("concept_scores"), f"{where}.concept_scores")),
                concept_statistics=tuple(statistics),
            ))
        test = data.get("test")
        if test is not None:
            test = check.text(test, "test")
        return cls(
            name=name,
            library_version=library.removeprefix("pytest-tcav ").strip(),
            test=test,
            concept=check.text(data.get("concept"), "concept"),
            target=check.text(data.get("target"), "target"),
            model_fingerprint=check.text(data.get("model_fingerprint"), "model_fingerprint"),
            concept_fingerprint=check.text(data.get("concept_fingerprint"), "concept_fingerprint"),
            settings=settings,
            layers=tuple(layers),
            format=version,
        )


def load_baseline(path: Path, name: str | None = None) -> Baseline:
    """Read and validate one baseline file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BaselineError(f"cannot read baseline {path}: {exc}") from None
    return Baseline.from_yaml(text, name=name or path.name[: -len(SUFFIX)], origin=str(path))


class _Checker:
    """Validation of a parsed baseline, with messages that name the file and the key."""

    def __init__(self, origin: str) -> None:
        self.origin = origin

    def fail(self, message: str) -> NoReturn:
        raise BaselineError(f"baseline {self.origin} is invalid: {message}; fix it, or re-record it with "
                            f"pytest {UPDATE_FLAG}")

    def mapping(self, value: Any, where: str, keys: set[str]) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(f"{where} must be a mapping, got {type(value).__name__}")
        unknown = sorted(str(k) for k in value if k not in keys)
        if unknown:
            self.fail(f"unknown key(s) {', '.join(map(repr, unknown))} in {where}")
        missing = sorted(keys - set(value))
        if missing:
            self.fail(f"{where} lacks {', '.join(map(repr, missing))}")
        return value

    def text(self, value: Any, where: str) -> str:
        if not isinstance(value, str):
            self.fail(f"'{where}' must be a string, got {value!r}")
        return value

    def integer(self, value: Any, where: str) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            self.fail(f"'{where}' must be a non-negative integer, got {value!r}")
        return value

    def number(self, value: Any, where: str) -> float:
        if not isinstance(value, (int, float)) or isinstance(value, bool) or math.isnan(value):
            self.fail(f"'{where}' must be a number, got {value!r}")
        return float(value)

    def numbers(self, value: Any, where: str) -> list[float]:
        if not isinstance(value, list):
            self.fail(f"'{where}' must be a list of numbers, got {value!r}")
        return [self.number(v, f"{where}[{k}]") for k, v in enumerate(value)]


class BaselineDumper(yaml.SafeDumper):
    """The YAML of a baseline file, byte for byte as the hand-written writer it replaced wrote it.

    Committed baselines are diffed, so the bytes stay those of the existing
    files (tests/checks/test_baseline_writer.py keeps them): mappings in block style
    and in the order given, lists in flow style on one line, no anchors, every
    key on its own ``key:`` line, and strings plain where that reads back as
    the same string (keys: only identifier-like ones that are not YAML words),
    else double-quoted.  PyYAML's own choices differ in three places, hence the
    emitter overrides: it quotes with single quotes where it may; it writes a
    key longer than 128 characters, empty or multi-line as ``? key``; and its
    double-quoted escapes (``\\xF6``, ``\\_``, ``\\0``) differ from the JSON
    escapes of the existing files (``\\u00f6`` in keys, a raw no-break space,
    ``\\u0000``), so a double-quoted scalar is written as JSON.  The one change:
    a key ending in a line break, which the old writer left unquoted (a broken
    file it then refused to write), is now quoted.
    """

    def ignore_aliases(self, data: Any) -> bool:
        return True

    def represent_key(self, key: str) -> yaml.ScalarNode:
        plain = _PLAIN_KEY.fullmatch(key) and key.lower() not in _YAML_WORDS
        return self.represent_scalar(_STR, key, style=None if plain else '"')

    def represent_str(self, data: str) -> yaml.ScalarNode:
        plain = _PLAIN_TEXT.fullmatch(data) and self.resolve(yaml.ScalarNode, data, (True, False)) == _STR
        return self.represent_scalar(_STR, data, style=None if plain else '"')

    def represent_dict(self, data: Any) -> yaml.MappingNode:  # a dict: its keys are strings
        pairs = [(self.represent_key(key), self.represent_data(value)) for key, value in data.items()]
        return yaml.MappingNode("tag:yaml.org,2002:map", pairs, flow_style=False)

    def represent_list(self, data: Iterable[Any]) -> yaml.SequenceNode:
        return self.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=True)

    def check_simple_key(self) -> bool:
        return isinstance(self.event, yaml.ScalarEvent) or super().check_simple_key()

    def write_double_quoted(self, text: str, split: bool = True) -> None:
        # A JSON string is a YAML double-quoted scalar; keys are written ASCII-only, as they always were.
        self.write_indicator(json.dumps(text, ensure_ascii=self.simple_key_context), True)


_STR = "tag:yaml.org,2002:str"
BaselineDumper.add_representer(str, BaselineDumper.represent_str)
BaselineDumper.add_representer(dict, BaselineDumper.represent_dict)
BaselineDumper.add_representer(list, BaselineDumper.represent_list)
BaselineDumper.add_representer(tuple, BaselineDumper.represent_list)
