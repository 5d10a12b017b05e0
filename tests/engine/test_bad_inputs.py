"""Bad input fails early and clearly, and the user's objects come back exactly as they were.

Each test feeds the engine one kind of bad input and checks the error type
and the words that name the culprit and say what to do.  The messages are the
ones docs/troubleshooting.md quotes; a change to one should change both.
Folders are written to ``tmp_path`` per test (a few 6x6 images), models are a
few-parameter CNN, so the whole file runs in seconds.
"""

from __future__ import annotations

import math
import random
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from pytest_tcav import (
    TCAV,
    Concept,
    ConceptDataError,
    ConceptTestFailure,
    ConfigurationError,
    InsufficientDataError,
    LayerError,
    NonFiniteError,
    TargetError,
    TCAVDataWarning,
    TCAVSession,
    assert_concept_insignificant,
    assert_concept_significant,
    load_image_folder,
)
from tests.helpers.checks import current

SIZE = 6


class Net(nn.Module):
    """conv -> batch norm -> relu -> dropout -> pooled linear head: every mode-dependent module TCAV meets."""

    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.relu = nn.ReLU()
        self.drop = nn.Dropout(0.5)
        self.head = nn.Linear(4, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(self.relu(self.bn(self.conv(x)))).mean((2, 3)))


def make_net() -> Net:
    torch.manual_seed(0)
    net = Net()
    with torch.no_grad():  # non-trivial running statistics, so train-mode use would visibly change them
        net.bn.running_mean.uniform_(-0.1, 0.1)
        net.bn.running_var.uniform_(0.5, 1.5)
    return net.eval()


def images(n: int, seed: int, shift: float = 0.0) -> torch.Tensor:
    return (torch.rand(n, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed)) + shift).clamp(0, 1)


@pytest.fixture
def data() -> dict[str, Any]:
    return {"concept": images(8, 1, 0.3), "randoms": [images(8, 10 + k) for k in range(3)], "inputs": images(6, 2)}


def run(model: nn.Module, data: dict[str, Any], **overrides: Any) -> Any:
    args = {"target": 1, "inputs": data["inputs"], "layers": ["conv", "relu"], "random_sets": data["randoms"]}
    args.update(overrides)
    engine_args = args.pop("engine", {})
    return TCAV(model, **engine_args).test(args.pop("concept", data["concept"]), **args)


def save(folder: Path, arrays: list[np.ndarray], names: list[str] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for index, array in enumerate(arrays):
        Image.fromarray(array).save(folder / (names[index] if names else f"{index:02d}.png"))
    return folder


def rgb(n: int, seed: int = 0, size: tuple[int, int] = (SIZE, SIZE)) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (*size, 3), dtype=np.uint8) for _ in range(n)]


# -- folders -------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["concept", "input", "random"])
def test_missing_folder_names_its_role_and_path(tmp_path: Path, data: dict[str, Any], role: str) -> None:
    missing = str(tmp_path / "nowhere")
    where = {"concept": {"concept": missing}, "input": {"inputs": missing},
             "random": {"random_sets": [missing, *data["randoms"][1:]]}}[role]
    with pytest.raises(ConceptDataError, match=f"{role} folder '.*nowhere' does not exist; check the path"):
        run(make_net(), data, **where)


def test_empty_folder_and_a_file_instead_of_a_folder(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    with pytest.raises(ConceptDataError, match="contains no image files .*add images or point to the right folder"):
        load_image_folder(tmp_path / "empty")
    (tmp_path / "file.png").write_bytes(b"")
    with pytest.raises(ConceptDataError, match="is not a folder; give a folder of images"):
        load_image_folder(tmp_path / "file.png")


def _folder_with_bad_files(tmp_path: Path) -> Path:
    folder = save(tmp_path / "striped", rgb(3))
    (folder / "text.png").write_text("not an image")
    good = (folder / "00.png").read_bytes()
    (folder / "truncated.png").write_bytes(good[: len(good) // 2])
    (folder / "labels.csv").write_text("ignored: not an image suffix")
    (folder / "._00.png").write_bytes(b"macOS resource fork: hidden, ignored")
    return folder


def test_unreadable_files_are_skipped_with_a_data_warning_naming_them(tmp_path: Path) -> None:
    folder = _folder_with_bad_files(tmp_path)
    with pytest.warns(TCAVDataWarning) as record:
        concept = load_image_folder(folder)
    assert len(concept) == 3
    (message,) = [str(w.message) for w in record]
    assert "skipped 2 unreadable file(s) in concept folder" in message
    assert "text.png (UnidentifiedImageError)" in message and "truncated.png (OSError)" in message
    assert "labels.csv" not in message and "._00.png" not in message  # not images: not even reported
    assert "tcav_on_bad_image = error" in message


def test_unreadable_files_fail_when_asked_to(tmp_path: Path) -> None:
    folder = _folder_with_bad_files(tmp_path)
    with pytest.raises(ConceptDataError, match=r"cannot read image '.*text\.png' \(UnidentifiedImageError"):
        load_image_folder(folder, on_bad_file="error")
    with pytest.raises(ConfigurationError, match="on_bad_file must be one of"):
        load_image_folder(folder, on_bad_file="ignore")


def test_a_folder_of_only_unreadable_files_fails_listing_them(tmp_path: Path) -> None:
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(b"\xff\xd8\xff garbage")
    with pytest.warns(TCAVDataWarning), pytest.raises(ConceptDataError, match=r"no readable image .*a\.jpg"):
        load_image_folder(folder)


def test_mixed_sizes_without_a_transform_name_a_file_of_each_size(tmp_path: Path) -> None:
    folder = save(tmp_path / "mixed", rgb(2) + rgb(1, size=(SIZE + 1, SIZE)), ["a.png", "b.png", "c.png"])
    with pytest.raises(ConceptDataError, match=r"a\.png is \(3, 6, 6\), c\.png is \(3, 7, 6\).*tcav_transform"):
        load_image_folder(folder)


def test_mixed_modes_are_converted_by_the_default_transform(tmp_path: Path) -> None:
    folder = tmp_path / "modes"
    folder.mkdir()
    base = rgb(1)[0]
    Image.fromarray(base).save(folder / "rgb.png")
    Image.fromarray(base).convert("L").save(folder / "grey.png")
    Image.fromarray(base).convert("RGBA").save(folder / "rgba.png")
    Image.fromarray(base).convert("P").save(folder / "palette.png")
    concept = load_image_folder(folder)
    assert concept.examples.shape == (4, 3, SIZE, SIZE) and concept.examples.dtype == torch.float32


def test_mixed_modes_through_a_transform_that_keeps_channels_fail(tmp_path: Path) -> None:
    folder = tmp_path / "modes"
    folder.mkdir()
    Image.fromarray(rgb(1)[0]).save(folder / "a_rgb.png")
    Image.fromarray(rgb(1)[0]).convert("L").save(folder / "b_grey.png")

    def to_tensor(image: Image.Image) -> torch.Tensor:
        array = np.asarray(image, dtype=np.float32) / 255
        return torch.from_numpy(array if array.ndim == 3 else array[..., None]).permute(2, 0, 1)

    with pytest.raises(ConceptDataError, match=r"a_rgb\.png is \(3, 6, 6\), b_grey\.png is \(1, 6, 6\)"):
        load_image_folder(folder, to_tensor)


def test_a_failing_transform_is_an_error_naming_the_file_not_a_skipped_image(tmp_path: Path) -> None:
    folder = save(tmp_path / "ok", rgb(2))

    def resize(image: Image.Image) -> torch.Tensor:
        raise ValueError("size must be positive")

    with pytest.raises(ConceptDataError, match=r"the transform .*resize failed on '.*00\.png': ValueError: size"):
        load_image_folder(folder, resize)


def test_a_transform_returning_no_tensor_or_the_wrong_shape(tmp_path: Path, data: dict[str, Any]) -> None:
    folder = save(tmp_path / "ok", rgb(8))
    with pytest.raises(ConceptDataError, match=r"the transform returned ndarray for '.*00\.png', expected a tensor"):
        load_image_folder(folder, lambda image: np.asarray(image))
    chw_forgotten = load_image_folder(folder, lambda image: torch.from_numpy(np.asarray(image, np.float32) / 255))
    with pytest.raises(ConceptDataError, match=r"'random\[0\]' examples have shape \(3, 6, 6\) but concept 'ok' "
                                               r"examples have shape \(6, 6, 3\)"):
        run(make_net(), data, concept=chw_forgotten)


# -- tensors -------------------------------------------------------------------------------------


def test_uint8_images_are_diagnosed(data: dict[str, Any]) -> None:
    as_bytes = {"concept": (data["concept"] * 255).to(torch.uint8), "inputs": (data["inputs"] * 255).to(torch.uint8),
                "randoms": [(r * 255).to(torch.uint8) for r in data["randoms"]]}
    with pytest.raises(ConceptDataError, match=r"the model failed on 'inputs' \(6 examples of shape \(3, 6, 6\), "
                                               r"torch.uint8\).*images.float\(\) / 255"):
        run(make_net(), as_bytes)
    with pytest.raises(ConceptDataError, match=r"'inputs' examples are torch.uint8 but concept 'tensor' examples "
                                               "are torch.float32"):
        run(make_net(), data, inputs=as_bytes["inputs"])


def test_float64_examples_for_a_float32_model_are_diagnosed(data: dict[str, Any]) -> None:
    doubled = {"concept": data["concept"].double(), "inputs": data["inputs"].double(),
               "randoms": [r.double() for r in data["randoms"]]}
    with pytest.raises(ConceptDataError, match=r"parameters being torch.float32 .*x.to\(torch.float32\)"):
        run(make_net(), doubled)
    assert run(make_net().double(), doubled).layers  # a float64 model takes them


def test_a_single_image_is_not_a_set(data: dict[str, Any]) -> None:
    with pytest.raises(ConceptDataError, match=r"'inputs' examples have shape \(6, 6\) .*stack single images"):
        run(make_net(), data, inputs=data["inputs"][0])


def test_unbatched_examples_that_the_model_would_silently_accept_are_caught(data: dict[str, Any]) -> None:
    """Three 6x6 'examples' make one unbatched 3-channel image: conv runs, and rows would mix."""
    squeezed = {"concept": data["concept"][:, 0], "inputs": data["inputs"][:, 0],
                "randoms": [r[:, 0] for r in data["randoms"]]}
    with pytest.raises(ConceptDataError, match=r"layer 'conv' gave an activation of shape \(4, 6, 6\) for a batch "
                                               r"of 3 examples.*first dimension is the batch"):
        run(make_net(), squeezed, engine={"batch_size": 3})


@pytest.mark.skipif(sys.version_info < (3, 11), reason="exception notes need Python 3.11")
def test_other_model_failures_keep_their_type_and_gain_a_note(data: dict[str, Any]) -> None:
    two_channels = {"concept": data["concept"][:, :2], "inputs": data["inputs"][:, :2],
                    "randoms": [r[:, :2] for r in data["randoms"]]}
    with pytest.raises(RuntimeError, match="expected input.* to have 3 channels") as info:
        run(make_net(), two_channels)
    assert info.value.__notes__ == [
        "pytest-tcav: raised while running the model on 'inputs' (6 examples of shape (2, 6, 6), torch.float32); "
        "if it is about shapes or dtypes, check that every set matches the model's input"
    ]


def test_non_finite_examples_are_named(data: dict[str, Any]) -> None:
    inputs = data["inputs"].clone()
    inputs[[1, 4], 0, 0, 0] = float("nan")
    inputs[5, 2, 3, 3] = float("inf")
    with pytest.raises(ConceptDataError, match=r"'inputs' example\(s\) 1, 4, 5 of 6 contain NaN or infinity"):
        run(make_net(), data, inputs=inputs)


def test_non_finite_gradients_name_the_set_layer_and_examples(data: dict[str, Any]) -> None:
    class Sqrt(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(3 * SIZE * SIZE, 4)
            self.head = nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(torch.sqrt(self.lin(x.flatten(1)).abs() * (x.flatten(1)[:, :1] > 0.5)))

    inputs = data["inputs"].clone()
    inputs[:, 0, 0, 0] = torch.tensor([0.9, 0.1, 0.9, 0.9, 0.1, 0.9])  # sqrt(0) has an infinite slope
    torch.manual_seed(0)
    with pytest.raises(NonFiniteError, match=r"'inputs': target gradients at layer 'lin' contain NaN or infinity "
                                             r"\(example\(s\) 1, 4 of 6\)"):
        run(Sqrt(), data, inputs=inputs, layers=["lin"])


# -- targets and layers (unit-level messages are in test_activations.py and test_layers.py) --------


def test_target_errors_reach_the_user_through_the_engine(data: dict[str, Any]) -> None:
    with pytest.raises(TargetError, match=r"target 3 is out of range for a model with 3 outputs \(valid: 0..2\)"):
        run(make_net(), data, target=3)
    with pytest.raises(TargetError, match=r"one scalar per example, shape \(6,\); it returned \(6, 1\)"):
        run(make_net(), data, target=lambda out: out[:, :1])


def test_layer_errors_reach_the_user_through_the_engine(data: dict[str, Any]) -> None:
    with pytest.raises(LayerError, match="model Net has no layer 'rleu'. Did you mean 'relu'"):
        run(make_net(), data, layers=["rleu"])

    class Unused(Net):
        def __init__(self) -> None:
            super().__init__()
            self.spare = nn.Conv2d(3, 4, 1)

    with pytest.raises(LayerError, match=r"\['spare'\] were never reached .*pick layers that forward\(\) runs"):
        run(Unused(), data, layers=["conv", "spare"])


class Recurrent(nn.Module):
    """An LSTM (output (out, (h, c))) inside a module, and a head."""

    def __init__(self, wrap: bool = False) -> None:
        super().__init__()
        self.encoder = nn.Sequential()
        self.encoder.add_module("lstm", nn.LSTM(4, 5, batch_first=True))
        self.head = nn.Linear(5, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _state = self.encoder.lstm(x)
        return self.head(out[:, -1])


def _sequences(seed: int, n: int = 8) -> torch.Tensor:
    return torch.rand(n, 5, 4, generator=torch.Generator().manual_seed(seed))


def test_a_tuple_output_fails_saying_what_it_is_and_the_parts_to_select() -> None:
    torch.manual_seed(0)
    with pytest.raises(LayerError, match=r"layer 'encoder.lstm' output is a tuple of \(Tensor, tuple\), not a tensor"
                                         r".*name the part to study: encoder.lstm\[0\]: \(6, 5, 5\), "
                                         r"encoder.lstm\[1\]\[0\]: \(1, 6, 5\), encoder.lstm\[1\]\[1\]: \(1, 6, 5\)$"):
        TCAV(Recurrent()).test(_sequences(0), target=1, inputs=_sequences(1, 6), layers=["encoder.lstm"],
                               random_sets=[_sequences(2 + k) for k in range(3)])


def test_a_dict_output_fails_naming_its_keys_and_the_submodules_to_pick() -> None:
    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj = nn.Linear(4, 4)
            self.gate = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"hidden": self.proj(x), "gate": self.gate(x).sigmoid()}

    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.block = Block()
            self.head = nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = self.block(x)
            return self.head(out["hidden"] * out["gate"])

    gen = torch.Generator().manual_seed(0)
    sets = [torch.rand(8, 4, generator=gen) for _ in range(5)]
    with pytest.raises(LayerError, match=r"layer 'block' output is a dict with keys 'hidden', 'gate', not a tensor"
                                         r".*pick one of its submodules \('block.proj', 'block.gate'\)"):
        TCAV(Model()).test(sets[0], target=1, inputs=sets[1], layers=["block"], random_sets=sets[2:])


@pytest.mark.slow  # over a second
def test_a_one_tensor_tuple_output_is_used_as_its_tensor(data: dict[str, Any]) -> None:
    class Boxed(nn.Module):
        def __init__(self, conv: nn.Module) -> None:
            super().__init__()
            self.conv = conv

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor]:
            return (self.conv(x),)

    class Model(nn.Module):
        def __init__(self, net: Net) -> None:
            super().__init__()
            self.net = net
            self.boxed = Boxed(net.conv)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            n = self.net
            return n.head(n.relu(n.bn(self.boxed(x)[0])).mean((2, 3)))

    net = make_net()
    plain = run(net, data, layers=["conv"])
    for method in ("gradient", "integrated_gradients"):
        boxed = run(Model(net).eval(), data, layers=["boxed"], engine={"method": method})
        reference = plain if method == "gradient" else run(net, data, layers=["conv"], engine={"method": method})
        assert boxed.layers[0].concept_scores == reference.layers[0].concept_scores


# -- sets ----------------------------------------------------------------------------------------


def test_a_random_set_identical_to_the_concept_in_another_order_is_an_error(data: dict[str, Any]) -> None:
    shuffled = data["concept"][torch.randperm(8, generator=torch.Generator().manual_seed(0))]
    with pytest.raises(ConceptDataError, match=r"'tensor' and 'random\[0\]' hold identical examples "
                                               r"\(in another order or repeated\); a CAV between identical sets"):
        run(make_net(), data, random_sets=[shuffled, *data["randoms"][1:]])
    with pytest.raises(ConceptDataError, match=r"'random\[0\]' and 'random\[2\]' hold identical examples;"):
        run(make_net(), data, random_sets=[data["randoms"][0], data["randoms"][1], data["randoms"][0]])


def test_concept_examples_shared_with_random_sets_warn_and_still_run(data: dict[str, Any]) -> None:
    mixed = torch.cat([data["concept"][:3], data["randoms"][0][3:]])
    with pytest.warns(TCAVDataWarning) as record:
        result = run(make_net(), data, random_sets=[mixed, *data["randoms"][1:]])
    assert [str(w.message) for w in record] == [
        "concept 'tensor' shares examples with 1 of its 3 random set(s): 'random[0]' (3 of 8); a shared example "
        "sits on both sides of a CAV, which lowers its accuracy and the test's power: remove concept images from "
        "the random sets (or the random pool)"
    ]
    assert len(result.layers) == 2


def test_random_sets_may_share_examples_with_each_other_and_inputs_with_anything(data: dict[str, Any]) -> None:
    overlapping = torch.cat([data["randoms"][0][:4], data["randoms"][1][4:]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run(make_net(), data, random_sets=[*data["randoms"], overlapping], inputs=data["concept"][:6])


def test_too_few_examples_and_an_unreachable_alpha_say_how_many_are_needed(data: dict[str, Any]) -> None:
    with pytest.raises(InsufficientDataError, match=r"'random\[1\]' has 4 example\(s\); a CAV needs at least 5"):
        run(make_net(), data, random_sets=[data["randoms"][0], data["randoms"][1][:4], data["randoms"][2]])
    with pytest.raises(InsufficientDataError, match=r"3 random set\(s\) are too few: at least 40 are needed "
                                                    r"\(the rank test's smallest p-value is 1/\(N\+1\)"):
        run(make_net(), data, engine={"null_test": "rank"})


# -- the user's objects are left exactly as they were --------------------------------------------


def _snapshot(model: nn.Module) -> dict[str, Any]:
    return {
        "modes": [(name, m.training) for name, m in model.named_modules()],
        "requires_grad": [(name, p.requires_grad) for name, p in model.named_parameters()],
        "grads": [(name, None if p.grad is None else p.grad.clone()) for name, p in model.named_parameters()],
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "hooks": [(name, list(m._forward_hooks.values()), list(m._forward_pre_hooks.values()),
                   list(m._backward_hooks.values())) for name, m in model.named_modules()],
    }


def _assert_same(before: dict[str, Any], after: dict[str, Any]) -> None:
    assert after["modes"] == before["modes"]
    assert after["requires_grad"] == before["requires_grad"]
    for (name, g0), (_, g1) in zip(before["grads"], after["grads"]):
        assert (g0 is None and g1 is None) or torch.equal(g0, g1), name
    assert before["state"].keys() == after["state"].keys()
    for k in before["state"]:
        assert torch.equal(before["state"][k], after["state"][k]), k  # bit for bit, batch-norm statistics included
    assert after["hooks"] == before["hooks"]


def _users_model() -> Net:
    """A model as a user may hand it over: training mode with one eval submodule, a frozen layer, stale
    gradients, and a hook of the user's own."""
    net = make_net().train()
    net.drop.eval()
    net.conv.bias.requires_grad_(False)
    net.head.weight.grad = torch.full_like(net.head.weight, 0.5)
    net.relu.register_forward_hook(lambda module, args, output: None)
    return net


def _raising_target(out: torch.Tensor) -> torch.Tensor:
    raise RuntimeError("the user's target failed")


FAILURES = {
    "passes": ({}, None),
    "target raises": ({"target": _raising_target}, RuntimeError),
    "target out of range": ({"target": 7}, TargetError),
    # IG passes one example at a time here, which the model rejects itself (a note, not our check)
    "unbatched (raised inside a hook)": ({"engine": {"batch_size": 3}, "squeeze": True},
                                         (ConceptDataError, RuntimeError)),
    "wrong channels (raised by the model)": ({"channels": 2}, RuntimeError),
    "uint8": ({"uint8": True}, ConceptDataError),
}


@pytest.mark.parametrize("case", list(FAILURES))
@pytest.mark.parametrize("method", ["gradient", "integrated_gradients"])
def test_the_model_is_left_exactly_as_it_was(data: dict[str, Any], case: str, method: str) -> None:
    overrides, error = FAILURES[case]
    overrides = dict(overrides)
    sets = dict(data)
    if overrides.pop("squeeze", False):
        sets = {"concept": data["concept"][:, 0], "inputs": data["inputs"][:, 0],
                "randoms": [r[:, 0] for r in data["randoms"]]}
    if (channels := overrides.pop("channels", None)) is not None:
        sets = {"concept": data["concept"][:, :channels], "inputs": data["inputs"][:, :channels],
                "randoms": [r[:, :channels] for r in data["randoms"]]}
    if overrides.pop("uint8", False):
        sets = {"concept": (data["concept"] * 255).byte(), "inputs": (data["inputs"] * 255).byte(),
                "randoms": [(r * 255).byte() for r in data["randoms"]]}
    overrides["engine"] = {**overrides.get("engine", {}), "method": method}
    net = _users_model()
    before = _snapshot(net)
    if error is None:
        run(net, sets, **overrides)
    else:
        with pytest.raises(error):
            run(net, sets, **overrides)
    _assert_same(before, _snapshot(net))


def test_eval_mode_is_what_runs_so_training_mode_gives_the_eval_result(data: dict[str, Any]) -> None:
    in_eval = run(make_net(), data)
    in_training = run(make_net().train(), data)  # dropout off and running statistics used, not batch statistics
    assert [layer.concept_scores for layer in in_training.layers] == [layer.concept_scores for layer in in_eval.layers]


def test_frozen_parameters_give_the_same_result(data: dict[str, Any]) -> None:
    frozen = make_net()
    for parameter in frozen.parameters():
        parameter.requires_grad_(False)
    expected = run(make_net(), data)
    got = run(frozen, data)
    assert [layer.concept_scores for layer in got.layers] == [layer.concept_scores for layer in expected.layers]
    assert not any(p.requires_grad for p in frozen.parameters()) and all(p.grad is None for p in frozen.parameters())


class Tokens(nn.Module):
    """Token ids -> embedding -> mean -> linear: integer inputs, so no input gradient to start from."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embedding = nn.Embedding(20, 6)
        self.head = nn.Linear(6, 2)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.embedding(ids)).mean(1))


def test_a_frozen_embedding_on_integer_inputs_still_gets_gradients() -> None:
    gen = torch.Generator().manual_seed(3)
    concept = torch.randint(0, 10, (8, 5), generator=gen)
    randoms = [torch.randint(5, 20, (8, 5), generator=gen) for _ in range(3)]
    inputs = torch.randint(0, 20, (6, 5), generator=gen)
    expected = TCAV(Tokens()).test(concept, target=1, inputs=inputs, layers=["embedding"], random_sets=randoms)
    frozen = Tokens()
    frozen.requires_grad_(False)
    got = TCAV(frozen).test(concept, target=1, inputs=inputs, layers=["embedding"], random_sets=randoms)
    assert got.layers[0].concept_statistics == expected.layers[0].concept_statistics
    assert not any(p.requires_grad for p in frozen.parameters())


def test_integer_layer_outputs_have_no_gradient_and_say_so() -> None:
    class Ids(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    class Model(Tokens):
        def __init__(self) -> None:
            super().__init__()
            self.ids = Ids()

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            return super().forward(self.ids(ids))

    gen = torch.Generator().manual_seed(3)
    sets = [torch.randint(0, 20, (8, 5), generator=gen) for _ in range(5)]
    with pytest.raises(LayerError, match="layer 'ids' outputs torch.int64 values, which have no gradient"):
        TCAV(Model()).test(sets[0], target=1, inputs=sets[1], layers=["ids"], random_sets=sets[2:])


def _global_state() -> dict[str, Any]:
    return {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state()[1].copy(),
        "python": random.getstate(),
        "grad_enabled": torch.is_grad_enabled(),
        "default_dtype": torch.get_default_dtype(),
        "threads": torch.get_num_threads(),
        "deterministic": torch.are_deterministic_algorithms_enabled(),
    }


def _assert_same_global_state(before: dict[str, Any]) -> None:
    after = _global_state()
    assert torch.equal(after.pop("torch"), before["torch"])
    assert np.array_equal(after.pop("numpy"), before["numpy"])
    assert after == {k: v for k, v in before.items() if k not in ("torch", "numpy")}


@pytest.mark.parametrize("outcome", ["passes", "fails", "errors"])
def test_assertions_leave_rng_and_inputs_untouched(data: dict[str, Any], outcome: str) -> None:
    """Through the plugin's assertion path (session, random pool drawn, failure raised)."""
    torch.manual_seed(11)
    np.random.seed(11)
    random.seed(11)
    inputs = data["inputs"].clone().requires_grad_(True)  # a leaf the user may still use
    concept = data["concept"].clone()
    pool = torch.cat(data["randoms"])
    copies = [t.detach().clone() for t in (inputs, concept, pool)]
    model = make_net()  # seeds torch itself: before the snapshot
    before = _global_state()
    session = TCAVSession()
    kwargs: dict[str, Any] = {"target": 1, "layers": ["conv", "relu"], "inputs": inputs, "random_sets": 3,
                              "random_pool": pool, "method": "integrated_gradients"}
    if outcome == "passes":
        session.score(model, concept, **kwargs)
    elif outcome == "fails":
        with pytest.raises(ConceptTestFailure):
            with current(session):
                assert_concept_significant(model, concept, score=(0.99, 1.0), **kwargs)
    else:
        with pytest.raises(TargetError):
            with current(session):
                assert_concept_insignificant(model, concept, **{**kwargs, "target": 9})
    _assert_same_global_state(before)
    for original, copy in zip((inputs, concept, pool), copies):
        assert torch.equal(original.detach(), copy)
    assert inputs.requires_grad and inputs.is_leaf and inputs.grad is None
    assert inputs.dtype == torch.float32 and inputs.device.type == "cpu" and not concept.requires_grad


def test_no_nan_in_any_reported_number_on_degenerate_data(data: dict[str, Any]) -> None:
    """Constant inputs: zero gradients below the head's mean. Every reported number is defined."""
    result = run(make_net(), data, inputs=torch.full((6, 3, SIZE, SIZE), 0.5))
    for layer in result.layers:
        numbers = [layer.score, layer.magnitude, layer.statistic, layer.null_mean, layer.null_sd,
                   layer.t_statistic, layer.p_value, layer.p_value_rank, layer.p_corrected, layer.cav_accuracy]
        assert not any(math.isnan(v) for v in numbers), layer


def test_concept_objects_with_hostile_names_are_only_labels(data: dict[str, Any]) -> None:
    named = Concept("../../etc/passwd\0", data["concept"])
    result = run(make_net(), data, concept=named)
    assert result.concept == "../../etc/passwd\0"


def test_a_missing_folder_through_the_session_says_where_relative_paths_start(tmp_path: Path,
                                                                              data: dict[str, Any]) -> None:
    from pytest_tcav import TCAVConfig

    session = TCAVSession(TCAVConfig(root=tmp_path))
    with pytest.raises(ConceptDataError, match=rf"concept folder '.*data/striped' does not exist; check the path "
                                               rf"\(a relative path starts at the project root, '{tmp_path}'\)"):
        session.score(make_net(), "data/striped", target=1, layers="conv", inputs=data["inputs"],
                      random_sets=data["randoms"])
    with pytest.raises(ConceptDataError, match="input folder '.*elsewhere' does not exist; check the path"):
        session.score(make_net(), data["concept"], target=1, layers="conv", inputs="data/elsewhere",
                      random_sets=data["randoms"])
