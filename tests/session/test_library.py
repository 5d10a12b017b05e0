"""Concept and input libraries: layouts, random counterparts, caching, and errors that list what exists."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pytest_tcav.errors import ConceptDataError, ConfigurationError
from pytest_tcav.session.library import ConceptLibrary, InputLibrary, natural_key
from tests.helpers import tiny_model


def images(folder: Path, n: int = 6, seed: int = 0) -> None:
    tiny_model.save_images(tiny_model.noise(n, torch.Generator().manual_seed(seed)), folder)


@pytest.fixture(scope="module")
def library_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("lib")
    for seed, name in enumerate(["striped", "dotted", "random_0", "random_2", "random_10", "random500_1"]):
        images(root / name, seed=seed)
    (root / ".hidden").mkdir()
    return root


def test_names_and_random_folders(library_root: Path) -> None:
    library = ConceptLibrary(library_root)
    assert library.names() == ["dotted", "striped"]
    assert library.random_set_names() == ["random500_1", "random_0", "random_2", "random_10"]
    assert library.pool_name() is None
    assert "striped" in library and "nope" not in library and "../lib" not in library


def test_concepts_load_once(library_root: Path) -> None:
    library = ConceptLibrary(library_root)
    first = library.concept("striped")
    assert first is library.concept("striped")
    assert first.name == "striped" and tuple(first.examples.shape) == (6, 3, tiny_model.SIZE, tiny_model.SIZE)


def test_unknown_concept_lists_the_library(library_root: Path) -> None:
    with pytest.raises(ConceptDataError, match=r"no concept 'stripd'.*did you mean 'striped'\?.*"
                                               r"concepts there: dotted, striped"):
        ConceptLibrary(library_root).concept("stripd")


def test_explicit_random_sets_in_natural_order(library_root: Path) -> None:
    sets, pool = ConceptLibrary(library_root).random_sets(3)
    assert pool is None
    assert [s.name for s in sets] == ["random500_1", "random_0", "random_2"]


def test_too_few_random_folders(library_root: Path) -> None:
    with pytest.raises(ConceptDataError, match=r"10 random sets were asked for.*only 4 random folder.*random_sets=4"):
        ConceptLibrary(library_root).random_sets(10)


def test_pool_folder(tmp_path: Path) -> None:
    images(tmp_path / "striped")
    images(tmp_path / "random_pool", n=20, seed=3)
    library = ConceptLibrary(tmp_path)
    assert library.names() == ["striped"]
    assert library.random_set_names() == []
    sets, pool = library.random_sets(10)
    assert sets == [] and pool is not None and pool.name == "random_pool" and len(pool) == 20


def test_no_random_counterparts(tmp_path: Path) -> None:
    images(tmp_path / "striped")
    with pytest.raises(ConceptDataError, match="has no random counterparts: add folders named random_0"):
        ConceptLibrary(tmp_path).random_sets(10)


def test_unconfigured_and_missing_roots(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="no concept library is configured: set tcav_concepts"):
        ConceptLibrary(None).concept("striped")
    with pytest.raises(ConceptDataError, match=r"folder '.*missing' \(--tcav-concepts\) does not exist"):
        ConceptLibrary(tmp_path / "missing", origin="--tcav-concepts").names()


def test_inputs_by_index_and_by_class_name(tmp_path: Path) -> None:
    images(tmp_path / "340", seed=1)
    images(tmp_path / "tiger", seed=2)
    library = InputLibrary(tmp_path, classes={"zebra": 340, "tiger": 292})
    assert library.for_target(340).name == "340"
    assert library.for_target("zebra").name == "340"  # name -> index folder
    assert library.for_target(292).name == "tiger"  # index -> name folder
    assert library.for_target("tiger").name == "tiger"
    assert library.named("tiger") is library.for_target("tiger")


def test_missing_inputs_say_where_they_looked(tmp_path: Path) -> None:
    images(tmp_path / "zebra")
    library = InputLibrary(tmp_path)
    with pytest.raises(ConceptDataError, match=r"no inputs for target 340.*looked for folder\(s\) 340 "
                                               r"\(folders named by class name need a mapping in tcav_classes"):
        library.for_target(340)
    with pytest.raises(ConceptDataError, match="did you mean 'zebra'"):
        library.named("zebr")


def test_natural_key() -> None:
    assert sorted(["random_10", "random_2", "random_1"], key=natural_key) == ["random_1", "random_2", "random_10"]
