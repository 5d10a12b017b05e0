"""A check that raised: its record, the hint for greyscale images, and the frames its traceback keeps."""

from __future__ import annotations

import os
import traceback
from pathlib import Path

import pytest
import torch

import pytest_tcav
from pytest_tcav.checks.significance import check_concept
from pytest_tcav.engine.spec import CheckSpec, settle
from pytest_tcav.errors import LayerError
from pytest_tcav.session.session import TCAVSession
from tests.helpers import tiny_model

LIBRARY = str(Path(pytest_tcav.__file__).parent) + os.sep


def sets(channels: int, seed: int = 0) -> dict:
    gen = torch.Generator().manual_seed(seed)
    return {"concept": torch.rand(12, channels, 12, 12, generator=gen),
            "random_sets": [torch.rand(12, channels, 12, 12, generator=gen) for _ in range(3)],
            "inputs": torch.rand(16, channels, 12, 12, generator=gen)}


class Crashy(tiny_model.EdgeNet):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x)
        raise TypeError(f"cannot take {tuple(h.shape)}")


def run_check(model: torch.nn.Module, channels: int = 3) -> tuple[TCAVSession, BaseException]:
    session = TCAVSession()
    data = sets(channels)
    with pytest.raises(Exception) as info:
        check_concept(session, model, settle(CheckSpec(expectation="significant", target=1, layers="relu", **data),
                                             session.config))
    return session, info.value


def test_greyscale_images_for_an_rgb_model_suggest_convert_rgb() -> None:
    session, exc = run_check(tiny_model.EdgeNet(), channels=1)
    assert isinstance(exc, RuntimeError)  # torch's own error, kept
    hint = "the examples have 1 channel(s) (greyscale images?) and the model's layer expects 3"
    assert any(hint in note and "image.convert('RGB')" in note for note in exc.__notes__)
    [record] = session.records
    assert record.outcome == "error" and record.error == "RuntimeError"
    assert "image.convert('RGB')" in record.message  # the hint reaches the reports too
    assert record.message.splitlines()[0] == str(exc).splitlines()[0]


def test_a_crash_in_the_model_is_recorded_and_keeps_only_the_model_frames() -> None:
    session, exc = run_check(Crashy())
    assert isinstance(exc, TypeError)
    [record] = session.records
    assert (record.outcome, record.error, record.results) == ("error", "TypeError", [])
    assert record.message.startswith("cannot take (16, 4, 12, 12)")
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if f.filename.startswith(LIBRARY)]
    assert {f.name for f in ours} == {"check_concept"}  # the frame that re-raised it, hidden from pytest
    assert not any(f.name in ("_call_impl", "_wrapped_call_impl") for f in frames)  # nn.Module.__call__
    assert frames[-1].name == "forward" and frames[-1].filename == __file__  # the model's line
    assert "TCAVError" not in str(exc)


def test_a_setup_error_is_recorded_without_the_engines_frames() -> None:
    session = TCAVSession()
    data = sets(3)
    with pytest.raises(LayerError) as info:
        check_concept(session, tiny_model.EdgeNet(),
                      settle(CheckSpec(expectation="significant", target=1, layers="nope", **data), session.config))
    assert session.records[0].error == "LayerError"
    frames = traceback.extract_tb(info.value.__traceback__)
    assert [f.name for f in frames if f.filename.startswith(LIBRARY)] == ["check_concept"]
