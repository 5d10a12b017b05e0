"""Session-wide fixtures: the small models with known ground truth, their data, and shared engines.

The models are trained once per session (seconds on a CPU) and each gets one
:class:`~pytest_tcav.TCAV` engine, so activations of the random sets and the
random-vs-random CAVs are computed once and reused by every test that asks
about the same model (the engine caches by content).
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from torch import nn

from pytest_tcav import TCAV
from tests.helpers import synthetic
from tests.helpers.synthetic import N_RANDOM, SET_SIZE


@dataclass(frozen=True)
class GroundTruthData:
    """Concept sets, random sets and inputs for the ground-truth tests (all generated, seeded)."""

    striped: torch.Tensor
    dotted: torch.Tensor
    patch: torch.Tensor
    random_sets: list[torch.Tensor]
    striped_inputs: torch.Tensor  # class 1 of the texture model
    patched_inputs: torch.Tensor  # class 1 of the shortcut model


@pytest.fixture(scope="session")
def texture_model() -> nn.Module:
    """Class 1 = striped, class 0 = dotted (tests/helpers/synthetic.py)."""
    return synthetic.texture_model()


@pytest.fixture(scope="session")
def shortcut_model() -> nn.Module:
    """Class 1 = noise carrying the planted patch, class 0 = plain noise."""
    return synthetic.shortcut_model()


@pytest.fixture(scope="session")
def ground_truth_data() -> GroundTruthData:
    gen = torch.Generator().manual_seed(2024)
    return GroundTruthData(
        striped=synthetic.stripes(SET_SIZE, gen),
        dotted=synthetic.dots(SET_SIZE, gen),
        patch=synthetic.patches(SET_SIZE, gen),
        random_sets=[synthetic.random_images(SET_SIZE, gen) for _ in range(N_RANDOM)],
        striped_inputs=synthetic.stripes(40, gen),
        patched_inputs=synthetic.patches(40, gen),
    )


@pytest.fixture(scope="session")
def texture_engine(texture_model: nn.Module) -> TCAV:
    return TCAV(texture_model, seed=0)


@pytest.fixture(scope="session")
def shortcut_engine(shortcut_model: nn.Module) -> TCAV:
    return TCAV(shortcut_model, seed=0)


@pytest.fixture(autouse=True)
def _no_github_job_summary(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the pytest runs inside these tests from appending tables to a real CI job's summary."""
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)


@pytest.fixture(autouse=True)
def _wide_terminal(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """pytest runs inside these tests (pytester) print the whole TCAV summary table, as in a wide terminal:
    the table fits the terminal's width, 80 columns without one.  Tests of the fitted table set COLUMNS."""
    if "pytester" in request.fixturenames:
        monkeypatch.setenv("COLUMNS", "300")
