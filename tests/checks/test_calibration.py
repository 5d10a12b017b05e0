"""Calibration of a random library: the arithmetic, the stored file, and the rate on the synthetic models.

A healthy library (random sets as drawn) measures a false-positive rate near
alpha; a library built to be unlucky (the random sets with the lowest null
statistic out of many, so that any random concept looks high against them)
measures a rate far above it.  Both share one trained model and one set of
spare random images, and use few pseudo-concepts: the assertions are binomial
bounds that hold at that size.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from scipy import stats

from pytest_tcav import TCAV, TCAVConfig
from pytest_tcav.checks import calibration as calib
from pytest_tcav.checks import pseudo_concepts as session_calib
from pytest_tcav.engine.spec import CheckSpec, settle
from pytest_tcav.session.session import TCAVSession
from tests.helpers import synthetic
from tests.helpers.synthetic import N_RANDOM, SET_SIZE
from tests.helpers.tiny_model import save_images

LAYER = "conv3"
K = 30
ALPHA = 0.05


# -- the arithmetic ---------------------------------------------------------------------------


@pytest.mark.parametrize(("count", "total"), [(0, 40), (3, 40), (8, 40), (40, 40), (5, 100)])
def test_interval_is_the_exact_binomial_interval(count: int, total: int) -> None:
    expected = stats.binomtest(count, total).proportion_ci(confidence_level=0.95, method="exact")
    low, high = calib.clopper_pearson(count, total)
    assert low == pytest.approx(expected.low, abs=1e-9) and high == pytest.approx(expected.high, abs=1e-9)


def test_pseudo_concepts_needed_is_the_first_k_under_the_bound() -> None:
    k = calib.pseudo_concepts_needed(0.05, 0.10)
    assert k is not None
    assert calib.clopper_pearson(round(0.05 * k), k)[1] < 0.10
    assert calib.clopper_pearson(round(0.05 * (k - 1)), k - 1)[1] >= 0.10
    assert calib.pseudo_concepts_needed(0.12, 0.10) is None  # more pseudo-concepts never lower a rate


def test_the_implication_keeps_interval_and_rate_apart() -> None:
    above = calib.layer_rates({"conv": [0.01] * 10 + [0.5] * 30}, 0.05)[0]
    assert above.reading == "above alpha"
    text = calib.implication(above, 10)
    assert "would only narrow the interval" in text and "more random sets" in text
    near = calib.layer_rates({"conv": [0.01] * 2 + [0.5] * 38}, 0.05)[0]
    assert near.reading == "consistent with alpha"
    assert "pseudo-concepts (now 40) would bring" in calib.implication(near, 10)


def _calibration(**changes: object) -> calib.Calibration:
    values: dict = {"target": "1", "direction": "positive", "alpha": 0.05, "settings": {"seed": 0},
                    "library": "L", "model": "M", "inputs": "I", "pseudo_concepts": 40,
                    "layers": calib.layer_rates({"a": [0.5] * 40, "b": [0.01] * 12 + [0.5] * 28}, 0.05)}
    values.update(changes)
    return calib.Calibration(**values)  # type: ignore[arg-type]


def test_stored_calibration_is_found_and_judged(tmp_path: Path) -> None:
    saved = _calibration()
    calib.save(tmp_path, saved)
    found = calib.load(tmp_path, "1", "positive", 0.05, {"seed": 0})
    assert found == saved
    assert calib.load(tmp_path, "1", "negative", 0.05, {"seed": 0}) is None

    def state(found: calib.Calibration | None, layers: list[str], **fps: str) -> calib.Status:
        return calib.status(found, **{"library": "L", "model": "M", "inputs": "I", **fps}, layers=layers,
                            target="1", direction="positive")

    assert state(found, ["a"]).state == "ok"
    assert state(None, ["a"]).state == "missing"
    assert state(found, ["c"]).state == "missing"
    stale = state(found, ["a"], model="M2")
    assert stale.state == "stale" and "the model changed" in stale.message
    assert "the random sets changed" in state(found, ["a"], library="L2").message
    above = state(found, ["a", "b"])
    assert above.state == "above" and "b 30.0%" in above.message


# -- on the synthetic model -------------------------------------------------------------------


def _write_library(root: Path, random_sets: list[torch.Tensor], spare: torch.Tensor,
                   inputs: torch.Tensor) -> Path:
    for k, images in enumerate(random_sets):
        save_images(images, root / "concepts" / f"random_{k}")
    save_images(spare, root / "concepts" / "random")  # a pool the explicit sets leave unused
    save_images(inputs, root / "inputs" / "1")
    return root


@pytest.fixture(scope="module")
def libraries(texture_model: torch.nn.Module, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A healthy and an unlucky library of the texture model, sharing inputs and spare random images."""
    gen = torch.Generator().manual_seed(11)
    candidates = [synthetic.random_images(SET_SIZE, gen) for _ in range(31)]
    inputs = synthetic.stripes(40, gen)
    spare = synthetic.random_images(K * SET_SIZE, gen)
    null = TCAV(texture_model, seed=0).test(candidates[0], target=1, inputs=inputs, layers=[LAYER],
                                            random_sets=candidates[1:]).layers[0].null_statistics
    lowest = sorted(range(len(null)), key=lambda k: null[k])[:N_RANDOM]
    root = tmp_path_factory.mktemp("calibration")
    return {"healthy": _write_library(root / "healthy", candidates[1:1 + N_RANDOM], spare, inputs),
            "unlucky": _write_library(root / "unlucky", [candidates[1 + k] for k in lowest], spare, inputs)}


def _session(root: Path) -> TCAVSession:
    return TCAVSession(TCAVConfig(concepts=root / "concepts", inputs=root / "inputs", random_sets=N_RANDOM,
                                  alpha=ALPHA, cache_dir=root / "cache", cache="off"))


def _calibrate(session: TCAVSession, model: torch.nn.Module) -> calib.Calibration:
    spec = settle(CheckSpec(concept="pseudo", target=1, layers=[LAYER]), session.config)
    return session_calib.calibrate(session, model, spec, concept_size=SET_SIZE, count=K)[0]


@pytest.fixture(scope="module")
def healthy(libraries: dict[str, Path], texture_model: torch.nn.Module) -> tuple[TCAVSession, calib.Calibration]:
    session = _session(libraries["healthy"])
    return session, _calibrate(session, texture_model)


@pytest.mark.slow  # trains a model
def test_a_healthy_library_measures_a_rate_near_alpha(healthy: tuple[TCAVSession, calib.Calibration]) -> None:
    session, result = healthy
    rate = result.layers[0]
    print(f"healthy library: {rate.significant}/{rate.total} on {LAYER} (CI {rate.low:.3f}-{rate.high:.3f})")
    assert rate.total == K and rate.significant <= stats.binom.ppf(0.999, K, ALPHA)
    assert rate.reading != "above alpha"
    # the null was trained once; each pseudo-concept cost one concept pass: its activations and N CAVs
    assert session.store.computed["cav"] == K * N_RANDOM + N_RANDOM * (N_RANDOM - 1) // 2
    assert session.store.computed["activations"] == K + N_RANDOM


@pytest.mark.slow  # trains a model
def test_an_unlucky_library_measures_a_rate_far_above_alpha(
        libraries: dict[str, Path], texture_model: torch.nn.Module) -> None:
    result = _calibrate(_session(libraries["unlucky"]), texture_model)
    rate = result.layers[0]
    print(f"unlucky library: {rate.significant}/{rate.total} on {LAYER} (CI {rate.low:.3f}-{rate.high:.3f})")
    assert rate.reading == "above alpha"


@pytest.mark.slow  # trains a model
def test_a_changed_model_or_random_set_makes_the_calibration_stale(
        healthy: tuple[TCAVSession, calib.Calibration], texture_model: torch.nn.Module,
        libraries: dict[str, Path], tmp_path: Path) -> None:
    session, result = healthy
    calib.save(session.config.cache_dir, result)  # type: ignore[arg-type]

    def state(session: TCAVSession, model: torch.nn.Module) -> calib.Status | None:
        from pytest_tcav.engine.fingerprints import model_fingerprint

        spec = settle(CheckSpec(concept="pseudo", target=1, layers=[LAYER], direction="positive"), session.config)
        return session_calib.check_status(session, spec, model_fingerprint=model_fingerprint(model),
                                          concept_size=SET_SIZE)

    now = state(session, texture_model)
    assert now is not None and now.state == "ok"
    changed = copy.deepcopy(texture_model)
    with torch.no_grad():
        next(changed.parameters()).add_(1e-3)
    moved = state(session, changed)
    assert moved is not None and moved.state == "stale" and "the model changed" in moved.message

    import shutil

    copied = tmp_path / "lib"
    shutil.copytree(libraries["healthy"] / "concepts", copied / "concepts")
    shutil.copytree(libraries["healthy"] / "inputs", copied / "inputs")
    shutil.copytree(session.config.cache_dir, copied / "cache")  # type: ignore[arg-type]
    first = sorted((copied / "concepts" / "random_3").iterdir())[0]
    gen = torch.Generator().manual_seed(99)
    save_images(synthetic.random_images(1, gen), copied / "tmp")
    shutil.move(str(next((copied / "tmp").iterdir())), first)  # one image of one random set replaced
    edited = state(_session(copied), texture_model)
    assert edited is not None and edited.state == "stale" and "the random sets changed" in edited.message


@pytest.mark.slow  # trains a model
def test_the_pseudo_null_keeps_an_unlucky_librarys_checks_at_alpha(
        libraries: dict[str, Path], texture_model: torch.nn.Module) -> None:
    """Fresh random sets (not the null's pseudo-concepts) tested on the unlucky library: the random null
    finds many of them significant, the pseudo-concepts' null about alpha; the striped concept the model
    relies on stays significant under both."""
    session = _session(libraries["unlucky"])
    gen = torch.Generator().manual_seed(2024)
    fresh = [synthetic.random_images(SET_SIZE, gen) for _ in range(40)]
    inputs = session.config.inputs / "1"  # type: ignore[operator]
    hits = {"random": 0, "pseudo": 0}
    for concept in fresh:
        for null in hits:
            result = session.score(texture_model, concept, target=1, layers=[LAYER], inputs=inputs, null=null)
            hits[null] += result.layers[0].significant
    striped = session.score(texture_model, synthetic.stripes(SET_SIZE, gen), target=1, layers=[LAYER],
                            inputs=inputs, null="pseudo")
    print(f"unlucky library, 40 fresh random sets on {LAYER}: {hits}")
    assert hits["random"] >= 8  # the library's luck: far above alpha (2 of 40)
    assert hits["pseudo"] <= stats.binom.ppf(0.99, 40, ALPHA)
    assert striped.layers[0].significant and striped.null == "pseudo"
    assert striped.null_source is not None and striped.null_source.startswith(f"K = {session.config.pseudo_concepts}")
