"""The format of declarative concept tests (``tcav_*.yaml``): parsing and validating a file.

A file names a model loader, a target, layers and, per concept, a list of
expectations (the format is documented in docs/yaml-tests.md).  People who do
not write Python edit these files, so every schema error names the file and
line, says what was expected, and suggests the closest key for a misspelt one:
the file is read with :class:`yaml.SafeLoader` only and composed into nodes
first, so that each value keeps its line.

No pytest here: :mod:`pytest_tcav.plugin.yaml_items` turns a :class:`FileSpec`
into test items and runs each with the request :func:`check_spec` builds for it
(the file's settings under the expectation's options).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
import sys
from dataclasses import dataclass, field
from difflib import get_close_matches
from pathlib import Path
from typing import Any, NoReturn, overload

import yaml

from pytest_tcav.checks.baseline_names import baseline_path
from pytest_tcav.config import LAYER_POINTS, METHODS, NULLS, POOLINGS, import_callable
from pytest_tcav.engine.spec import DEFAULT_TOLERANCE, CheckSpec, EngineKnobs, StabilitySpec
from pytest_tcav.errors import BaselineError, YamlSpecError, shown_path

_LOADER = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")

#: Top-level keys: what each means, for "expected one of" messages.
TOP_KEYS: dict[str, str] = {
    "model": "the model loader, 'module:callable' or {callable: ..., args: [...], kwargs: {...}}",
    "target": "the class index or class name (tcav_classes)",
    "layers": "a layer name or a list of them",
    "concepts": "a mapping of concept name to its expectations",
    "inputs": "an input-library name or a folder (default: the target's input folder)",
    "random_sets": "a count, or a list of random-set names or folders",
    "random_pool": "a folder or concept-library name to draw random sets from",
    "alpha": "the family-wise significance level",
    "null": "random or pseudo: what a concept is judged against (default: tcav_null)",
    "seed": "the seed of random-set sampling and CAV training",
    "method": "gradient or integrated_gradients",
    "n_steps": "integration steps of integrated_gradients",
    "batch_size": "examples per forward/backward pass",
    "layer_point": "output or input: what a layer name studies (default: tcav_layer_point)",
    "layer_call": "which call (from 0) of a module run more than once per forward pass is studied "
                  "(default: tcav_layer_call)",
    "pooling": "flatten, mean, first or last: what a CAV sees of a token or convolution layer (default: "
               "tcav_pooling)",
    "forward_kwargs": "a mapping of fixed keyword arguments passed to every call of the model",
    "output": "the key, field or index of a structured model output that a class index reads",
    "require": "all or any: the layers an expectation must hold on (default: all)",
    "description": "free text for the reader",
}
REQUIRED_KEYS = ("model", "target", "layers", "concepts")
MODEL_KEYS = {"callable": "'module:callable'", "args": "a list of arguments", "kwargs": "a mapping of arguments"}
KINDS: dict[str, str] = {
    "significant": "significant, or significant: {direction: ..., require: ..., score: [low, high], against: ...}",
    "insignificant": "insignificant, or insignificant: {direction: ..., require: ..., score: [low, high], "
                     "against: ..., margin: m}",
    "score": "score: [low, high], the TCAV score's range",
    "direction": "direction: positive, negative or either (significant in that direction)",
    "stable": "stable: <baseline name>, or stable: {baseline: ..., tolerance: ..., statistic_tolerance: ...}",
}
VERDICT_OPTIONS = {"direction": "positive, negative or either", "require": "all or any",
                   "score": "[low, high] within [0, 1]",
                   "against": "a concept or a list of concepts to compare with (relative TCAV)"}
#: An insignificance check may also ask for the effect to be shown below a margin (random-set spreads).
INSIGNIFICANT_OPTIONS = {**VERDICT_OPTIONS, "margin": "a positive number: the effect shown below it, in units "
                                                      "of the random sets' spread"}
STABLE_OPTIONS = {"baseline": "the baseline's name", "tolerance": "the TCAV score tolerance, in [0, 1]",
                  "statistic_tolerance": "the smallest change of the statistic that counts",
                  "direction": "positive, negative or either"}
DIRECTIONS = ("positive", "negative", "either")


# -- the schema ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ExpectationSpec:
    """One expectation of one concept: one pytest item."""

    kind: str
    name: str  # the item's name: the kind, made unique within the concept
    line: int
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ConceptSpec:
    name: str
    line: int
    expectations: tuple[ExpectationSpec, ...]


@dataclass(frozen=True)
class FileSpec:
    """A validated declarative test file."""

    path: Path
    model: str
    model_args: tuple[Any, ...]
    model_kwargs: dict[str, Any]
    target: int | str
    layers: tuple[str, ...]
    concepts: tuple[ConceptSpec, ...]
    inputs: str | None = None
    random_sets: int | tuple[str, ...] | None = None
    random_pool: str | None = None
    alpha: float | None = None
    #: random or pseudo (unset: ``tcav_null``).
    null: str | None = None
    #: seed, method, n_steps, batch_size, layer_point, pooling, forward_kwargs, output (unset: the run's).
    knobs: EngineKnobs = EngineKnobs()
    require: str = "all"
    description: str | None = None
    lines: dict[str, int] = field(default_factory=dict)  # line of each top-level key

    def line(self, key: str) -> int:
        return self.lines.get(key, 1)


def _kind_list(options: dict[str, str]) -> str:
    return ", ".join(options)


class _Reader:
    """Walks composed YAML nodes; every error carries the node's line."""

    def __init__(self, path: Path, loader: yaml.SafeLoader) -> None:
        self.path = path
        self.loader = loader

    def fail(self, node: yaml.Node, message: str) -> NoReturn:
        raise YamlSpecError(self.path, node.start_mark.line + 1, message)

    def value(self, node: yaml.Node) -> Any:
        """The node's Python value, by the safe constructor: an unsafe tag is an error at its line."""
        try:
            return self.loader.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            problem = " ".join(str(part) for part in (getattr(exc, "context", None), getattr(exc, "problem", None))
                               if part) or str(exc)
            self.fail(node, f"not valid YAML for a test file: {problem}")
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError, RecursionError):
            # PyYAML's safe constructors fail this way on malformed explicit tags
            # (!!int abc, !!bool maybe, !!timestamp 2001-99): still a value error at this line.
            self.fail(node, f"not valid YAML for a test file: {node.value!r} is not a valid {node.tag} value")

    @staticmethod
    def kind(node: yaml.Node) -> str:
        if isinstance(node, yaml.MappingNode):
            return "a mapping"
        if isinstance(node, yaml.SequenceNode):
            return f"a list of {len(node.value)}"
        return f"{node.value!r}" if node.value != "" else "nothing"

    def mapping(self, node: yaml.Node, what: str, allowed: dict[str, str],
                required: tuple[str, ...] = ()) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        if not isinstance(node, yaml.MappingNode):
            self.fail(node, f"{what} must be a mapping with keys {_kind_list(allowed)}, got {self.kind(node)}")
        seen: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key_node, value_node in node.value:
            key = self.value(key_node) if isinstance(key_node, yaml.ScalarNode) else None
            if key is None and isinstance(key_node, yaml.ScalarNode) and key_node.value == "null" \
                    and "null" in allowed:
                key = "null"  # YAML reads a bare `null:` key as nothing; the file means the setting
            if not isinstance(key, str):
                self.fail(key_node, f"the keys of {what} must be names, got {self.kind(key_node)}")
            if key in seen:
                self.fail(key_node, f"{key!r} is given twice in {what} (first on line "
                                    f"{seen[key][0].start_mark.line + 1})")
            if key not in allowed:
                close = get_close_matches(key, list(allowed), n=1, cutoff=0.6)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                self.fail(key_node, f"unknown key {key!r} in {what}{hint} (expected one of: {_kind_list(allowed)})")
            seen[key] = (key_node, value_node)
        missing = [key for key in required if key not in seen]
        if missing:
            self.fail(node, f"{what} lacks {', '.join(map(repr, missing))}: "
                            + "; ".join(f"{key}: {allowed[key]}" for key in missing))
        return seen

    def text(self, node: yaml.Node, what: str, expected: str = "a string") -> str:
        value = self.value(node) if isinstance(node, yaml.ScalarNode) else None
        if not isinstance(value, str) or not value.strip():
            self.fail(node, f"{what} must be {expected}, got {self.kind(node)}")
        return value.strip()

    def choice(self, node: yaml.Node, what: str, choices: tuple[str, ...]) -> str:
        value = self.value(node) if isinstance(node, yaml.ScalarNode) else None
        if value not in choices:
            close = get_close_matches(str(value), list(choices), n=1) if isinstance(value, str) else []
            hint = f"; did you mean {close[0]!r}?" if close else ""
            self.fail(node, f"{what} must be one of {', '.join(choices)}, got {self.kind(node)}{hint}")
        return value

    def integer(self, node: yaml.Node, what: str, minimum: int) -> int:
        value = self.value(node) if isinstance(node, yaml.ScalarNode) else None
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            self.fail(node, f"{what} must be an integer of at least {minimum}, got {self.kind(node)}")
        return value

    def number(self, node: yaml.Node, what: str, low: float, high: float, *, open_range: bool = False) -> float:
        value = self.value(node) if isinstance(node, yaml.ScalarNode) else None
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value == value:
            if (low < value < high) if open_range else (low <= value <= high):
                return float(value)
        bounds = f"strictly between {low} and {high}" if open_range else f"between {low} and {high}"
        self.fail(node, f"{what} must be a number {bounds}, got {self.kind(node)}")

    def names(self, node: yaml.Node, what: str, expected: str) -> tuple[str, ...]:
        """One name, or a non-empty list of distinct names."""
        if isinstance(node, yaml.ScalarNode):
            return (self.text(node, what, expected),)
        if not isinstance(node, yaml.SequenceNode) or not node.value:
            self.fail(node, f"{what} must be {expected}, got {self.kind(node)}")
        out: list[str] = []
        for item in node.value:
            name = self.text(item, f"each entry of {what}", "a name")
            if name in out:
                self.fail(item, f"{name!r} is listed twice in {what}")
            out.append(name)
        return tuple(out)

    def score_range(self, node: yaml.Node, what: str) -> tuple[float, float]:
        if not isinstance(node, yaml.SequenceNode) or len(node.value) != 2:
            self.fail(node, f"{what} must be a [low, high] pair within [0, 1], got {self.kind(node)}")
        low = self.number(node.value[0], f"the low end of {what}", 0.0, 1.0)
        high = self.number(node.value[1], f"the high end of {what}", 0.0, 1.0)
        if low > high:
            self.fail(node, f"{what} must be [low, high] with low <= high, got [{low}, {high}]")
        return low, high


def _read_model(r: _Reader, node: yaml.Node) -> tuple[str, tuple[Any, ...], dict[str, Any]]:
    expected = "'module:callable' (e.g. 'mypackage.models:load_model')"
    if isinstance(node, yaml.MappingNode):
        keys = r.mapping(node, "model", MODEL_KEYS, required=("callable",))
        spec = r.text(keys["callable"][1], "model.callable", expected)
        args: tuple[Any, ...] = ()
        kwargs: dict[str, Any] = {}
        if "args" in keys:
            args_node = keys["args"][1]
            if not isinstance(args_node, yaml.SequenceNode):
                r.fail(args_node, f"model.args must be a list, got {r.kind(args_node)}")
            args = tuple(r.value(args_node))
        if "kwargs" in keys:
            kwargs_node = keys["kwargs"][1]
            if not isinstance(kwargs_node, yaml.MappingNode):
                r.fail(kwargs_node, f"model.kwargs must be a mapping, got {r.kind(kwargs_node)}")
            r.mapping(kwargs_node, "model.kwargs", {k: "" for k in (r.value(k) for k, _ in kwargs_node.value)
                                                    if isinstance(k, str)})
            kwargs = dict(r.value(kwargs_node))
        value_node = keys["callable"][1]
    else:
        spec = r.text(node, "model", f"{expected}, or a mapping with callable, args and kwargs")
        args, kwargs, value_node = (), {}, node
    if not _LOADER.match(spec):
        r.fail(value_node, f"model {spec!r} is not of the form {expected}")
    return spec, args, kwargs


def _read_expectation(r: _Reader, node: yaml.Node, concept: str) -> tuple[str, dict[str, Any]]:
    where = f"an expectation of concept {concept!r}"
    if isinstance(node, yaml.ScalarNode):
        kind = r.value(node)
        if kind in ("significant", "insignificant"):
            return kind, {}
        if kind in KINDS:
            r.fail(node, f"{kind!r} needs a value: {KINDS[kind]}")
        close = get_close_matches(str(kind), list(KINDS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        r.fail(node, f"unknown expectation {kind!r} for concept {concept!r}{hint} (expected one of: "
                     f"{_kind_list(KINDS)})")
    if not isinstance(node, yaml.MappingNode):
        r.fail(node, f"{where} must be a kind (e.g. significant) or a one-key mapping (e.g. score: [0.8, 1.0]), "
                     f"got {r.kind(node)}")
    names = [str(r.value(k)) for k, _v in node.value]
    if len(names) > 1 and any(name in KINDS for name in names):
        kind = next(name for name in names if name in KINDS)
        r.fail(node, f"{where} has {len(names)} keys ({', '.join(names)}); an expectation is one kind with its "
                     f"options under it, e.g. '- {kind}: {{require: any}}', and each kind is its own list entry")
    keys = r.mapping(node, where, KINDS)
    if len(keys) != 1:
        r.fail(node, f"{where} is an empty mapping; expected one of: {_kind_list(KINDS)}")
    ((kind, (_key, value)),) = keys.items()
    options: dict[str, Any] = {}
    if kind in ("significant", "insignificant"):
        if isinstance(value, yaml.ScalarNode) and r.value(value) is None:
            return kind, {}
        opts = r.mapping(value, f"the options of {kind!r}",
                         INSIGNIFICANT_OPTIONS if kind == "insignificant" else VERDICT_OPTIONS)
        if "margin" in opts:
            options["margin"] = r.number(opts["margin"][1], "margin", 0.0, float("inf"), open_range=True)
        if "direction" in opts:
            options["direction"] = r.choice(opts["direction"][1], "direction", DIRECTIONS)
        if "require" in opts:
            options["require"] = r.choice(opts["require"][1], "require", ("all", "any"))
        if "score" in opts:
            options["score"] = r.score_range(opts["score"][1], "score")
        if "against" in opts:
            options["against"] = r.names(opts["against"][1], "against", "a concept name or a list of them")
            if concept in options["against"]:
                r.fail(opts["against"][1], f"concept {concept!r} cannot be tested against itself")
    elif kind == "score":
        options["score"] = r.score_range(value, "score")
    elif kind == "direction":
        options["direction"] = r.choice(value, "direction", DIRECTIONS)
    else:  # stable
        if isinstance(value, yaml.MappingNode):
            opts = r.mapping(value, "the options of 'stable'", STABLE_OPTIONS, required=("baseline",))
            name_node = opts["baseline"][1]
            if "tolerance" in opts:
                options["tolerance"] = r.number(opts["tolerance"][1], "tolerance", 0.0, 1.0)
            if "statistic_tolerance" in opts:
                options["statistic_tolerance"] = r.number(opts["statistic_tolerance"][1], "statistic_tolerance",
                                                          0.0, float("inf"))
            if "direction" in opts:
                options["direction"] = r.choice(opts["direction"][1], "direction", DIRECTIONS)
        else:
            name_node = value
        name = r.text(name_node, "stable", "a baseline name (e.g. striped-zebra)")
        try:
            baseline_path(Path("."), name)
        except BaselineError as exc:
            r.fail(name_node, str(exc))
        options["baseline"] = name
    return kind, options


def parse(text: str, path: Path) -> FileSpec:
    """Validate a declarative test file's text (``yaml.SafeLoader`` only)."""
    try:
        loader = yaml.SafeLoader(text)
    except yaml.reader.ReaderError as exc:  # the reader checks every character up front
        line = text.count("\n", 0, exc.position) + 1
        raise YamlSpecError(path, line, f"not valid YAML: unacceptable character #x{exc.character:04x} "
                                        "(control characters are not allowed)") from None
    try:
        try:
            root = loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark is not None else 1
            problem = " ".join(str(part) for part in (exc.context, exc.problem) if part)
            raise YamlSpecError(path, line, f"not valid YAML: {problem}") from None
        except yaml.YAMLError as exc:
            raise YamlSpecError(path, 1, f"not valid YAML: {exc}") from None
        if root is None:
            raise YamlSpecError(path, 1, "the file is empty; expected a mapping with "
                                         + ", ".join(REQUIRED_KEYS))
        r = _Reader(path, loader)
        keys = r.mapping(root, "the test file", TOP_KEYS, required=REQUIRED_KEYS)
        lines = {key: key_node.start_mark.line + 1 for key, (key_node, _v) in keys.items()}
        model, args, kwargs = _read_model(r, keys["model"][1])
        target_node = keys["target"][1]
        target: Any = r.value(target_node) if isinstance(target_node, yaml.ScalarNode) else None
        if isinstance(target, bool) or not (isinstance(target, str) and target.strip()
                                             or isinstance(target, int) and target >= 0):
            r.fail(target_node, f"target must be a class index (0, 1, ...) or a class name, got {r.kind(target_node)}")
        layers = r.names(keys["layers"][1], "layers", "a layer name or a list of layer names")
        knobs: dict[str, Any] = {}  # EngineKnobs' fields, as the file gives them
        alpha = r.number(keys["alpha"][1], "alpha", 0.0, 1.0, open_range=True) if "alpha" in keys else None
        null = r.choice(keys["null"][1], "null", NULLS) if "null" in keys else None
        if "seed" in keys:
            knobs["seed"] = r.integer(keys["seed"][1], "seed", 0)
        if "method" in keys:
            knobs["method"] = r.choice(keys["method"][1], "method", METHODS)
        if "n_steps" in keys:
            knobs["n_steps"] = r.integer(keys["n_steps"][1], "n_steps", 1)
        if "batch_size" in keys:
            knobs["batch_size"] = r.integer(keys["batch_size"][1], "batch_size", 1)
        if "layer_point" in keys:
            knobs["layer_point"] = r.choice(keys["layer_point"][1], "layer_point", LAYER_POINTS)
        if "layer_call" in keys:
            knobs["layer_call"] = r.integer(keys["layer_call"][1], "layer_call", 0)
        if "pooling" in keys:
            knobs["pooling"] = r.choice(keys["pooling"][1], "pooling", POOLINGS)
        if "forward_kwargs" in keys:
            node = keys["forward_kwargs"][1]
            if not isinstance(node, yaml.MappingNode):
                r.fail(node, f"forward_kwargs must be a mapping of keyword arguments, got {r.kind(node)}")
            r.mapping(node, "forward_kwargs", {k: "" for k in (r.value(k) for k, _ in node.value)
                                               if isinstance(k, str)})
            knobs["forward_kwargs"] = dict(r.value(node))
        if "output" in keys:
            node = keys["output"][1]
            value = r.value(node) if isinstance(node, yaml.ScalarNode) else None
            if isinstance(value, bool) or not isinstance(value, (str, int)) or value == "":
                r.fail(node, f"output must be a key, field name or index of the model's output, got {r.kind(node)}")
            knobs["output"] = value
        random_sets: int | tuple[str, ...] | None = None
        if "random_sets" in keys:
            node = keys["random_sets"][1]
            if isinstance(node, yaml.SequenceNode):
                random_sets = r.names(node, "random_sets", "a count or a list of random-set names")
            else:
                random_sets = r.integer(node, "random_sets (a count, or a list of names)", 1)
        inputs = r.text(keys["inputs"][1], "inputs", "an input-library name or a folder") if "inputs" in keys else None
        pool = (r.text(keys["random_pool"][1], "random_pool", "a folder or concept-library name")
                if "random_pool" in keys else None)
        require = r.choice(keys["require"][1], "require", ("all", "any")) if "require" in keys else "all"
        description = r.text(keys["description"][1], "description") if "description" in keys else None

        concepts_node = keys["concepts"][1]
        if not isinstance(concepts_node, yaml.MappingNode) or not concepts_node.value:
            r.fail(concepts_node, "concepts must be a mapping of concept name to a list of expectations, e.g. "
                                  "'striped: [significant]', got " + r.kind(concepts_node))
        names = {str(r.value(k)): "" for k, _ in concepts_node.value if isinstance(k, yaml.ScalarNode)}
        concept_keys = r.mapping(concepts_node, "concepts", names)
        concepts = []
        for name, (key_node, value_node) in concept_keys.items():
            if "::" in name or not name.strip():
                r.fail(key_node, f"concept name {name!r} cannot be a test id part (no '::', not empty)")
            entries = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
            if not entries:
                r.fail(value_node, f"concept {name!r} has no expectations; list at least one, e.g. [significant]")
            expectations: list[ExpectationSpec] = []
            used: dict[str, int] = {}
            for entry in entries:
                kind, options = _read_expectation(r, entry, name)
                used[kind] = used.get(kind, 0) + 1
                item_name = kind if used[kind] == 1 else f"{kind}-{used[kind]}"
                expectations.append(ExpectationSpec(kind, item_name, entry.start_mark.line + 1, options))
            concepts.append(ConceptSpec(name, key_node.start_mark.line + 1, tuple(expectations)))
        return FileSpec(
            path=path, model=model, model_args=args, model_kwargs=kwargs, target=target, layers=layers,
            concepts=tuple(concepts), inputs=inputs, random_sets=random_sets, random_pool=pool, alpha=alpha,
            null=null, knobs=EngineKnobs(**knobs), require=require, description=description, lines=lines,
        )
    finally:
        loader.dispose()


@overload
def data_path(value: str, spec: FileSpec) -> str | Path: ...
@overload
def data_path(value: None, spec: FileSpec) -> None: ...
def data_path(value: str | None, spec: FileSpec) -> str | Path | None:
    """A library name stays a name; a path (with '/' or starting with '.') is taken from the YAML file's folder."""
    if value is None:
        return None
    if "/" in value or "\\" in value or value.startswith("."):
        path = Path(os.path.expanduser(value))
        return path if path.is_absolute() else (spec.path.parent / path).resolve()
    return value


def check_spec(spec: FileSpec, concept: ConceptSpec, expectation: ExpectationSpec) -> CheckSpec:
    """The request of one expectation (one pytest item): the file's settings, the expectation's options.

    Unset knobs stay unset; the item settles the request with the run's configuration.
    """
    options, kind = expectation.options, expectation.kind
    random_sets: Any = spec.random_sets
    if isinstance(random_sets, tuple):
        random_sets = [data_path(name, spec) for name in random_sets]
    base = CheckSpec(concept=data_path(concept.name, spec), target=spec.target, layers=list(spec.layers),
                     inputs=data_path(spec.inputs, spec), random_sets=random_sets,
                     random_pool=data_path(spec.random_pool, spec), alpha=spec.alpha, null=spec.null,
                     engine=spec.knobs)
    if kind == "stable":
        return dataclasses.replace(
            base, expectation="stable", direction=options.get("direction", "either"), null=None,
            stability=StabilitySpec(baseline=options["baseline"],
                                    tolerance=options.get("tolerance", DEFAULT_TOLERANCE),
                                    statistic_tolerance=options.get("statistic_tolerance", 0.0)))
    if "against" in options:  # relative TCAV
        # Its null is relabelings of the concepts: the file's random sets do not apply, only their count.
        base = dataclasses.replace(base, against=[data_path(name, spec) for name in options["against"]],
                                   random_pool=None,
                                   random_sets=spec.random_sets if isinstance(spec.random_sets, int) else None)
    return dataclasses.replace(
        base, expectation="significant" if kind == "direction" else kind,  # type: ignore[arg-type]
        require=options.get("require", spec.require), score=options.get("score"),
        direction=options.get("direction"), margin=options.get("margin"))


def load_spec(path: Path) -> FileSpec:
    """Read and validate a file; an unreadable file is reported like a schema error, at line 1."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise YamlSpecError(path, 1, f"cannot read the file: {exc}") from None
    return parse(text, path)


def import_loader(spec: FileSpec) -> Any:
    """Import the model loader; a module beside the YAML file is found without a ``pythonpath`` setting."""
    origin = f"{shown_path(spec.path)}:{spec.line('model')}: model"
    top = spec.model.partition(":")[0].split(".")[0]
    here = spec.path.parent
    beside = (here / f"{top}.py").is_file() or (here / top / "__init__.py").is_file()
    if beside and top not in sys.modules and importlib.util.find_spec(top) is None:
        sys.path.insert(0, str(here))
        try:
            return import_callable(spec.model, origin)
        finally:
            if str(here) in sys.path:
                sys.path.remove(str(here))
    return import_callable(spec.model, origin)
