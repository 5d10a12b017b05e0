"""The conformance matrix: one small TCAV test on each architecture of ``tests/helpers/conformance.py``.

Each row builds its model with random weights (nothing is downloaded), runs one TCAV test at the two
layers the row names, and must give a verdict for each; significance is not asserted, the data being
random.  ``docs/models.md`` is rendered from the same rows, and the last test checks it is up to date.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from pytest_tcav import TCAV, TCAVResult
from tests.helpers import conformance as cf

pytestmark = pytest.mark.slow  # about a hundred models built and run

ROOT = Path(__file__).resolve().parents[2]
ROWS = cf.rows()


def _param(row: cf.Row):
    marks = [pytest.mark.xfail(strict=True, reason=row.xfail)] if row.xfail else []
    return pytest.param(row, id=row.id, marks=marks)


@pytest.mark.parametrize("row", [_param(r) for r in ROWS])
def test_a_tcav_test_runs_on_the_two_layers(row: cf.Row):
    if row.needs:
        pytest.importorskip(row.needs)
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # libraries' notes about random initialisation
        model = row.build().eval()
    engine = TCAV(model, pooling=row.pooling, layer_call=row.layer_call, seed=0, **row.engine)
    result = engine.test(row.make(cf.CONCEPT_SIZE, 1), target=row.target, inputs=row.make(cf.INPUTS, 2),
                         layers=list(row.layers),
                         random_sets=[row.make(cf.RANDOM_SIZE, 10 + k) for k in range(cf.RANDOM_SETS)])
    assert isinstance(result, TCAVResult)
    assert [r.layer for r in result.layers] == list(row.layers)
    for layer in result.layers:
        assert isinstance(layer.verdict, str) and layer.verdict, layer


def test_the_rows_are_unique_and_name_two_layers():
    assert len({r.id for r in ROWS}) == len(ROWS)
    assert all(len(r.layers) == 2 and r.layers[0] != r.layers[1] for r in ROWS)


def test_a_row_expected_to_fail_says_why_on_the_page():
    row = cf.Row("torch.nn", "LSTM", cf.TransformerClassifier, ("a", "b"), cf.token_tensor(),
                 xfail="the selector 'rnn[0]' (not implemented)")
    assert _param(row).marks[0].kwargs == {"strict": True, "reason": row.xfail}
    assert "| expected to fail: the selector 'rnn[0]' (not implemented) |" in cf.render([row], [])


def test_docs_models_md_is_rendered_from_the_rows():
    page = (ROOT / "docs" / "models.md").read_text(encoding="utf-8")
    stale = "docs/models.md is stale: python -m tests.helpers.conformance > docs/models.md"
    assert page == cf.render(ROWS, cf.torchvision_selection()[1]), stale
