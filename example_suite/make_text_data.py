"""Generate the sentences of the example suite's text part.

Review-like sentences whose class is set by their adjective and by nothing
else, so the "ground truth" of what the sentiment head learns is known by
construction:

* a sentence is ``positive`` when its adjective is one of ``POSITIVE``, and
  ``negative`` when it is one of ``NEGATIVE``;
* every subject noun (``NOUNS``) and every sentence frame (``TEMPLATES``) is
  drawn with the same probability in both classes, so they carry no class
  information: the negative control.

Written here (one example per line, UTF-8):

* ``concepts/positive_adjectives.txt``, ``concepts/negative_adjectives.txt``:
  short phrases built on the adjectives of each class;
* ``concepts/reviewed_things.txt``: short phrases naming the reviewed things
  (the nouns of both classes): a concept the model should not use;
* ``concepts/random.txt``: the random pool text concepts are compared against:
  everyday sentences and phrases on other topics, of every length, with no
  sentiment;
* ``inputs/positive.txt``, ``inputs/negative.txt``: held-out reviews of each
  class (``train_sentiment.py`` never trains on them).

``train_sentiment.py`` imports :func:`review` and draws its training
sentences in memory with another seed. Run
``python example_suite/make_text_data.py`` (deterministic, instant).
"""

from __future__ import annotations

import argparse
import random
import re
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: Class names, index = label (``sentiment_model.CLASSES``).
CLASSES = ("negative", "positive")

POSITIVE = ("wonderful", "excellent", "delightful", "superb", "fantastic", "brilliant",
            "lovely", "charming", "marvelous", "outstanding", "splendid", "terrific")
NEGATIVE = ("terrible", "awful", "dreadful", "horrible", "boring", "disappointing",
            "dull", "mediocre", "bland", "miserable", "tedious", "lousy")
NOUNS = ("movie", "hotel", "meal", "book", "concert", "room", "show", "trip",
         "album", "restaurant", "museum", "play", "game", "tour", "course", "service")
TEMPLATES = (
    "The {noun} was {adj}.",
    "What a {adj} {noun}!",
    "I thought the {noun} was {adj}.",
    "Honestly, the {noun} felt {adj}.",
    "Our {noun} last week was {adj}.",
    "My friends found the {noun} {adj}.",
    "It was a {adj} {noun} overall.",
    "The {noun} turned out to be {adj}.",
    "Everyone agreed the {noun} was {adj}.",
    "We had a {adj} {noun} on Sunday.",
)

#: Short frames around a concept word (adjectives and nouns alike).
ADJECTIVE_FRAMES = ("{w}", "so {w}", "truly {w}", "really {w}", "simply {w}", "absolutely {w}")
NOUN_FRAMES = ("the {w}", "a {w}", "our {w}", "this {w}", "that {w}", "my {w}")

#: Random text: everyday statements and phrases about other things, without sentiment.
RANDOM_SUBJECTS = ("the train", "my neighbour", "the river", "a letter", "the kettle", "the bus",
                   "the clock", "a bicycle", "the library", "the garden", "the printer", "a farmer",
                   "the bridge", "the shop", "the cat", "a candle", "the map", "the window",
                   "the ferry", "a teacher", "the staircase", "the bakery", "an engineer", "the harbour")
RANDOM_PREDICATES = ("leaves at nine", "is on the second floor", "runs past the old mill",
                     "arrived on Tuesday", "stands near the station", "was painted blue last year",
                     "opens at eight", "is made of wood", "has three doors", "closes after lunch",
                     "is two miles away", "was moved to the corner", "needs a new battery",
                     "faces the north side", "comes every morning", "is next to the bank")
RANDOM_PHRASES = ("a cup of tea", "seven o'clock", "the second shelf", "north of the lake",
                  "a pair of boots", "the yellow door", "twenty minutes", "a box of nails",
                  "the morning post", "three green chairs", "a glass of water", "the last page",
                  "a map of the town", "two tickets", "the back garden", "an open window")


def _articles(text: str) -> str:
    """"a" before a vowel becomes "an": "an outstanding meal", "an album"."""
    return re.sub(r"\b([Aa]) (?=[aeiou])", r"\1n ", text)


def review(rng: random.Random, label: int) -> str:
    """One sentence of class ``label``: a frame, a noun, and an adjective of that class."""
    adjectives = POSITIVE if label == 1 else NEGATIVE
    sentence = rng.choice(TEMPLATES).format(noun=rng.choice(NOUNS), adj=rng.choice(adjectives))
    sentence = _articles(sentence)
    return sentence[0].upper() + sentence[1:]


def phrases(rng: random.Random, words: tuple[str, ...], frames: tuple[str, ...], count: int) -> list[str]:
    """``count`` distinct short phrases, each one word of ``words`` in one of ``frames``."""
    every = [_articles(frame.format(w=word)) for word in words for frame in frames]
    return rng.sample(every, count)


def random_text(rng: random.Random, count: int) -> list[str]:
    """``count`` distinct neutral lines: half statements, half short phrases, so length tells nothing."""
    statements = [f"{s[0].upper()}{s[1:]} {p}." for s in RANDOM_SUBJECTS for p in RANDOM_PREDICATES]
    lines = rng.sample(statements, count - count // 2)
    lines += rng.sample(RANDOM_PHRASES, min(count // 2, len(RANDOM_PHRASES)))
    while len(lines) < count:  # more phrases than RANDOM_PHRASES: pair two of them
        extra = f"{rng.choice(RANDOM_PHRASES)} and {rng.choice(RANDOM_PHRASES)}"
        if extra not in lines:
            lines.append(extra)
    rng.shuffle(lines)
    return lines


def held_out_reviews(seed: int, label: int, count: int) -> list[str]:
    """``count`` distinct reviews of one class, from a stream of their own."""
    rng = random.Random(f"inputs-{seed}-{label}")
    seen: dict[str, None] = {}
    while len(seen) < count:
        seen.setdefault(review(rng, label))
    return list(seen)


def write_lines(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="root of concepts/ and inputs/ (default: this folder)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-concept", type=int, default=30, help="phrases per concept")
    parser.add_argument("--n-random", type=int, default=120, help="lines of the random pool")
    parser.add_argument("--n-input", type=int, default=30, help="held-out reviews per class")
    args = parser.parse_args(argv)
    concepts, inputs = args.out / "concepts", args.out / "inputs"
    write_lines(concepts / "positive_adjectives.txt",
                phrases(random.Random(f"pos-{args.seed}"), POSITIVE, ADJECTIVE_FRAMES, args.n_concept))
    write_lines(concepts / "negative_adjectives.txt",
                phrases(random.Random(f"neg-{args.seed}"), NEGATIVE, ADJECTIVE_FRAMES, args.n_concept))
    write_lines(concepts / "reviewed_things.txt",
                phrases(random.Random(f"nouns-{args.seed}"), NOUNS, NOUN_FRAMES, args.n_concept))
    write_lines(concepts / "random.txt", random_text(random.Random(f"random-{args.seed}"), args.n_random))
    for label, name in enumerate(CLASSES):
        write_lines(inputs / f"{name}.txt", held_out_reviews(args.seed, label, args.n_input))
    print(f"wrote 4 concept files and {len(CLASSES)} input files under {args.out}")


if __name__ == "__main__":
    main()
