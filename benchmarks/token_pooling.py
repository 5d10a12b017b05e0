"""CAV accuracy of a neutral phrase set against random sentences, with pooling "flatten" and "mean".

The measurement behind docs/models-and-inputs.md#pooling: short phrases of
ordinary words (words that occur equally in both classes) against random
sentences of the same words, on small BERT classifiers built from a config
(tests/helpers/token_models.py; no download).  Every set is padded to one
length, as a tokenizer called with ``padding="max_length"`` does, so that
``"flatten"`` can compare them at all.  A CAV that separates the two sets can
only have learned their length; the accuracy says how much of it each pooling
lets through.  Run: ``python benchmarks/token_pooling.py`` (about a minute on 2 CPU cores).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pytest_tcav import TCAV  # noqa: E402
from tests.helpers import token_models as tm  # noqa: E402

LENGTH = 24
LAYERS = ["bert.embeddings", "bert.encoder.layer.0", "bert.encoder.layer.1"]


def main() -> None:
    neutral = tm.encode(tm.sentences(30, 2, 4, 13), LENGTH)
    sets = {
        "random sentences (6-16 words)": tm.encode(tm.sentences(300, 6, 16, 14), LENGTH),
        "random phrases (2-4 words)": tm.encode(tm.sentences(300, 2, 4, 16), LENGTH),
    }
    inputs = tm.encode(tm.sentences(40, 3, 8, 15), LENGTH)
    models = {"random weights, hidden 64": tm.bert(seed=1, hidden=64), "trained (planted words), hidden 16":
              tm.trained_bert()}
    print("model | random sets | pooling | " + " | ".join(LAYERS))
    for model_name, model in models.items():
        for pool_name, pool in sets.items():
            for pooling in ("flatten", "mean"):
                result = TCAV(model, pooling=pooling).test(neutral, target=1, inputs=inputs, layers=LAYERS,
                                                          random_sets=10, random_pool=pool)
                accs = " | ".join(f"{r.cav_accuracy:.2f} (p {r.p_corrected:.2g})" for r in result.layers)
                print(f"{model_name} | {pool_name} | {pooling} | {accs}")


if __name__ == "__main__":
    main()
