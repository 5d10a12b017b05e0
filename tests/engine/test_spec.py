"""CheckSpec, the one request of a check: every public entry point takes its fields, and settle() fills them.

A knob is a field of :mod:`pytest_tcav.engine.spec`; these tests fail when an entry point (an
assertion, ``TCAVSession.score`` / ``.engine``, the ``TCAV`` engine, a YAML key) or :func:`settle`
forgets one, so that a new knob cannot reach one way in and not another.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_tcav import TCAV, TCAVSession, assert_concept_insignificant, assert_concept_significant
from pytest_tcav import assert_concept_stable as _stable
from pytest_tcav.checks import yaml_schema
from pytest_tcav.config import TCAVConfig
from pytest_tcav.engine.spec import CheckSpec, EngineKnobs, StabilitySpec, settle

#: The spec's fields, its nested parts flattened: what an entry point's parameters are named after.
NESTED = {"engine": EngineKnobs, "stability": StabilitySpec}
FIELDS = {f.name for f in dataclasses.fields(CheckSpec) if f.name not in NESTED} | {
    f.name for part in NESTED.values() for f in dataclasses.fields(part)}
STABILITY = {f.name for f in dataclasses.fields(StabilitySpec)}
KNOBS = {f.name for f in dataclasses.fields(EngineKnobs)}

#: Per entry point: the spec's fields it does not take, and the parameters of its own (not a check's).
ENTRIES: dict[str, tuple[Callable[..., Any], set[str], set[str]]] = {
    "assert_concept_significant": (
        assert_concept_significant,
        # the function is the expectation; margin is an insignificance check's; min_cav_accuracy and
        # correction are ini keys only (tcav_min_cav_accuracy, tcav_correction); null_test is the engine's
        {"expectation", "margin", "min_cav_accuracy", "correction", "null_test", *STABILITY},
        {"model"},
    ),
    "assert_concept_insignificant": (
        assert_concept_insignificant,
        {"expectation", "min_cav_accuracy", "correction", "null_test", *STABILITY},
        {"model"},
    ),
    "assert_concept_stable": (
        _stable,
        # a stability check compares with a baseline: no verdict options, no relative test
        # and its null (tcav_null) does not apply: it compares with the baseline
        {"expectation", "require", "score", "against", "margin", "min_cav_accuracy", "correction", "null_test",
         "null"},
        {"model"},
    ),
    "TCAVSession.score": (
        TCAVSession.score,
        # a measurement: no expectation or its options
        {"expectation", "require", "score", "correction", "null_test", *STABILITY},
        {"self", "model"},
    ),
    "TCAVSession.engine": (
        TCAVSession.engine,
        FIELDS - KNOBS,  # an engine is made of the knobs alone
        {"self", "model"},
    ),
    "TCAV.__init__": (
        TCAV.__init__,
        # an engine has no concept, check or baseline; alpha, correction, null_test and null are its per-engine
        # defaults
        FIELDS - KNOBS - {"alpha", "correction", "null_test", "null"},
        # what the engine is built with besides a check's knobs: the caller's, not the check's
        {"self", "model", "trainer", "device", "transform", "store"},
    ),
    "TCAV.test": (
        TCAV.test,
        # data in, a result out: the knobs are the engine's; no verdict, no baseline
        {"expectation", "require", "score", *KNOBS, *STABILITY},
        # the pseudo-concepts themselves (or their measured null), for null="pseudo": data, as the sets are
        {"self", "pseudo_concepts"},
    ),
}


@pytest.mark.parametrize("entry", sorted(ENTRIES))
def test_every_entry_point_takes_the_specs_fields(entry: str) -> None:
    function, not_taken, own = ENTRIES[entry]
    assert not_taken <= FIELDS and not own & FIELDS, "the lists above name fields that do not exist (or clash)"
    parameters = set(inspect.signature(function).parameters)
    assert parameters - own == FIELDS - not_taken, (
        f"{entry}: parameters that are no field of CheckSpec: {sorted(parameters - own - FIELDS)}; "
        f"fields it lacks: {sorted(FIELDS - not_taken - parameters)}")


@pytest.mark.parametrize("entry", sorted(ENTRIES))
def test_a_default_written_in_a_signature_is_the_specs(entry: str) -> None:
    """A public default other than None (None: the configuration's) is the spec's own, or settle()'s."""
    function = ENTRIES[entry][0]
    defaults = {f.name: f.default for part in (CheckSpec, *NESTED.values()) for f in dataclasses.fields(part)
                if f.default is not dataclasses.MISSING}
    # the spec leaves direction unset: settle() makes it "either" for a stability check, else "positive"
    defaults["direction"] = "either" if function is _stable else "positive"
    engine_defaults = TCAVConfig()  # the engine's defaults are the ini keys' defaults
    for name, parameter in inspect.signature(function).parameters.items():
        if parameter.default in (None, inspect.Parameter.empty) or name not in FIELDS:
            continue
        if function in (TCAV.__init__, TCAV.test) and hasattr(engine_defaults, name):
            assert parameter.default == getattr(engine_defaults, name), (entry, name)
        elif name in defaults and defaults[name] is not None:
            assert parameter.default == defaults[name], (entry, name)


def test_the_yaml_keys_are_the_specs_fields() -> None:
    keys = set(yaml_schema.TOP_KEYS) | set(yaml_schema.INSIGNIFICANT_OPTIONS) | set(yaml_schema.STABLE_OPTIONS)
    file_only = {"model", "concepts", "description"}  # what a file has besides its checks
    # Python values or engine choices a YAML file does not set; the baseline lives next to the file
    not_in_yaml = {"concept", "expectation", "tokenizer", "min_cav_accuracy", "correction", "null_test",
                   "baseline_dir"}
    assert keys - file_only == FIELDS - not_in_yaml


def test_settle_fills_every_knob_the_configuration_has() -> None:
    config = TCAVConfig(random_sets=7, alpha=0.01, seed=5, batch_size=9, method="integrated_gradients", n_steps=3,
                        layer_point="input", pooling="mean", correction="bonferroni", margin=1.5,
                        min_cav_accuracy=0.7, tokenizer="pkg:tok")
    spec = settle(CheckSpec(concept="c", target=0, layers="x", expectation="insignificant"), config)
    values = {**{f.name: getattr(spec, f.name) for f in dataclasses.fields(CheckSpec)},
              **{f.name: getattr(spec.engine, f.name) for f in dataclasses.fields(EngineKnobs)}}
    # the configuration's tokenizer is a 'module:callable' the session loads: it fills tokenizer=None there
    shared = (FIELDS & {f.name for f in dataclasses.fields(TCAVConfig)}) - {"tokenizer"}
    assert shared, "no knob shared with the configuration?"
    for name in shared:
        assert values[name] == getattr(config, name), name
    assert spec.direction == "positive" and spec.engine.tokenizer is None and spec.null_test is None
    # what a call gives wins; tcav_margin is the insignificance checks' margin only
    mine = settle(CheckSpec(concept="c", target=0, layers="x", expectation="significant", alpha=0.2,
                            engine=EngineKnobs(seed=1)), config)
    assert (mine.alpha, mine.engine.seed, mine.margin, mine.engine.n_steps) == (0.2, 1, None, 3)
    assert settle(CheckSpec(concept="c", target=0, layers="x", expectation="stable"), config).direction == "either"


def test_a_yaml_expectation_becomes_one_request(tmp_path: Path) -> None:
    text = """
model: pkg:load
target: zebra
layers: [a, b]
alpha: 0.01
seed: 3
random_sets: [random_0, ./more/random_1]
concepts:
  striped:
    - insignificant: {margin: 2, require: any}
    - stable: {baseline: striped, tolerance: 0.05}
    - significant: {against: dotted}
"""
    spec = yaml_schema.parse(text, tmp_path / "tcav_x.yaml")
    (concept,) = spec.concepts
    insignificant, stable, relative = (yaml_schema.check_spec(spec, concept, e) for e in concept.expectations)
    assert insignificant == CheckSpec(
        concept="striped", target="zebra", layers=["a", "b"], expectation="insignificant", require="any",
        margin=2.0, random_sets=["random_0", (tmp_path / "more" / "random_1").resolve()], alpha=0.01,
        engine=EngineKnobs(seed=3))
    assert stable.expectation == "stable" and stable.direction == "either"
    assert stable.stability == StabilitySpec(baseline="striped", tolerance=0.05)
    # relative TCAV: the null is relabelings, the file's random sets do not apply
    assert (relative.against, relative.random_sets, relative.random_pool) == (["dotted"], None, None)
