"""Train the sentiment head of the example suite's text model and write ``weights/sentiment_head.pt``.

The encoder (the packaged all-MiniLM-L6-v2) stays frozen; only the linear head
on its mean-pooled last layer is trained, on review sentences drawn in memory
from ``make_text_data.review`` (class = the adjective's class; nouns and frames
occur equally in both classes). The held-out inputs in ``inputs/*.txt`` are
never trained on. Deterministic: one thread, a fixed seed, full-batch training
of a convex problem, so the same head on every run.

Prints the checks the example suite relies on: accuracy on the held-out inputs
and on fresh sentences, and how often a prediction changes when only the noun
is swapped (it should not) or only the adjective's class (it should).

Run ``python example_suite/train_sentiment.py`` (about 30 s on 2 CPU cores, most
of it loading and running the encoder).
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from make_text_data import NEGATIVE, NOUNS, POSITIVE, review  # noqa: E402
from sentiment_model import HEAD_WEIGHTS, SentimentClassifier, load_model, tokenize  # noqa: E402


def read_lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def training_set(n_per_class: int, seed: int, exclude: set[str]) -> tuple[list[str], torch.Tensor]:
    rng = random.Random(f"train-{seed}")
    texts: list[str] = []
    labels: list[int] = []
    for _ in range(n_per_class):
        for label in (0, 1):
            sentence = review(rng, label)
            while sentence in exclude:
                sentence = review(rng, label)
            texts.append(sentence)
            labels.append(label)
    return texts, torch.tensor(labels)


@torch.no_grad()
def embed(model: SentimentClassifier, texts: list[str], batch_size: int = 64) -> torch.Tensor:
    parts = []
    for start in range(0, len(texts), batch_size):
        batch = tokenize(texts[start:start + batch_size])
        parts.append(model.embed(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids")))
    return torch.cat(parts)


def train_head(model: SentimentClassifier, features: torch.Tensor, labels: torch.Tensor, *,
               seed: int, steps: int, weight_decay: float) -> None:
    torch.manual_seed(seed)
    model.head.reset_parameters()
    optimiser = torch.optim.Adam(model.head.parameters(), lr=0.05, weight_decay=weight_decay)
    for _ in range(steps):
        optimiser.zero_grad()
        loss = torch.nn.functional.cross_entropy(model.head(features), labels)
        loss.backward()
        optimiser.step()
    print(f"final training loss {loss.item():.4f}")


@torch.no_grad()
def predict(model: SentimentClassifier, texts: list[str]) -> torch.Tensor:
    return model.head(embed(model, texts)).argmax(dim=1)


def swapped(texts: list[str], words: tuple[str, ...], replacements: tuple[str, ...], seed: int) -> list[str]:
    """Each sentence with its word from ``words`` replaced by a different one from ``replacements``."""
    rng = random.Random(seed)
    out = []
    for text in texts:
        tokens = text.rstrip(".!").split()
        for i, token in enumerate(tokens):
            if token.lower() in words:
                tokens[i] = rng.choice([w for w in replacements if w != token.lower()])
                break
        out.append(" ".join(tokens) + text[len(text.rstrip(".!")):])
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-per-class", type=int, default=300, help="training sentences per class")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--weight-decay", type=float, default=1e-3)
    parser.add_argument("--out", type=Path, default=HEAD_WEIGHTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)

    inputs = {name: read_lines(HERE / "inputs" / f"{name}.txt") for name in ("negative", "positive")}
    held_out = set(inputs["negative"]) | set(inputs["positive"])
    model = load_model(head=None)
    texts, labels = training_set(args.n_per_class, args.seed, held_out)
    train_head(model, embed(model, texts), labels, seed=args.seed, steps=args.steps,
               weight_decay=args.weight_decay)

    for label, name in enumerate(("negative", "positive")):
        accuracy = (predict(model, inputs[name]) == label).float().mean().item()
        print(f"accuracy on inputs/{name}.txt ({len(inputs[name])}): {accuracy:.1%}")
    fresh, fresh_labels = training_set(200, args.seed + 1000, held_out | set(texts))
    print(f"accuracy on {len(fresh)} fresh sentences: {(predict(model, fresh) == fresh_labels).float().mean():.1%}")
    base = predict(model, fresh)
    nouns = predict(model, swapped(fresh, NOUNS, NOUNS, args.seed))
    print(f"noun swapped: {(nouns != base).float().mean():.1%} of predictions changed")
    flipped = [swapped([t], POSITIVE if y else NEGATIVE, NEGATIVE if y else POSITIVE, args.seed)[0]
               for t, y in zip(fresh, fresh_labels.tolist())]
    print(f"adjective swapped to the other class: {(predict(model, flipped) != base).float().mean():.1%} "
          "of predictions changed")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().clone().contiguous() for k, v in model.head.state_dict().items()}
    tmp = args.out.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
