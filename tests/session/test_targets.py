"""A class index without inputs: a wrong index is reported as such, not as a missing input folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_tcav.config import TCAVConfig
from pytest_tcav.errors import ConceptDataError, ConfigurationError, TargetError
from pytest_tcav.session.session import TCAVSession
from tests.helpers import tiny_model


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("library")
    tiny_model.write_library(root)  # inputs/0 and inputs/1: the two classes of EdgeNet
    return root


def session(library: Path, **settings: object) -> TCAVSession:
    return TCAVSession(TCAVConfig(concepts=library / "concepts", random_sets=5, **settings))  # type: ignore[arg-type]


def test_an_out_of_range_class_index_is_the_error(library: Path) -> None:
    with pytest.raises(TargetError, match=r"target 7 is out of range for a model with 2 outputs \(valid: 0..1\)"):
        session(library, inputs=library / "inputs").score(tiny_model.EdgeNet(), "horizontal", target=7,
                                                          layers="relu")


def test_an_index_in_range_without_its_folder_is_still_a_missing_folder(library: Path, tmp_path: Path) -> None:
    (tmp_path / "0").symlink_to(library / "inputs" / "0")  # an input library without class 1
    with pytest.raises(ConceptDataError, match="no inputs for target 1 in the input library"):
        session(library, inputs=tmp_path).score(tiny_model.EdgeNet(), "horizontal", target=1, layers="relu")


def test_no_input_library_says_so(library: Path) -> None:
    with pytest.raises(ConfigurationError, match="no input library is configured: set tcav_inputs"):
        session(library).score(tiny_model.EdgeNet(), "horizontal", target=7, layers="relu")
