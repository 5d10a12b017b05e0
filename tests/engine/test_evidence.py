"""Evidence per example (engine/evidence.py): input shares, suspect examples, the concept's direction."""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from pytest_tcav.engine.examples import Concept, load_image_folder, sample_random_sets
from pytest_tcav.engine.results import SKETCH_DIM, LayerResult, TCAVResult, concept_cosine
from pytest_tcav.engine.tcav import TCAV
from pytest_tcav.engine.text_examples import text_labels


def _small_test(seed: int = 0) -> tuple[TCAVResult, Concept]:
    gen = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))
    torch.manual_seed(seed)
    model.apply(lambda m: m.reset_parameters() if hasattr(m, "reset_parameters") else None)
    bright = torch.rand(20, 3, 8, 8, generator=gen) * 0.5 + 0.5
    concept = Concept("bright", bright, ids=tuple(f"bright/{k}.png" for k in range(20)))
    randoms = [Concept(f"random_{j}", torch.rand(20, 3, 8, 8, generator=gen)) for j in range(4)]
    inputs = torch.rand(13, 3, 8, 8, generator=gen)
    result = TCAV(model).test(concept, target=1, inputs=inputs, layers=["1", "3"], random_sets=randoms)
    return result, concept


def test_input_shares_average_to_the_score() -> None:
    result, _ = _small_test()
    for r in result.layers:
        n_cavs, n_inputs = len(r.concept_scores), len(r.input_shares)
        assert n_inputs == result.n_inputs == len(r.input_cosines)
        # exact in counts: the positive (input, CAV) products counted per input and per CAV are the same integers
        by_input = sum(Fraction(s).limit_denominator(n_cavs) * n_cavs for s in r.input_shares)
        by_cav = sum(Fraction(s).limit_denominator(n_inputs) * n_inputs for s in r.concept_scores)
        assert by_input == by_cav
        # the means are one rational number rounded in two orders of summation: equal to a few ulps
        assert abs(float(np.mean(r.input_shares)) - r.score) <= 1e-12
        assert abs(float(np.mean(r.input_cosines)) - r.statistic) <= 1e-12


def test_ids_name_the_examples_and_stay_out_of_the_fingerprint() -> None:
    result, concept = _small_test()
    assert result.examples is not None
    assert result.examples.concept == list(concept.ids or ())
    assert result.examples.inputs == [f"#{k}" for k in range(13)]
    assert result.examples.random_sets == [f"random_{j}" for j in range(4)]
    plain = Concept("bright", concept.examples)
    assert plain.fingerprint == concept.fingerprint
    assert result.concept_fingerprint == plain.fingerprint
    for r in result.layers:
        for s in r.suspects:
            ids = result.examples.concept if s["kind"] == "concept" else result.examples.random[s["set_index"] - 1]
            assert ids[s["index"]] == s["id"]


def test_round_trip_keeps_the_evidence() -> None:
    result, _ = _small_test()
    again = TCAVResult.from_dict(result.to_dict())
    assert again == result


def test_image_folder_and_random_pool_ids(tmp_path: Path) -> None:
    from PIL import Image

    folder = tmp_path / "lib" / "striped"
    folder.mkdir(parents=True)
    for k in range(6):
        Image.new("RGB", (4, 4), (40 * k, 0, 0)).save(folder / f"{k:02d}.png")
    assert load_image_folder(folder).ids == tuple(f"{k:02d}.png" for k in range(6))
    loaded = load_image_folder(folder, id_root=tmp_path / "lib")
    assert loaded.ids == tuple(f"striped/{k:02d}.png" for k in range(6))
    drawn = sample_random_sets(loaded, 2, 3, seed=0)
    for s in drawn:
        assert all(i.startswith("striped/") for i in s.ids or ())
    pool = Concept("pool", torch.rand(6, 2))
    assert all(i.startswith("pool#") for s in sample_random_sets(pool, 2, 3, 0) for i in s.ids or ())


def test_text_ids_are_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "happy.txt").write_text("so great\n\n  a lovely day \n")
    ids, texts = text_labels(tmp_path / "happy.txt")
    assert ids == ("happy.txt:1", "happy.txt:3")
    assert texts == ("so great", "a lovely day")
    assert text_labels(["a", "b"]) == (None, ("a", "b"))


def _layer(direction: list[float], width: int) -> LayerResult:
    nan = math.nan
    return LayerResult("l", nan, nan, nan, nan, nan, nan, nan, nan, nan, nan, False, cav_direction=direction,
                       cav_features=width)


def test_concept_cosine_small_and_sketched() -> None:
    from pytest_tcav.engine.cav import CAV
    from pytest_tcav.engine.evidence import cav_direction

    gen = torch.Generator().manual_seed(0)
    for width in (64, 50_000):
        a = torch.randn(width, generator=gen)
        b = 0.6 * a + 0.8 * torch.randn(width, generator=gen)
        true = float(torch.nn.functional.cosine_similarity(a, b, dim=0))
        da, wa = cav_direction([CAV(a, 0.0, 1.0)])
        db, wb = cav_direction([CAV(b, 0.0, 1.0)])
        assert len(da) == min(width, SKETCH_DIM) and wa == wb == width
        got = concept_cosine(_layer(da, wa), _layer(db, wb))
        assert got is not None
        assert abs(got - true) < (1e-6 if width <= SKETCH_DIM else 0.1)
    assert concept_cosine(_layer([1.0], 1), _layer([], 0)) is None


@pytest.mark.slow
@pytest.mark.parametrize("modality", ["image", "text"])
def test_planted_suspects_are_found(modality: str) -> None:
    from benchmarks import suspects as bench
    from pytest_tcav.engine import evidence
    from tests.helpers import synthetic, text_model

    if modality == "image":
        data, layer = bench.image_data(0, synthetic.texture_model()), "conv3"
    else:
        data, layer = bench.text_data(0, text_model.WordBagNet()), "pooled"
    tally = bench.Tally()
    bench.tally(data, bench.measure(data)[layer], None, None, tally)
    assert tally.flagged_impostors >= 4 and tally.flagged_planted >= 5
    assert 30 * (tally.false_concept + tally.false_random) / (tally.clean_concept + tally.clean_random) <= 2
    assert evidence.CONCEPT_THRESHOLD <= evidence.RANDOM_THRESHOLD
