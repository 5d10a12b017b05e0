"""A user's pytest project with a Hugging Face BERT, ``.txt`` concept folders and ``tcav_tokenizer``.

The model is a small ``BertForSequenceClassification`` trained (seeded, in
seconds) so that class 1 means "one of the planted words occurs": the planted
words must come out significant at its encoder layers with ``pooling="mean"``
and ordinary words, which occur equally in both classes and which the small model
represents alike, inconclusive (neither claim shown), with no wrapper around the
model: it takes the tokenizer's mapping and returns a ``ModelOutput``.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.helpers import token_models as tm

pytestmark = pytest.mark.slow  # every test here runs pytest

pytest.importorskip("transformers")

WORDS = '''
import token_models as tm


def tokenize(texts):
    """Words "w3", "w17" ... are token ids; [CLS] and [SEP] around them, padded on the right."""
    return tm.encode([[int(word[1:]) for word in text.split()] for text in texts])
'''

CONFTEST = '''
import pytest
import token_models as tm


@pytest.fixture(scope="session")
def model():
    return tm.trained_bert()
'''

TESTS = '''
import pytest

from pytest_tcav import ConceptTestFailure, assert_concept_insignificant, assert_concept_significant

LAYERS = ["bert.encoder.layer.0", "bert.encoder.layer.1"]


def test_the_planted_words_make_class_1(model):
    result = assert_concept_significant(model, "planted", target="planted", layers=LAYERS)
    assert result.n_concept_examples == 20 and result.n_inputs == 30


def test_ordinary_words_are_not_shown_to_matter(model):
    # The model represents ordinary words alike (trained on the planted ones alone): its layers cannot
    # tell these from random text, so neither claim can be shown there (docs/assertions.md).
    with pytest.raises(ConceptTestFailure, match="cannot tell the concept from random"):
        assert_concept_insignificant(model, "ordinary", target="planted", layers=LAYERS)
    with pytest.raises(ConceptTestFailure):
        assert_concept_significant(model, "ordinary", target="planted", layers=LAYERS)
'''


def _write(path: Path, sentences: list[list[int]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(" ".join(f"w{i}" for i in s) for s in sentences) + "\n", encoding="utf-8")


def test_a_bert_project_with_txt_folders_and_tcav_tokenizer(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(token_models=Path(tm.__file__).read_text(), words=WORDS)
    pytester.makeconftest(CONFTEST)
    pytester.makeini(textwrap.dedent("""
        [pytest]
        pythonpath = .
        tcav_concepts = concepts
        tcav_inputs = inputs
        tcav_tokenizer = words:tokenize
        tcav_pooling = mean
        tcav_random_sets = 10
        tcav_classes =
            planted=1
    """))
    root = pytester.path
    # folders of .txt files: one example per line, the files of a folder together
    planted = tm.with_planted(tm.sentences(20, 2, 4, 600), 601)
    _write(root / "concepts" / "planted" / "a.txt", planted[:10])
    _write(root / "concepts" / "planted" / "b.txt", planted[10:])
    # ten particular ordinary words: they occur equally in both classes, and CAVs can tell them from random text
    _write(root / "concepts" / "ordinary" / "ordinary.txt", tm.sentences(20, 2, 4, 700, words=tm.ORDINARY[:10]))
    for k in range(10):  # random text of the concepts' length (docs/models-and-inputs.md, pooling)
        _write(root / "concepts" / f"random_{k}" / "random.txt", tm.sentences(20, 2, 4, 400 + k))
    _write(root / "inputs" / "planted" / "inputs.txt", tm.sentences(30, 3, 8, 500))
    pytester.makepyfile(test_concepts=TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    assert result.ret == 0, result.stdout.str()
    result.assert_outcomes(passed=2)
    assert "3 concept check(s): 1 passed, 2 caught by their tests" in result.stdout.str()  # the two expected failures
