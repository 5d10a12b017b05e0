"""``pytest-tcav score --against``: relative TCAV from the command line."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from pytest_tcav import cli

TINY = ["--model", "tiny_model:EdgeNet", "--concepts", "data/concepts", "--inputs", "data/inputs",
        "--target", "1", "--layers", "relu", "--random-sets", "5"]


def run_main(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


@pytest.mark.slow  # over a second
def test_score_against_prints_relative_tables_and_reports_them(in_project: Path) -> None:
    code, out, err = run_main("score", *TINY, "--concept", "horizontal,vertical", "--against", "noisy",
                              "--json", "out/relative.json", "--html", "out/relative.html")
    assert code == 0, err
    tables = out.strip().split("\n\n")
    assert tables[0].startswith("concept 'horizontal', target 1, direction positive")
    assert "against 'noisy' (5 seeded CAVs vs 5 relabelings)" in tables[0]
    report = json.loads((in_project / "out" / "relative.json").read_text())
    assert [c["against"] for c in report["checks"]] == [["noisy"], ["noisy"]]
    assert "horizontal vs noisy for target 1" in (in_project / "out" / "relative.html").read_text()


def test_score_against_a_union_skips_the_compared_concepts_in_the_library(in_project: Path) -> None:
    code, out, err = run_main("score", *TINY, "--against", "vertical", "--against", "noisy")
    assert code == 0, err
    names = [line.split("'")[1] for line in out.splitlines() if line.startswith("concept '")]
    assert names == ["horizontal"]  # the library's other concepts are the ones compared against
    assert "against 'vertical' + 'noisy'" in out
    relu = next(line for line in out.splitlines() if line.startswith("relu"))
    assert relu.split()[1] == "1.00"  # every input rises towards horizontal rather than vertical or noise


def test_a_concept_cannot_be_scored_against_itself(in_project: Path) -> None:
    code, _out, err = run_main("score", *TINY, "--concept", "horizontal", "--against", "horizontal")
    assert code == 2
    assert "--against: horizontal is also a --concept" in err


def test_layer_lists_split_at_commas_outside_a_layer_selector() -> None:
    from pytest_tcav.cli.score import comma_list

    assert comma_list(["a,b", "rnn[0],rnn[1][0]", "enc['x,y'], c"]) == ["a", "b", "rnn[0]", "rnn[1][0]",
                                                                         "enc['x,y']", "c"]
