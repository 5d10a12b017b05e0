"""Baseline files: read back, validated, written atomically, and the writer's exact bytes.

The writer's exact bytes: files written by one pytest-tcav version stay the same in the next.

A baseline is reviewed in diffs, so a change of the writer that changes a
quote, an exponent or the order of keys would show up as a diff of every
committed baseline.  These texts were recorded from the writer as it was
before it became a ``yaml.SafeDumper`` subclass, and must not change.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from pytest_tcav import atomic_files
from pytest_tcav.checks.baseline_file import Baseline, LayerBaseline, atomic_write
from pytest_tcav.checks.stability import welch_p
from pytest_tcav.engine.results import LayerResult, TCAVResult
from pytest_tcav.errors import BaselineError
from tests.helpers.results import STATS, layer_result, tcav_result

SETTINGS = {"method": "gradient", "direction": "either", "seed": 0, "random_sets": 2, "alpha": 0.05,
            "correction": "holm", "null_test": "t", "concept_examples": 30, "inputs": 20}


def layer(name: str, **values: Any) -> LayerBaseline:
    fields: dict[str, Any] = dict(layer=name, score=0.95, statistic=0.22, null_mean=0.0013, null_sd=0.05,
                                  p_value=0.001, p_corrected=0.002, cav_accuracy=0.9, significant=True,
                                  concept_scores=(0.95, 1.0), concept_statistics=(0.21, 0.23))
    fields.update(values)
    return LayerBaseline(**fields)


def baseline(name: str, layers: list[LayerBaseline], **values: Any) -> Baseline:
    fields: dict[str, Any] = dict(name=name, library_version="1.2.3", test=None, concept="striped",
                                  target="zebra (0)", model_fingerprint="m" * 64, concept_fingerprint="0c" * 32,
                                  settings=dict(SETTINGS), layers=tuple(layers))
    fields.update(values)
    return Baseline(**fields)


def from_result() -> Baseline:
    """Through Baseline.from_result: its rounding (6 / 4 / 3 significant digits, noise to 0.0)."""
    statistics = [0.123456789, 2.5e-7, -3.00000049e-6, 1e-13, 12345678.9, 1e16 / 3]
    layer_result = LayerResult(
        layer="features.conv2", score=0.123456, magnitude=0.1, statistic=0.3333333333, null_mean=-1.23456789e-5,
        null_sd=1e-20, t_statistic=3.0, p_value=0.000123456, p_value_rank=0.01, p_corrected=0.99999,
        cav_accuracy=0.87654, significant=False, concept_scores=[0.33335, 1.0, 0.0, 0.5, 0.12344999, 0.99995],
        concept_statistics=statistics, cav_accuracies=[0.9] * 6, null_statistics=[0.0] * 6, null_scores=[0.5] * 6)
    result = TCAVResult(concept="striped", target="zebra (0)", direction="positive", alpha=0.01,
                        correction="bonferroni", null_test="t", method="gradient", n_random=6, n_concept_examples=30,
                        n_inputs=20, seed=7, layers=[layer_result], model_fingerprint="a1" * 32,
                        concept_fingerprint="9f" * 32)
    written = Baseline.from_result(result, "striped-zebra_v2.1", test="tests/test_x.py::test_a[zebra-1]")
    return replace(written, library_version="0.4.0")  # the version would otherwise change the bytes


def quoting() -> Baseline:
    """Names, keys and values that need quoting: YAML words, leading digits, separators, unicode."""
    names = ["yes", "No", "y", "null", "~", "1abc", "layer 1", "a:b", "słoń", 'with"quote\\', "tab\there",
             "x" * 140, "", "line\nbreak", "a/b.c-d_e", "#hash", "ünï"]
    return baseline("yes", [layer(name) for name in names], concept="yes", target="no",
                    test="tests/test_ö.py::test_a[słoń-1]", model_fingerprint="0123abc", concept_fingerprint="e5",
                    settings={**SETTINGS, "method": "on", "direction": "Off", "correction": "TRUE",
                              "null_test": "null"})


def values() -> Baseline:
    """Plain text with brackets, control characters, empty strings, big integers, nested lists."""
    settings = {**SETTINGS, "method": "1e5", "direction": "a  b", "correction": " lead", "null_test": "-",
                "x_ctrl": "\x00\x07\x0b\x1b\xa0\u2028\ufeff", "x_astral": "\U0001f993", "x_empty": "",
                "x_colon": "k: v", "x_hash": "a #b", "x_int": 10**20, "x_bool": False, "x_none": None,
                "x_nested": [[1, 2.5, "t"], [], [[True, None]]], "x_words": ["yes", "no", "on", "a b"]}
    return baseline("values", [layer("l", concept_scores=(), concept_statistics=())], concept="a (b) = c+d",
                    target="3", test="", settings=settings)


def floats() -> Baseline:
    """Exponents (PyYAML reads 1e-05 as a string, 1.0e-05 as a float), repr's shortest digits, infinities."""
    return baseline("floats", [layer("l", score=1e-05, statistic=-0.0, null_mean=1e16, null_sd=1.5e-300,
                                     p_value=5e-324, p_corrected=1.7976931348623157e308, cav_accuracy=0.1 + 0.2,
                                     concept_scores=(1e22, 123456789012345.6),
                                     concept_statistics=(math.inf, -math.inf))],
                    settings={**SETTINGS, "alpha": 1e-3, "x_int_float": 3.0})


EXPECTED = {
    'from_result': (
        "# pytest-tcav baseline 'striped-zebra_v2.1': the accepted result of one concept check.\n"
        '# Written by `pytest --tcav-update-baselines`; review a change to it like a change to code.\n'
        'format: 1\n'
        'library: pytest-tcav 0.4.0\n'
        'test: "tests/test_x.py::test_a[zebra-1]"\n'
        'concept: striped\n'
        'target: zebra (0)\n'
        'model_fingerprint: a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1\n'
        'concept_fingerprint: "9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f"\n'
        'settings:\n'
        '  method: gradient\n'
        '  direction: positive\n'
        '  seed: 7\n'
        '  random_sets: 6\n'
        '  alpha: 0.01\n'
        '  correction: bonferroni\n'
        '  null_test: t\n'
        '  concept_examples: 30\n'
        '  inputs: 20\n'
        'layers:\n'
        '  features.conv2:\n'
        '    score: 0.1235\n'
        '    statistic: 0.333333\n'
        '    random_mean: -1.23457e-05\n'
        '    random_sd: 0.0\n'
        '    p_value: 0.000123\n'
        '    p_corrected: 1.0\n'
        '    significant: false\n'
        '    cav_accuracy: 0.877\n'
        '    concept_scores: [0.3333, 1.0, 0.0, 0.5, 0.1234, 1.0]\n'
        '    concept_statistics: [0.123457, 2.5e-07, -3.0e-06, 0.0, 12345700.0, 3333330000000000.0]\n'
    ),
    'quoting': (
        "# pytest-tcav baseline 'yes': the accepted result of one concept check.\n"
        '# Written by `pytest --tcav-update-baselines`; review a change to it like a change to code.\n'
        'format: 1\n'
        'library: pytest-tcav 1.2.3\n'
        'test: "tests/test_ö.py::test_a[słoń-1]"\n'
        'concept: "yes"\n'
        'target: "no"\n'
        'model_fingerprint: "0123abc"\n'
        'concept_fingerprint: e5\n'
        'settings:\n'
        '  method: "on"\n'
        '  direction: "Off"\n'
        '  seed: 0\n'
        '  random_sets: 2\n'
        '  alpha: 0.05\n'
        '  correction: "TRUE"\n'
        '  null_test: "null"\n'
        '  concept_examples: 30\n'
        '  inputs: 20\n'
        'layers:\n'
        '  "yes":\n'
        '    score: 0.95\n'
        '    statistic: 0.22\n'
        '    random_mean: 0.0013\n'
        '    random_sd: 0.05\n'
        '    p_value: 0.001\n'
        '    p_corrected: 0.002\n'
        '    significant: true\n'
        '    cav_accuracy: 0.9\n'
        '    concept_scores: [0.95, 1.0]\n'
        '    concept_statistics: [0.21, 0.23]\n'
        '  "No":\n'
        '    score: 0.95\n'
        '    statistic: 0.22\n'
        '    random_mean: 0.0013\n'
        '    random_sd: 0.05\n'
        '    p_value: 0.001\n'
        '    p_corrected: 0.002\n'
        '    significant: true\n'
        '    cav_accuracy: 0.9\n'
        '    concept_scores: [0.95, 1.0]\n'
        '    concept_statistics: [0.21, 0.23]\n'
        '  "y":\n'
        '    score: 0.95\n'
        '    statistic: 0.22\n'
        '    random_mean: 0.0013\n'
        '    random_sd: 0.05\n'
        '    p_value: 0.001\n'
        '    p_corrected: 0.002\n'
        '    significant: true\n'
        '    cav_accuracy: 0.9\n'
        '    concept_scores: [0.95, 1.0]\n'
        '    concept_statistics: [0.21, 0.23]\n'
        '  "null":\n'
        '    score: 0.95\n'
        '    statistic: 0.22\n'
        '    random_mean: 0.0013\n'
        '    random_sd: 0.05\n'
        '    p_value: 0.001\n'
        '    p_corrected: 0.002\n'
        '    significant: true\n'
        '    cav_accuracy: 0.9\n'
        '    concept_scores: [0.95, 1.0]\n'
        '    concept_statistics: [0.21, 0.23]\n'
        '  "~":\n'
        '    score: 0.95\n'
        '    statistic: 0.22\n'
        '    random_mean: 0.0013\n'
        '    random_sd: 0.05\n'
        '    p_value: 0.001\n'
        '    p_corrected: 0.002\n'
        '    significant: true\n'
        '    cav_accuracy: 0.9\n'
        '    concept_scores: [0.95, 1.0]\n'
        '    concept_statistics: [0.21, 0.23]\n'
        '  "1abc":\n'
        '    score: 0.95\n'
        '    statistic: 0.22\n'
        '    random_mean: 0.0013\n'
        '    random_sd: 0.05\n'
        '    p_value: 0.001\n'
        '    p_corrected: 0.002\n'
        '    significant: true\n'
        '    cav_accuracy: 0.9\n'
        '    concept_scores: [0.95, 1.0]\n'
        '    concept_statistics: [0.21, 0.23]\n'
        '  "layer 1":\n'
        '    score: 0.95\n'
        '    statistic: 0.22\n'
        '    random_mean: 0.0013\n'
        '    random_sd: 0.05\n'
        '    p_value: 0.001\n'
        '    p_corrected: 0.002\n'
        '    significant: true\n'
        '    cav_accuracy: 0.9\n'
        '    concept_scores: [0.95, 1.0]\n'
        '    concept_statistics: [0.21, 0.23]\n'
        '  "a:b":\n'
        '    score: 0.95\n'
        '    statistic: 0.22\n'
        '    random_mean: 0.0013\n'
        '    random_sd: 0.05\n'
        '    p_value: 0.001\n'
        '    p_corrected: 0.002\n'
        '    significant: true\n'
        '    cav_accuracy: 0.9\n'
        '    concept_scores: [0.95, 1.0]\n'
        '    concept_statistics: [0.21, 0.23]\n'
        '  "s\\u0142o\\u0144":\n'
        '    score: 0.95\n'
        '    statistic: 0.22\n'
        '    random_mean: 0.0013\n'
        '    random_sd: 0.05\n'
        '    p_value: 0.001\n'
        '    p_corrected: 0.002\n'
        '    significant: true\n'
        '    cav_accuracy: 0.9\n'
        '    concept_scores: [0.95, 1.0]\n'
        '    concept_statistics: [0.21, 0.23]\n'
        '  "with\\"quote\\\\":\n'
        '    score: 0.95\n'
        '    statistic: 0.22\n'
        '    random_mean: 0.0013\n'
        '    random_sd: 0.05\n'
        '    p_value: 0.001\n'
        '    p_corrected: 0.002\n'
        '    significant: true\n'
        '    cav_accuracy: 0.9\n'
        '    concept_scores: [0.95, 1.0]\n'
        '    concept_statistics: [0.21, 0.23]\n'
        '  "tab\\there":\n'
        '    score: 0.95\n'
        '    statistic: 0.22\n'
        '    random_mean: 0.0013\n'
        '    random_sd: 0.05\n'
        '    p_value: 0.001\n'
        '    p_corrected: 0.002\n'
        '    significant: true\n'
        '    cav_accuracy: 0.9\n'
        '    concept_scores: [0.95, 1.0]\n'
        '    concept_statistics: [0.21, 0.23]\n'
        '  ' + 'x' * 140 + ':\n'
        '    score: 0.95\n'
        '    statistic: 0.22\n'
        '    random_mean: 0.0013\n'
        '    random_sd: 0.05\n'
        '    p_value: 0.001\n'
        '    p_corrected: 0.002\n'
        '    significant: true\n'
        '    cav_accuracy: 0.9\n'
        '    concept_scores: [0.95, 1.0]\n'
        '    concept_statistics: [0.21, 0.23]\n'
        '  "":\n'
        '    score: 0.95\n'
        '    statistic: 0.22\n'
        '    random_mean: 0.0013\n'
        '    random_sd: 0.05\n'
        '    p_value: 0.001\n'
        '    p_corrected: 0.002\n'
        '    significant: true\n'
        '    cav_accuracy: 0.9\n'
        '    concept_scores: [0.95, 1.0]\n'
        '    concept_statistics: [0.21, 0.23]\n'
        '  "line\\nbreak":\n'
        '    score: 0.95\n'
        '    statistic: 0.22\n'
        '    random_mean: 0.0013\n'
        '    random_sd: 0.05\n'
        '    p_value: 0.001\n'
        '    p_corrected: 0.002\n'
        '    significant: true\n'
        '    cav_accuracy: 0.9\n'
        '    concept_scores: [0.95, 1.0]\n'
        '    concept_statistics: [0.21, 0.23]\n'
        '  a/b.c-d_e:\n'
        '    score: 0.95\n'
        '    statistic: 0.22\n'
        '    random_mean: 0.0013\n'
        '    random_sd: 0.05\n'
        '    p_value: 0.001\n'
        '    p_corrected: 0.002\n'
        '    significant: true\n'
        '    cav_accuracy: 0.9\n'
        '    concept_scores: [0.95, 1.0]\n'
        '    concept_statistics: [0.21, 0.23]\n'
        '  "#hash":\n'
        '    score: 0.95\n'
        '    statistic: 0.22\n'
        '    random_mean: 0.0013\n'
        '    random_sd: 0.05\n'
        '    p_value: 0.001\n'
        '    p_corrected: 0.002\n'
        '    significant: true\n'
        '    cav_accuracy: 0.9\n'
        '    concept_scores: [0.95, 1.0]\n'
        '    concept_statistics: [0.21, 0.23]\n'
        '  "\\u00fcn\\u00ef":\n'
        '    score: 0.95\n'
        '    statistic: 0.22\n'
        '    random_mean: 0.0013\n'
        '    random_sd: 0.05\n'
        '    p_value: 0.001\n'
        '    p_corrected: 0.002\n'
        '    significant: true\n'
        '    cav_accuracy: 0.9\n'
        '    concept_scores: [0.95, 1.0]\n'
        '    concept_statistics: [0.21, 0.23]\n'
    ),
    'values': (
        "# pytest-tcav baseline 'values': the accepted result of one concept check.\n"
        '# Written by `pytest --tcav-update-baselines`; review a change to it like a change to code.\n'
        'format: 1\n'
        'library: pytest-tcav 1.2.3\n'
        'test: ""\n'
        'concept: a (b) = c+d\n'
        'target: "3"\n'
        'model_fingerprint: mmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmm\n'
        'concept_fingerprint: "0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c"\n'
        'settings:\n'
        '  method: "1e5"\n'
        '  direction: "a  b"\n'
        '  seed: 0\n'
        '  random_sets: 2\n'
        '  alpha: 0.05\n'
        '  correction: " lead"\n'
        '  null_test: "-"\n'
        '  concept_examples: 30\n'
        '  inputs: 20\n'
        '  x_ctrl: "\\u0000\\u0007\\u000b\\u001b\xa0\u2028'
        '\ufeff"\n'
        '  x_astral: "🦓"\n'
        '  x_empty: ""\n'
        '  x_colon: "k: v"\n'
        '  x_hash: "a #b"\n'
        '  x_int: 100000000000000000000\n'
        '  x_bool: false\n'
        '  x_none: null\n'
        '  x_nested: [[1, 2.5, t], [], [[true, null]]]\n'
        '  x_words: ["yes", "no", "on", a b]\n'
        'layers:\n'
        '  l:\n'
        '    score: 0.95\n'
        '    statistic: 0.22\n'
        '    random_mean: 0.0013\n'
        '    random_sd: 0.05\n'
        '    p_value: 0.001\n'
        '    p_corrected: 0.002\n'
        '    significant: true\n'
        '    cav_accuracy: 0.9\n'
        '    concept_scores: []\n'
        '    concept_statistics: []\n'
    ),
    'floats': (
        "# pytest-tcav baseline 'floats': the accepted result of one concept check.\n"
        '# Written by `pytest --tcav-update-baselines`; review a change to it like a change to code.\n'
        'format: 1\n'
        'library: pytest-tcav 1.2.3\n'
        'test: null\n'
        'concept: striped\n'
        'target: zebra (0)\n'
        'model_fingerprint: mmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmm\n'
        'concept_fingerprint: "0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c"\n'
        'settings:\n'
        '  method: gradient\n'
        '  direction: either\n'
        '  seed: 0\n'
        '  random_sets: 2\n'
        '  alpha: 0.001\n'
        '  correction: holm\n'
        '  null_test: t\n'
        '  concept_examples: 30\n'
        '  inputs: 20\n'
        '  x_int_float: 3.0\n'
        'layers:\n'
        '  l:\n'
        '    score: 1.0e-05\n'
        '    statistic: -0.0\n'
        '    random_mean: 1.0e+16\n'
        '    random_sd: 1.5e-300\n'
        '    p_value: 5.0e-324\n'
        '    p_corrected: 1.7976931348623157e+308\n'
        '    significant: true\n'
        '    cav_accuracy: 0.30000000000000004\n'
        '    concept_scores: [1.0e+22, 123456789012345.6]\n'
        '    concept_statistics: [.inf, -.inf]\n'
    ),
}


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_baseline_files_are_byte_identical_to_the_recorded_ones(case: str) -> None:
    baseline = globals()[case]()
    assert baseline.to_yaml() == EXPECTED[case]


@pytest.mark.parametrize("name, value, error", [
    ("a layer name outside the Basic Multilingual Plane", "\U0001f993", RuntimeError),  # JSON's surrogate pair
    ("a DEL character", "a\x7f", yaml.YAMLError),  # written raw, refused by the YAML reader
    ("a NEL character", "a\x85", RuntimeError),  # written raw, read back as a line break
    ("NaN", math.nan, RuntimeError),  # NaN != NaN: the read-back check refuses it
])
def test_values_the_writer_cannot_write_are_refused_not_written(name: str, value: Any, error: type) -> None:
    base = floats()
    if name.startswith("a layer"):
        base = replace(base, layers=(layer(value),))
    elif isinstance(value, str):
        base = replace(base, settings={**base.settings, "x": value})
    else:
        base = replace(base, layers=(layer("l", statistic=value),))
    with pytest.raises(error):
        base.to_yaml()


def test_the_file_reads_back_exactly_and_diffs_by_line() -> None:
    result = tcav_result(layer_result("features.conv2", score=0.95, statistics=STATS),
                         layer_result("layer4.0", score=1.0, statistics=[1e-5, 2.5e-7, -3.0e-6, 0.0, 1.0]))
    baseline = Baseline.from_result(result, "striped-zebra", test="tests/test_x.py::test_a[zebra-1]")
    text = baseline.to_yaml()
    assert text.startswith("# pytest-tcav baseline 'striped-zebra'")
    assert "    concept_statistics: [0.21, 0.25, 0.19, 0.23, 0.22]\n" in text
    assert "    concept_statistics: [1.0e-05, 2.5e-07, -3.0e-06, 0.0, 1.0]\n" in text  # floats, not strings
    assert 'test: "tests/test_x.py::test_a[zebra-1]"\n' in text and "target: zebra (0)\n" in text
    again = Baseline.from_yaml(text, name="striped-zebra", origin="x.yaml")
    assert again == baseline
    # One number changed: one line of the file changed.
    moved = tcav_result(layer_result("features.conv2", score=0.95, statistics=STATS),
                        layer_result("layer4.0", score=0.5, statistics=[1e-5, 2.5e-7, -3.0e-6, 0.0, 1.0]))
    other = Baseline.from_result(moved, "striped-zebra", test="tests/test_x.py::test_a[zebra-1]").to_yaml()
    changed = [(a, b) for a, b in zip(text.splitlines(), other.splitlines()) if a != b]
    assert changed == [("    score: 1.0", "    score: 0.5"), ("    concept_scores: [1.0, 1.0, 1.0, 1.0, 1.0]",
                                                           "    concept_scores: [0.5, 0.5, 0.5, 0.5, 0.5]")]


def test_values_are_rounded_for_diffs_but_keep_the_test_meaningful() -> None:
    exact = [0.123456789, 0.2345678912, -0.0345678912, 1.23456789e-9, 0.5]
    baseline = Baseline.from_result(tcav_result(layer_result("l", score=0.123456, statistics=exact)), "b")
    layer = baseline.layers[0]
    assert layer.concept_statistics == (0.123457, 0.234568, -0.0345679, 1.23457e-9, 0.5)
    assert layer.score == 0.1235 and layer.p_value == 0.001
    # The rounding is far below what the comparison calls a change.
    assert welch_p(layer.concept_statistics, exact) == (1.0, False)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[1, 2]\n", "the file must be a mapping, got list"),
        ("{{{\n", "is not valid YAML"),
        ("!!python/object/apply:os.system ['true']\n", "is not valid YAML"),  # safe_load: no objects
    ],
)
def test_invalid_files_are_refused_with_the_file_named(text: str, message: str) -> None:
    with pytest.raises(BaselineError, match="b.yaml") as info:
        Baseline.from_yaml(text, name="b", origin="b.yaml")
    assert message in str(info.value)


def _valid_text() -> str:
    return Baseline.from_result(tcav_result(layer_result("l", score=0.9, statistics=STATS)), "b").to_yaml()


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("format: 1", "format: 2", "format 2 was written by a newer pytest-tcav"),
        ("    score: 0.9", "    score: high", "'layers.l.score' must be a number, got 'high'"),
        ("    significant: true", "    significant: 1", "'layers.l.significant' must be true or false"),
        ("  random_sets: 5", "  random_sets: 6", "'layers.l.concept_statistics' has 5 values but settings"),
        ("    cav_accuracy: 0.9\n", "", "layers.l lacks 'cav_accuracy'"),
        ("settings:", "setting:", "unknown key(s) 'setting' in the file"),
    ],
)
def test_validation_says_what_is_wrong_and_what_to_do(old: str, new: str, message: str) -> None:
    text = _valid_text()
    assert old in text
    with pytest.raises(BaselineError) as info:
        Baseline.from_yaml(text.replace(old, new), name="b", origin="tcav_baselines/b.yaml")
    assert str(info.value).startswith("baseline tcav_baselines/b.yaml is invalid: ")
    assert message in str(info.value)
    assert str(info.value).endswith("re-record it with pytest --tcav-update-baselines")


def test_atomic_write_leaves_the_old_file_and_no_temporary_file_on_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "b.yaml"
    atomic_write(path, "old\n")

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(atomic_files.os, "replace", broken_replace)  # the writer of every user-owned file
    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, "new\n")
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["b.yaml"]


def test_layer_names_with_selectors_read_back_exactly() -> None:
    names = ["rnn[0]", "rnn[1][0]", "attn[-1]", "encoder['last_hidden_state']", 'encoder["pooler_output"]']
    written = baseline("rnn-zebra", [layer(name) for name in names])
    again = Baseline.from_yaml(written.to_yaml(), name="rnn-zebra", origin="x.yaml")
    assert again == written and [entry.layer for entry in again.layers] == names
    assert again.layer("rnn[1][0]") is not None
