"""Fuzzing the declarative test file loader: a valid spec or a clean schema error at a line, nothing else.

Whatever a ``tcav_*.yaml`` file holds (garbage, YAML that is valid but not a
test file, a test file with one subtree replaced, hostile tags, aliases,
control characters), :func:`pytest_tcav.checks.yaml_schema.parse` must return a
:class:`FileSpec` or raise :class:`YamlSpecError` whose text is
``file:line: message`` with a line inside the file.  Any other exception
would reach the user as a crash of the collector.  Example counts are
modest (the loader is fast; three strategies at 150 examples take seconds).
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_tcav.checks.yaml_schema import KINDS, STABLE_OPTIONS, TOP_KEYS, VERDICT_OPTIONS, FileSpec, parse
from pytest_tcav.errors import YamlSpecError

PATH = Path("tests/tcav_fuzz.yaml")
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

VALID: dict[str, Any] = {
    "description": "a valid file, mutated by the tests below",
    "model": {"callable": "tiny_model:EdgeNet", "args": [1, "x"], "kwargs": {"flip": True}},
    "target": "horizontal",
    "layers": ["conv", "relu"],
    "random_sets": 5,
    "alpha": 0.05,
    "seed": 0,
    "method": "gradient",
    "n_steps": 5,
    "batch_size": 16,
    "require": "any",
    "concepts": {
        "horizontal": ["significant", {"score": [0.9, 1.0]}, {"stable": "horizontal-edges"}],
        "vertical": [{"direction": "negative"}, {"insignificant": {"direction": "positive", "require": "all"}}],
        "noisy": [{"stable": {"baseline": "noise", "tolerance": 0.1, "statistic_tolerance": 0.01}}],
    },
}

#: Words the schema knows, so generated documents get past the first key check and reach deep validation.
WORDS = sorted({*TOP_KEYS, *KINDS, *VERDICT_OPTIONS, *STABLE_OPTIONS, "callable", "args", "kwargs", "horizontal",
                "positive", "negative", "either", "all", "any", "gradient", "integrated_gradients", "<<", "::"})

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 2**70), st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(WORDS), st.text(max_size=12),
)
keys = st.one_of(st.sampled_from(WORDS), st.text(max_size=8), st.integers(-2, 5), st.booleans(), st.none())
trees = st.recursive(
    scalars,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(keys, children, max_size=5)),
    max_leaves=25,
)


def check(text: str) -> FileSpec | None:
    """The property: a spec, or a YamlSpecError ``path:line: message`` with the line inside the text."""
    try:
        return parse(text, PATH)
    except YamlSpecError as exc:
        match = re.match(rf"^{re.escape(str(PATH))}:(\d+): (.+)", str(exc), re.DOTALL)
        assert match, str(exc)
        assert int(match.group(1)) == exc.line and exc.message
        assert 1 <= exc.line <= text.count("\n") + 2, (exc.line, text)
        return None


def _dump(document: Any) -> str:
    return yaml.safe_dump(document, allow_unicode=True, sort_keys=False)


def test_the_valid_document_is_valid() -> None:
    spec = check(_dump(VALID))
    assert spec is not None and [c.name for c in spec.concepts] == ["horizontal", "vertical", "noisy"]


@pytest.mark.slow  # over a second
@FUZZ
@given(text=st.text(max_size=300))
def test_arbitrary_text(text: str) -> None:
    check(text)


@FUZZ
@given(document=trees)
def test_arbitrary_yaml_documents(document: Any) -> None:
    check(_dump(document))


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, (*prefix, index))
    return found


def _replaced(document: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    head, *rest = path
    copy = dict(document) if isinstance(document, dict) else list(document)
    copy[head] = _replaced(document[head], tuple(rest), value)
    return copy


ALL_PATHS = _paths(VALID)


@FUZZ
@given(where=st.sampled_from(ALL_PATHS), value=trees)
def test_a_valid_file_with_one_subtree_replaced(where: tuple[Any, ...], value: Any) -> None:
    check(_dump(_replaced(VALID, where, value)))


@pytest.mark.slow  # over a second
@FUZZ
@given(where=st.sampled_from(ALL_PATHS), key=keys, value=trees)
def test_a_valid_file_with_one_key_added(where: tuple[Any, ...], key: Any, value: Any) -> None:
    def add(node: Any, path: tuple[Any, ...]) -> Any:
        if path:
            head, *rest = path
            copy = dict(node) if isinstance(node, dict) else list(node)
            copy[head] = add(node[head], tuple(rest))
            return copy
        if isinstance(node, dict):
            return {**node, key: value}
        if isinstance(node, list):
            return [*node, {key: value}]
        return node

    check(_dump(add(VALID, where)))


HOSTILE = ["!!python/object/apply:os.system ['echo pwned']", "!!python/name:os.system", "&a [*a]", "*undefined",
           "{<<: *a}", "!!binary AAAA", "!!set {a, b}", "!!timestamp 2001-12-14", "\t", "\x00", "\x07", "\ufeff",
           "\udcff", "---\n", "...\n", "%YAML 1.1\n", "? [a, b]\n: c", "'unterminated", "[", "}", ": :", "- - -",
           "!custom tag", "&anchor", "|\n  block", ">-\n folded", "0o777", "0x1F", ".inf", ".nan", "~", "1e400"]


@FUZZ
@given(position=st.integers(0, 2000), insert=st.one_of(st.sampled_from(HOSTILE), st.text(max_size=5)),
       delete=st.integers(0, 3))
def test_a_valid_file_with_hostile_text_spliced_in(position: int, insert: str, delete: int) -> None:
    text = _dump(VALID)
    position %= len(text) + 1
    check(text[:position] + insert + text[position + delete:])


@pytest.mark.parametrize(("key", "tagged"), [
    ("target: horizontal", "target: !!python/object/apply:os.system ['touch {marker}']"),
    ("description: a valid file", "description: !!python/object/apply:os.system ['touch {marker}']"),
    ("description: a valid file", "description: !!python/name:os.system"),
    ("- 1", "- !!python/object/apply:os.system ['touch {marker}']"),  # model.args, constructed whole
])
def test_unsafe_tags_are_schema_errors_at_their_line_and_run_nothing(tmp_path: Path, key: str, tagged: str) -> None:
    marker = tmp_path / "pwned"
    text = _dump(VALID).replace(key, tagged.format(marker=marker), 1)
    line = next(n for n, row in enumerate(text.splitlines(), 1) if "!!python" in row)
    with pytest.raises(YamlSpecError) as info:
        parse(text, PATH)
    assert info.value.line == line
    assert not marker.exists()


@pytest.mark.parametrize("tagged", ["!!int abc", "!!bool maybe", "!!timestamp 2001-99", "!!float x", "!!int 0x"])
def test_malformed_explicit_tags_are_schema_errors_at_their_line(tagged: str) -> None:
    """PyYAML's safe constructors raise ValueError, KeyError or AttributeError on these (found by the fuzzing)."""
    text = _dump(VALID).replace("description: a valid file, mutated by the tests below", f"description: {tagged}", 1)
    with pytest.raises(YamlSpecError) as info:
        parse(text, PATH)
    assert info.value.line == 1 and "not valid YAML for a test file" in info.value.message


def test_a_control_character_is_a_schema_error_at_its_line() -> None:
    text = _dump(VALID).replace("layers:", "layers:\x07", 1)
    line = next(n for n, row in enumerate(text.splitlines(), 1) if row.startswith("layers:"))
    with pytest.raises(YamlSpecError) as info:
        parse(text, PATH)
    assert info.value.line == line and "not valid YAML: unacceptable character #x0007" in info.value.message


# -- baseline files: the other YAML the plugin reads ------------------------------------------------


@FUZZ
@given(position=st.integers(0, 5000), insert=st.one_of(st.sampled_from(HOSTILE), st.text(max_size=5)),
       delete=st.integers(0, 3), document=st.one_of(st.none(), trees))
def test_a_baseline_file_gives_a_baseline_or_a_baseline_error(position: int, insert: str, delete: int,
                                                              document: Any) -> None:
    """A hand-edited, merge-conflicted or truncated baseline is a BaselineError naming the file, never a crash."""
    from pytest_tcav.checks.baseline_file import Baseline
    from pytest_tcav.errors import BaselineError

    text = _baseline_text() if document is None else _dump(document)
    position %= len(text) + 1
    try:
        Baseline.from_yaml(text[:position] + insert + text[position + delete:], name="fuzz", origin="b/fuzz.yaml")
    except BaselineError as exc:
        assert "b/fuzz.yaml" in str(exc)


@lru_cache(maxsize=1)
def _baseline_text() -> str:
    import torch

    from pytest_tcav import TCAV
    from pytest_tcav.checks.baseline_file import Baseline

    gen = torch.Generator().manual_seed(0)
    sets = [torch.rand(6, 4, generator=gen) + 0.2 * k for k in range(5)]
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 2))
    result = TCAV(model).test(sets[0], target=1, inputs=sets[1], layers=["1"], random_sets=sets[2:])
    text = Baseline.from_result(result, "fuzz").to_yaml()
    Baseline.from_yaml(text, name="fuzz", origin="b/fuzz.yaml")  # the unmutated file is valid
    return text
