"""Hand-made TCAV results for the tests of baselines and stability checks (no model runs)."""

from __future__ import annotations

from pytest_tcav.engine.results import LayerResult, TCAVResult


def layer_result(name: str, *, score: float, statistics: list[float], significant: bool = True) -> LayerResult:
    mean = sum(statistics) / len(statistics)
    return LayerResult(
        layer=name, score=score, magnitude=0.1, statistic=mean, null_mean=0.0, null_sd=0.05, t_statistic=3.0,
        p_value=0.001, p_value_rank=0.01, p_corrected=0.002, cav_accuracy=0.9, significant=significant,
        concept_scores=[score] * len(statistics), concept_statistics=statistics,
        cav_accuracies=[0.9] * len(statistics), null_statistics=[0.0] * len(statistics),
        null_scores=[0.5] * len(statistics),
    )


def tcav_result(*layers: LayerResult, model: str = "m" * 64) -> TCAVResult:
    return TCAVResult(concept="striped", target="zebra (0)", direction="either", alpha=0.05, correction="holm",
                      null_test="t", method="gradient", n_random=len(layers[0].concept_statistics),
                      n_concept_examples=30, n_inputs=20, seed=0, layers=list(layers), model_fingerprint=model,
                      concept_fingerprint="c" * 64)


STATS = [0.21, 0.25, 0.19, 0.23, 0.22]
