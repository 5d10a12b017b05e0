"""next_token(): a language model's next-token logit at each example's last real position, padding or not."""

from __future__ import annotations

import dataclasses
import pickle
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

import pytest_tcav
from pytest_tcav import CAV, TCAV, CAVTrainer, MemoryStore, NextToken, next_token
from pytest_tcav.engine.activations import target_gradients
from pytest_tcav.engine.fingerprints import target_key, target_shared
from pytest_tcav.engine.outputs import target_values
from pytest_tcav.errors import ConfigurationError, TargetError
from pytest_tcav.storage.disk import DiskStore

# -- the target on its own (no model) ------------------------------------------------------------------------

RIGHT = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
LEFT = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])


def _logits() -> torch.Tensor:
    return torch.arange(2 * 4 * 5, dtype=torch.float32).reshape(2, 4, 5)  # value 20 * example + 5 * position + token


def test_reads_the_last_real_position_under_either_padding() -> None:
    logits = _logits()
    assert next_token(3)(logits, RIGHT).tolist() == [8.0, 38.0]  # example 0: position 1 (its last real token)
    assert next_token(3)(logits, LEFT).tolist() == [18.0, 38.0]  # example 0: position 3
    assert next_token(3)(logits).tolist() == [18.0, 38.0]  # no mask: the last position


def test_reads_logits_from_a_mapping_an_attribute_or_a_tuple() -> None:
    logits = _logits()
    for output in ({"logits": logits, "past": None}, SimpleNamespace(logits=logits), (logits, None)):
        raw = dict(output) if isinstance(output, dict) else output
        assert next_token(1)(raw, RIGHT).tolist() == [6.0, 36.0]


def test_a_model_output_dataclass_with_logits() -> None:
    @dataclasses.dataclass
    class Out:
        logits: torch.Tensor

    assert next_token(0)(Out(_logits()), RIGHT).tolist() == [5.0, 35.0]


def test_log_prob_is_the_log_softmax_over_the_vocabulary() -> None:
    logits = torch.randn(2, 4, 5, generator=torch.Generator().manual_seed(0))
    got = next_token(2, log_prob=True)(logits, RIGHT)
    expected = torch.log_softmax(logits[[0, 1], [1, 3]], dim=1)[:, 2]
    assert torch.allclose(got, expected)
    assert bool((got < 0).all())


def test_two_dimensional_logits_are_one_position_per_example() -> None:
    logits = torch.arange(10.0).reshape(2, 5)
    assert next_token(4)(logits, RIGHT).tolist() == [4.0, 9.0]


def test_errors_name_the_problem() -> None:
    with pytest.raises(TargetError, match="out of range for a vocabulary of 5"):
        next_token(5)(_logits(), RIGHT)
    with pytest.raises(TargetError, match=r"attention_mask has shape \(2, 3\)"):
        next_token(1)(_logits(), RIGHT[:, :3])
    with pytest.raises(TargetError, match="example\\(s\\) 0 of the batch have no real token"):
        next_token(1)(_logits(), torch.tensor([[0, 0, 0, 0], [1, 1, 1, 1]]))
    with pytest.raises(TargetError, match="reads the model's logits"):
        next_token(1)({"price": [1.0]}, None)
    with pytest.raises(TargetError, match=r"\(batch, positions, vocabulary\)"):
        next_token(1)(torch.zeros(2, 3, 4, 5), None)
    for bad in (-1, True, 1.5, "7"):
        with pytest.raises(ConfigurationError, match="token id"):
            next_token(bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="log_prob"):
        next_token(1, log_prob=1)  # type: ignore[arg-type]


def test_target_values_gives_the_mask_to_next_token_only() -> None:
    logits = _logits()
    assert target_values(logits, next_token(3), n=2, mask=RIGHT).tolist() == [8.0, 38.0]
    seen = []
    plain = target_values(logits, lambda out: seen.append(out) or out[:, -1, 3], n=2, mask=RIGHT)
    assert plain.tolist() == [18.0, 38.0] and len(seen) == 1  # a callable still gets the output alone
    assert target_values(logits[:, -1], 3, mask=RIGHT).tolist() == [18.0, 38.0]


def test_keys_are_content_and_other_targets_keep_theirs() -> None:
    assert target_key(next_token(7)) == "next_token:7:logit"
    assert target_key(next_token(7, log_prob=True)) == "next_token:7:log_prob"
    assert target_key(pickle.loads(pickle.dumps(next_token(7)))) == target_key(next_token(7))
    assert next_token(7) == NextToken(7) and hash(next_token(7)) == hash(NextToken(7))
    assert target_shared(next_token(7))
    # unchanged: a class index by value, a callable by identity (and kept in memory)
    assert target_key(3) == "class:3" and target_shared(3)

    def pick(out: torch.Tensor) -> torch.Tensor:
        return out[:, 0]

    assert target_key(pick) == f"callable:{__name__}.{pick.__qualname__}@{id(pick)}"
    assert not target_shared(pick)


def test_names_in_results_and_exports() -> None:
    assert repr(next_token(7)) == "next_token(7)" == next_token(7).name
    assert repr(next_token(7, log_prob=True)) == "next_token(7, log_prob=True)"
    assert "next_token" in pytest_tcav.__all__ and "NextToken" in pytest_tcav.__all__


@pytest.mark.slow  # a fresh interpreter imports torch
def test_the_key_is_the_same_in_another_process() -> None:
    code = ("from pytest_tcav import next_token; from pytest_tcav.engine.fingerprints import target_key; "
            "print(target_key(next_token(7, log_prob=True)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == target_key(next_token(7, log_prob=True))


# -- a tiny GPT-2 (transformers, random weights) ---------------------------------------------------------------

PROMPT = "the cat"
OTHERS = ["a big dog ran over the old road", "the small red bird flew"]


@pytest.fixture(scope="module")
def lm():  # type: ignore[no-untyped-def]
    pytest.importorskip("transformers")
    from tests.helpers.decoder_models import gpt2

    return gpt2(seed=0)


def _tokenizers():  # type: ignore[no-untyped-def]
    from tests.helpers.decoder_models import WordTokenizer

    return {"right": WordTokenizer("right"), "left": WordTokenizer("left", position_ids=True)}


@pytest.mark.slow  # transformers
def test_a_prompt_scores_the_same_alone_and_in_a_batch_padded_either_side(lm) -> None:  # type: ignore[no-untyped-def]
    from tests.helpers.decoder_models import VOCAB, WordTokenizer

    target = next_token(VOCAB["sat"])
    with torch.no_grad():
        alone_batch = WordTokenizer()([PROMPT])
        alone = target(lm(**alone_batch), alone_batch["attention_mask"])[0]
        for side, tokenize in _tokenizers().items():
            batch = tokenize([PROMPT, *OTHERS])
            value = target_values(lm(**batch), target, n=3, mask=batch["attention_mask"])[0]
            assert torch.allclose(value, alone, rtol=0, atol=1e-6), side
        # the bug next_token fixes: position -1 of a right-padded batch is a pad for the short prompt
        right = _tokenizers()["right"]([PROMPT, *OTHERS])
        naive = lm(**right).logits[0, -1, VOCAB["sat"]]
        assert abs(float(naive - alone)) > 1e-3
        # and left padding without position_ids shifts GPT-2's absolute positions
        shifted = WordTokenizer("left")([PROMPT, *OTHERS])
        assert abs(float(target(lm(**shifted), shifted["attention_mask"])[0] - alone)) > 1e-3


@pytest.mark.slow  # transformers
def test_gradients_of_a_prompt_do_not_depend_on_the_padding(lm) -> None:  # type: ignore[no-untyped-def]
    from tests.helpers.decoder_models import VOCAB, WordTokenizer

    modules = {name: lm.get_submodule(name) for name in ("transformer.h.0", "transformer.h.1")}
    for log_prob in (False, True):
        target = next_token(VOCAB["sat"], log_prob=log_prob)
        alone = target_gradients(lm, modules, WordTokenizer()([PROMPT]), target, pooling="last")
        for side, tokenize in _tokenizers().items():
            grads = target_gradients(lm, modules, tokenize([PROMPT, *OTHERS]), target, pooling="last")
            for name in modules:
                assert torch.allclose(grads[name][0], alone[name][0], rtol=1e-4, atol=1e-6), (side, name)


CONCEPT = ["the red house", "a blue river", "the green tree", "a red road", "the old blue house",
           "a new green park", "the big red tree", "a small blue bird"]


class WholeSetMeanDifference(CAVTrainer):
    """The two sets' mean difference over all their examples: a CAV that owes nothing to a seed.

    A CAV's seed comes from its sets' contents (``pair_seed``), and a set padded on the left is not
    the same content as the same set padded on the right; with the seeded default trainer the two
    would differ by the seeds' noise, which is not what these tests measure.
    """

    name = "whole_set_mean_difference"

    def train(self, positive: torch.Tensor, negative: torch.Tensor, seed: int) -> CAV:
        pos, neg = positive.double().mean(0), negative.double().mean(0)
        weights = pos - neg
        return CAV(weights.float(), -float(weights @ (pos + neg)) / 2.0, 1.0)


def _concept_test(model, tokenize, inputs, store=None):  # type: ignore[no-untyped-def]
    from tests.helpers.decoder_models import VOCAB, phrases

    engine = TCAV(model, pooling="last", tokenizer=tokenize, store=store, trainer=WholeSetMeanDifference())
    randoms = [phrases(8, 2, 6, seed=100 + k) for k in range(4)]
    return engine.test(CONCEPT, target=next_token(VOCAB["sat"]), inputs=inputs,
                       layers=["transformer.h.0", "transformer.h.1"], random_sets=randoms)


STATISTICS = ("score", "statistic", "magnitude", "null_mean", "null_sd", "p_value")


def _same_results(a, b) -> None:  # type: ignore[no-untyped-def]
    for x, y in zip(a.layers, b.layers):
        assert x.concept_scores == y.concept_scores, x.layer  # sign counts: exactly equal
        for field in STATISTICS:
            assert getattr(x, field) == pytest.approx(getattr(y, field), rel=1e-4, abs=1e-6), (x.layer, field)


@pytest.mark.slow  # transformers
def test_a_concept_test_gives_the_same_statistics_left_or_right_padded(lm) -> None:  # type: ignore[no-untyped-def]
    from tests.helpers.decoder_models import phrases

    inputs = [PROMPT, *phrases(11, 1, 7, seed=7)]
    tokenizers = _tokenizers()
    right = _concept_test(lm, tokenizers["right"], inputs)
    left = _concept_test(lm, tokenizers["left"], inputs)
    assert right.target == left.target == "next_token(6)"
    _same_results(right, left)


@pytest.mark.slow  # transformers
def test_the_default_engine_gives_the_same_statistics_for_inputs_padded_left_or_right(lm) -> None:  # type: ignore[no-untyped-def]
    """The seeded default trainer: the concept and random sets as they are, the prompts' batch padded either way.

    The CAVs are the same bits (same sets); only the prompts' gradients are read at other positions, so
    the statistics agree to float rounding and the sign counts exactly.
    """
    from tests.helpers.decoder_models import VOCAB, WordTokenizer, phrases

    right_tok = WordTokenizer("right", position_ids=True)  # the same parts as the left-padded batch
    concept = right_tok(CONCEPT)
    randoms = [right_tok(phrases(8, 2, 6, seed=100 + k)) for k in range(4)]
    prompts = [PROMPT, *phrases(11, 1, 7, seed=7)]
    results = [
        TCAV(lm, pooling="last").test(concept, target=next_token(VOCAB["sat"]), inputs=tokenize(prompts),
                                      layers=["transformer.h.0", "transformer.h.1"], random_sets=randoms)
        for tokenize in (right_tok, _tokenizers()["left"])
    ]
    _same_results(*results)


@pytest.mark.slow  # transformers
def test_a_single_prompt_gives_the_same_statistics_padded_or_not(lm) -> None:  # type: ignore[no-untyped-def]
    from tests.helpers.decoder_models import WordTokenizer

    alone = _concept_test(lm, WordTokenizer(), [PROMPT])
    for tokenize in (WordTokenizer("right", width=9), WordTokenizer("left", position_ids=True, width=9)):
        _same_results(alone, _concept_test(lm, tokenize, [PROMPT]))


@pytest.mark.slow  # transformers
def test_next_token_gradients_are_cached_on_disk(lm, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.helpers.decoder_models import phrases

    inputs = phrases(6, 1, 6, seed=3)
    tokenize = _tokenizers()["right"]
    first = DiskStore(tmp_path)
    _concept_test(lm, tokenize, inputs, store=MemoryStore(backend=first))
    first.flush()
    assert first.stats.writes["gradients"] == 2  # one entry per layer
    second = DiskStore(tmp_path)  # a new run: another store, another (equal) target object
    _concept_test(lm, tokenize, inputs, store=MemoryStore(backend=second))
    assert second.stats.hits["gradients"] == 2 and not second.stats.misses["gradients"]


@pytest.mark.slow  # transformers
def test_rotary_positions_need_no_position_ids() -> None:
    pytest.importorskip("transformers")
    from tests.helpers.decoder_models import VOCAB, WordTokenizer, llama

    model, target = llama(seed=0), next_token(VOCAB["sat"])
    with torch.no_grad():
        alone_batch = WordTokenizer()([PROMPT])
        alone = target(model(**alone_batch), alone_batch["attention_mask"])[0]
        for tokenize in (WordTokenizer("right"), WordTokenizer("left"), WordTokenizer("left", position_ids=True)):
            batch = tokenize([PROMPT, *OTHERS])
            value = target(model(**batch), batch["attention_mask"])[0]
            assert torch.allclose(value, alone, rtol=0, atol=1e-6), tokenize.padding_side


@pytest.mark.slow  # transformers, a subprocess
def test_the_docs_example_runs_as_written(tmp_path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("transformers")
    from tests.test_docs import ROOT, code_blocks

    text = (ROOT / "docs" / "models-and-inputs.md").read_text(encoding="utf-8")
    section = text.split("## Decoder-only language models", 1)[1].split("\n## ", 1)[0]
    (example,) = [b for b in code_blocks(section) if b.language == "python" and "GPT2Config(" in b.text]
    script = tmp_path / "example.py"
    script.write_text(example.text, encoding="utf-8")
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "transformer.h.0" in result.stdout and "transformer.h.1" in result.stdout, result.stdout
