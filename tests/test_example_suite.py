"""The example suite stays runnable as README says, without running its concept tests.

CI runs ``python -m pytest example_suite`` itself (see ``.ci/run``); these
checks are the cheap part: the suite is found with its own ``pytest.ini``,
imports and collects from the repository root, every test in it is a concept
test, and README's two commands are the ones CI runs.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SUITE = ROOT / "example_suite"

#: The suite's tests, as ``--collect-only`` lists them.
EXPECTED_TESTS = [
    "test_texture_makes_the_animal[zebra-striped]",
    "test_texture_makes_the_animal[leopard-dotted]",
    "test_texture_makes_the_animal[snake-zigzagged]",
    "test_watermark_does_not_make_a_zebra",
    "test_stripes_score",
    "test_retrained_model_does_not_use_the_watermark",
    "test_retraining_moved_zebra_onto_the_watermark",
    "test_zebra_relies_on_stripes_as_recorded",
    "test_adjectives_make_the_sentiment[positive-positive_adjectives]",
    "test_adjectives_make_the_sentiment[negative-negative_adjectives]",
    "test_the_reviewed_thing_does_not_make_a_review_positive",
    "test_positive_adjectives_score",
]
#: The declarative tests of tcav_zebra.yaml: (concept, expectation) in file order.
EXPECTED_YAML_ITEMS = [
    ("striped", "significant"),
    ("striped", "score"),
    ("zigzagged", "insignificant"),
    ("watermark", "insignificant"),
    ("watermark", "stable"),
]


@pytest.mark.slow  # over a second
def test_suite_collects_from_the_repository_root_with_its_own_ini() -> None:
    # One subprocess (about 3 s: conftest imports torch); "-m tcav" keeps only
    # concept tests, so seeing all of them also checks the automatic marker.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "example_suite", "--collect-only", "-m", "tcav", "-p", "no:cacheprovider"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert re.search(r"^rootdir: .*example_suite$", out, re.M), out
    assert re.search(r"^configfile: pytest\.ini$", out, re.M), out
    assert f"concepts={SUITE / 'concepts'}, inputs={SUITE / 'inputs'}, random_sets=10" in out
    assert re.findall(r"<Function (\S+)>", out) == EXPECTED_TESTS
    yaml_items, concept = [], None
    for kind, name in re.findall(r"<(TCAVYamlConcept|TCAVYamlItem) (\S+)>", out):
        if kind == "TCAVYamlConcept":
            concept = name
        else:
            yaml_items.append((concept, name))
    assert yaml_items == EXPECTED_YAML_ITEMS
    assert "deselected" not in out


def test_readme_commands_are_the_ones_ci_runs() -> None:
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"^(pip install .+?)\s*(?:#.*)?$", readme, re.M)[:2]
    assert commands == [
        'pip install -e ".[test]" && python -m pytest example_suite',
        'pip install -e ".[test]" && python -m pytest',
    ]
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r'^python -m pip install --quiet -e "\.\[test\]"$', ci, re.M)
    steps = re.findall(r"^python -m pytest.*$", ci, re.M)
    assert steps == [c.split(" && ", 1)[1] for c in commands]
