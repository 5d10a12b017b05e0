"""Examples, outputs and layers of any structure, on small hand-written models.

A tuple of tensors is ``model(*parts)``, a mapping ``model(**batch)``; every
part is batched, sampled, fingerprinted and checked.  Outputs: a tensor, a
mapping or dataclass with ``logits``, a tuple's first tensor, ``output=`` for
anything else, and a callable target gets the raw output.  Layers: a tuple of
one tensor and ``None``s is that tensor, with hooks that replace it rebuilding
the tuple; unknown names are all reported at once, with suggestions only
among layers that run.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from pytest_tcav import TCAV
from pytest_tcav.engine.examples import Concept, as_concept, sample_random_sets
from pytest_tcav.engine.fingerprints import fingerprint_tensor
from pytest_tcav.errors import ConceptDataError, ConfigurationError, LayerError, TargetError

N = 12


class TwoInputs(nn.Module):
    """``forward(x, mask)``: the mask zeroes features, so both parts matter."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Linear(6, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        return self.head(torch.relu(self.body(x * mask)) * scale)


class DictOut(TwoInputs):
    def forward(self, x, mask, scale=1.0):  # type: ignore[override]
        return {"hidden": x * mask, "logits": super().forward(x, mask, scale)}


@dataclasses.dataclass
class Out:
    score: torch.Tensor
    logits: torch.Tensor


class DataclassOut(TwoInputs):
    def forward(self, x, mask, scale=1.0):  # type: ignore[override]
        logits = super().forward(x, mask, scale)
        return Out(score=logits[:, :1], logits=logits)


class TupleOut(TwoInputs):
    def forward(self, x, mask, scale=1.0):  # type: ignore[override]
        return None, super().forward(x, mask, scale), "extra"


class PriceOut(TwoInputs):
    """No logits: a regression head under another name."""

    def forward(self, x, mask, scale=1.0):  # type: ignore[override]
        return {"price": super().forward(x, mask, scale)}


def data(seed: int, n: int = N) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(n, 6, generator=gen), (torch.rand(n, 6, generator=gen) > 0.3).float()


def sets(seed: int = 0):
    concept = data(seed)
    randoms = [data(seed + 10 + k) for k in range(4)]
    inputs = data(seed + 99, 8)
    return concept, randoms, inputs


# -- examples of any structure -----------------------------------------------------------------


def test_a_plain_tensor_keeps_its_fingerprint_and_stays_the_same_object():
    x = torch.rand(5, 3)
    c = Concept("x", x)
    assert c.examples is x and c.fingerprint == fingerprint_tensor(x)  # cache keys unchanged


def test_tuples_lists_and_mappings_become_structures_with_content_fingerprints():
    x, m = data(0)
    as_tuple = as_concept((x, m))
    as_list = as_concept([x, m])
    assert as_tuple.fingerprint == as_list.fingerprint and len(as_tuple) == N
    assert as_concept({"x": x, "mask": m}).fingerprint == as_concept({"mask": m, "x": x}).fingerprint
    assert as_concept({"x": x, "mask": m}).fingerprint != as_tuple.fingerprint
    changed = m.clone()
    changed[3, 0] = 1 - changed[3, 0]
    assert as_concept((x, changed)).fingerprint != as_tuple.fingerprint  # every part counts
    assert as_concept((x, changed)).example_digests != as_tuple.example_digests


def test_a_part_of_another_length_is_named():
    x, m = data(0)
    with pytest.raises(ConceptDataError, match=r"part 'attention_mask' has 11 examples .* part 'input_ids' has 12"):
        as_concept({"input_ids": x, "attention_mask": m[:11]})
    with pytest.raises(ConceptDataError, match=r"part 'b' is a list, not a tensor.*return_tensors='pt'"):
        as_concept({"a": x, "b": [1, 2]})  # type: ignore[dict-item]


def test_random_sets_sample_every_part_alike():
    x, m = data(0, 40)
    pool = as_concept({"x": x, "mask": m}, name="pool")
    drawn = sample_random_sets(pool, 3, 10, seed=1)
    for s in drawn:
        assert isinstance(s.examples, dict)
        rows = [int(torch.nonzero((x == row).all(1))[0]) for row in s.examples["x"]]
        assert torch.equal(s.examples["mask"], m[rows])


def test_datasets_and_loaders_give_every_part():
    x, m = data(0)
    assert as_concept(TensorDataset(x, m)).fingerprint == as_concept((x, m)).fingerprint  # no part is a "label"
    assert as_concept(DataLoader(TensorDataset(x, m), batch_size=5)).fingerprint == as_concept((x, m)).fingerprint
    loader = DataLoader([{"x": x[k], "mask": m[k]} for k in range(N)], batch_size=5)
    assert as_concept(loader).fingerprint == as_concept({"x": x, "mask": m}).fingerprint
    assert as_concept(TensorDataset(x)).fingerprint == as_concept(x).fingerprint


def test_a_tuple_input_model_runs_without_a_wrapper_and_every_part_reaches_it():
    concept, randoms, inputs = sets()
    engine = TCAV(TwoInputs())
    result = engine.test(concept, target=1, inputs=inputs, layers=["body", "head"], random_sets=randoms)
    assert result.n_inputs == 8 and len(result.layers) == 2
    # the mask matters: the same x with another mask is another set, with other activations
    other = engine.test((concept[0], torch.ones_like(concept[1])), target=1, inputs=inputs, layers=["body"],
                        random_sets=randoms)
    assert other.layers[0].concept_statistics != result.layers[0].concept_statistics


def test_a_mapping_input_model_runs_as_model_of_keywords():
    from pytest_tcav.engine.activations import concept_activations, target_gradients
    from pytest_tcav.engine.layers import resolve_layers

    concept, randoms, inputs = sets()

    def as_dict(p):
        return {"mask": p[1], "x": p[0]}

    result = TCAV(TwoInputs()).test(as_dict(concept), target=1, inputs=as_dict(inputs), layers=["body"],
                                    random_sets=[as_dict(r) for r in randoms])
    assert result.n_concept_examples == N
    model = TwoInputs()
    modules = resolve_layers(model, ["body"])
    assert torch.equal(concept_activations(model, modules, as_dict(concept))["body"],
                       concept_activations(model, modules, concept)["body"])
    assert torch.equal(target_gradients(model, modules, as_dict(inputs), 1)["body"],
                       target_gradients(model, modules, inputs, 1)["body"])


def test_sets_of_other_structures_are_refused_naming_both():
    concept, randoms, inputs = sets()
    with pytest.raises(ConceptDataError, match=r"'inputs' examples are .* but concept"):
        TCAV(TwoInputs()).test(concept, target=1, inputs=inputs[0], layers=["body"], random_sets=randoms)


def test_forward_kwargs_reach_every_call_and_enter_the_keys():
    concept, randoms, inputs = sets()
    plain = TCAV(TwoInputs()).test(concept, target=1, inputs=inputs, layers=["body", "head"], random_sets=randoms)
    engine = TCAV(TwoInputs(), forward_kwargs={"scale": -1.0})
    flipped = engine.test(concept, target=1, inputs=inputs, layers=["body", "head"], random_sets=randoms)
    # scale=-1 flips the head's input: the body's CAVs are the same, the gradients through the head flip
    assert flipped.layers[0].cav_accuracies == plain.layers[0].cav_accuracies
    assert flipped.layers[0].concept_statistics == [-v for v in plain.layers[0].concept_statistics]
    with pytest.raises(ConfigurationError, match="forward_kwargs must be a dict"):
        TCAV(TwoInputs(), forward_kwargs=[1])  # type: ignore[arg-type]


# -- outputs of any structure ------------------------------------------------------------------


@pytest.mark.parametrize("model_class", [DictOut, DataclassOut, TupleOut])
def test_structured_outputs_give_their_logits_or_first_tensor(model_class):
    concept, randoms, inputs = sets()
    expected = TCAV(TwoInputs()).test(concept, target=2, inputs=inputs, layers=["body"], random_sets=randoms)
    got = TCAV(model_class()).test(concept, target=2, inputs=inputs, layers=["body"], random_sets=randoms)
    assert got.layers[0].concept_statistics == expected.layers[0].concept_statistics


def test_output_picks_a_key_or_a_callable_and_a_callable_target_gets_the_raw_output():
    concept, randoms, inputs = sets()
    expected = TCAV(TwoInputs()).test(concept, target=2, inputs=inputs, layers=["body"], random_sets=randoms)
    by_key = TCAV(PriceOut(), output="price").test(concept, target=2, inputs=inputs, layers=["body"],
                                                   random_sets=randoms)
    by_callable = TCAV(PriceOut(), output=lambda out: out["price"]).test(
        concept, target=2, inputs=inputs, layers=["body"], random_sets=randoms)
    raw = TCAV(PriceOut()).test(concept, target=lambda out: out["price"][:, 2], inputs=inputs, layers=["body"],
                                random_sets=randoms)
    for result in (by_key, by_callable, raw):
        assert result.layers[0].concept_statistics == expected.layers[0].concept_statistics


def test_an_output_without_a_rule_says_how_to_pick():
    concept, randoms, inputs = sets()
    with pytest.raises(TargetError, match=r"dict with keys 'price'.*output=KEY"):
        TCAV(PriceOut()).test(concept, target=0, inputs=inputs, layers=["body"], random_sets=randoms)
    with pytest.raises(TargetError, match=r"output='cost' picks nothing .* keys 'price'"):
        TCAV(PriceOut(), output="cost").test(concept, target=0, inputs=inputs, layers=["body"], random_sets=randoms)
    with pytest.raises(ConfigurationError, match="give one of the two"):
        TCAV(PriceOut(), output="price").test(concept, target=lambda o: o["price"][:, 0], inputs=inputs,
                                              layers=["body"], random_sets=randoms)


# -- layers of any structure -------------------------------------------------------------------


class Attention(nn.Module):
    """nn.MultiheadAttention inside a classifier; the attention weights are not asked for."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Linear(4, 8)
        self.attention = nn.MultiheadAttention(8, 2, batch_first=True)
        self.head = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)
        out, _ = self.attention(h, h, h, need_weights=False)
        return self.head(out.mean(1))


def tokens(seed: int, n: int = N) -> torch.Tensor:
    return torch.rand(n, 5, 4, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("method", ["gradient", "integrated_gradients"])
def test_multihead_attention_output_is_its_one_tensor(method):
    model = Attention()
    result = TCAV(model, method=method).test(tokens(0), target=1, inputs=tokens(1, 8), layers=["attention"],
                                             random_sets=[tokens(10 + k) for k in range(3)])
    assert len(result.layers[0].concept_scores) == 3
    # the same numbers as the output projection's own output, which a hand-written wrapper would give
    acts = {}
    handle = model.attention.register_forward_hook(lambda m, a, o: acts.update(a=o[0]))
    with torch.no_grad():
        model(tokens(0))
    handle.remove()
    assert acts["a"].shape == (N, 5, 8)


def test_unknown_layers_are_all_listed_and_only_layers_that_run_are_suggested():
    model = Attention()
    with pytest.raises(LayerError) as info:
        TCAV(model).test(tokens(0), target=1, inputs=tokens(1, 8), layers=["atention", "attention.out_projj", "head"],
                         random_sets=[tokens(10 + k) for k in range(3)])
    message = str(info.value)
    assert "'atention'" in message and "'attention.out_projj'" in message and "2 of the layers" in message
    assert "'attention'" in message
    assert "'attention.out_proj'" not in message  # exists, but MultiheadAttention never calls it as a module


class Shared(nn.Module):
    """One block held under two attribute paths (a common alias in model code)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.encoder = nn.Sequential(nn.Linear(6, 8), nn.ReLU())
        self.backbone = self.encoder
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def test_a_module_under_two_paths_is_reachable_by_either_name():
    concept, randoms, inputs = sets()
    model = Shared()
    kwargs = dict(target=1, inputs=inputs[0], random_sets=[r[0] for r in randoms])
    first = TCAV(model).test(concept[0], layers=["encoder.0"], **kwargs)
    second = TCAV(model).test(concept[0], layers=["backbone.0"], **kwargs)
    both = TCAV(model).test(concept[0], layers=["encoder.1", "backbone.1"], **kwargs)
    assert first.layers[0].concept_statistics == second.layers[0].concept_statistics
    assert both.layers[0].concept_statistics == both.layers[1].concept_statistics


class KeywordBlock(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(6, 8)

    def forward(self, hidden_states: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        return self.linear(hidden_states) * scale


class KeywordCaller(nn.Module):
    """Calls its block by keyword, as Hugging Face models do."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.block = KeywordBlock()
        self.head = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.block(hidden_states=x * 2, scale=1.0)))


@pytest.mark.parametrize("method", ["gradient", "integrated_gradients"])
def test_layer_point_input_reads_a_keyword_argument(method):
    concept, randoms, inputs = sets()
    model = KeywordCaller()
    kwargs = dict(target=1, inputs=inputs[0], random_sets=[r[0] for r in randoms])
    by_input = TCAV(model, layer_point="input", method=method).test(concept[0], layers=["block"], **kwargs)
    assert len(by_input.layers[0].concept_scores) == 4
    # the input of block is 2x: its activations are the model's own inputs, doubled
    from pytest_tcav.engine.activations import concept_activations
    from pytest_tcav.engine.layers import resolve_layers

    acts = concept_activations(model, resolve_layers(model, ["block"], "input"), concept[0], point="input")
    assert torch.equal(acts["block"], concept[0] * 2)


def test_hashes_computed_together_are_the_ones_computed_one_by_one():
    from pytest_tcav.engine.examples import Concept, warm_hashes

    gen = torch.Generator().manual_seed(3)
    made = [torch.rand(4, 3, 8, 8, generator=gen) for _ in range(3)]
    tokens = {"input_ids": torch.randint(0, 9, (4, 5), generator=gen), "attention_mask": torch.ones(4, 5)}
    warmed = [Concept(f"s{k}", x) for k, x in enumerate(made)] + [Concept("t", tokens)]
    lazy = [Concept(f"s{k}", x) for k, x in enumerate(made)] + [Concept("t", tokens)]
    warm_hashes(warmed)
    for a, b in zip(warmed, lazy):
        assert "fingerprint" in a.__dict__ and "example_digests" in a.__dict__
        assert a.fingerprint == b.fingerprint and a.example_digests == b.example_digests
