"""Text in the libraries and the session: NAME.txt and .txt folders by name, tcav_tokenizer, random sets by kind.

Routing is tested on its own (which entry, which tokenizer, which role reach
``text_concept``), and end to end in a pytester project.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch

import pytest_tcav.session.library as library_module
import pytest_tcav.session.session as session_module
from pytest_tcav.config import TCAVConfig, build_config
from pytest_tcav.errors import ConceptDataError, ConfigurationError
from pytest_tcav.session.library import ConceptLibrary, InputLibrary
from pytest_tcav.session.session import TCAVSession
from tests.helpers import text_model, tiny_model


def lines(path: Path, texts: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(texts) + "\n", encoding="utf-8")


def images(folder: Path, seed: int = 0) -> None:
    tiny_model.save_images(tiny_model.noise(4, torch.Generator().manual_seed(seed)), folder)


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A library with both kinds: image concepts and random folders, text concepts, a text pool and inputs."""
    root = tmp_path_factory.mktemp("mixed")
    images(root / "concepts" / "striped")
    for k in range(3):
        images(root / "concepts" / f"random_{k}", seed=k + 1)
    lines(root / "concepts" / "positive.txt", text_model.sentences(text_model.POSITIVE, 8, 1, length=2))
    lines(root / "concepts" / "nouns" / "b.txt", ["a hotel", "the meal"])
    lines(root / "concepts" / "nouns" / "a.txt", ["the movie", "a book"])
    lines(root / "concepts" / "random.txt", text_model.sentences(text_model.RANDOM, 30, 2, length=2))
    lines(root / "inputs" / "positive.txt", text_model.sentences(text_model.POSITIVE, 6, 3))
    images(root / "inputs" / "1")
    return root


class Recorder:
    """Stands in for ``text_concept``: what reached it, and a small stand-in concept back."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def __call__(self, value: Any, tokenizer: Any, *, name: str | None = None, role: str = "concept",
                 id_root: Any = None) -> Any:
        from pytest_tcav.engine.examples import Concept

        self.calls.append({"value": value, "tokenizer": tokenizer, "name": name, "role": role})
        return Concept(name or "text", torch.zeros(2, 1))


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    record = Recorder()
    monkeypatch.setattr(library_module, "text_concept", record)
    monkeypatch.setattr(session_module, "text_concept", record)
    return record


def test_names_kinds_and_random_entries_of_a_mixed_library(mixed: Path) -> None:
    library = ConceptLibrary(mixed / "concepts")
    assert library.names() == ["nouns", "positive", "striped"]
    assert "positive" in library and "nouns" in library and "positive.txt" not in library
    assert [library.kind_of(n) for n in library.names()] == ["text", "text", "image"]
    assert library.random_set_names() == ["random_0", "random_1", "random_2"]
    assert library.random_set_names("image") == ["random_0", "random_1", "random_2"]
    assert library.random_set_names("text") == []
    assert library.pool_name("text") == "random" and library.pool_name("image") is None
    assert library.entry_path("positive").name == "positive.txt"


def test_text_entries_are_tokenized_once_per_tokenizer(mixed: Path, recorder: Recorder) -> None:
    library = ConceptLibrary(mixed / "concepts", tokenizer=text_model.tokenize)
    first = library.concept("positive")
    assert library.concept("positive") is first
    assert recorder.calls == [{"value": (mixed / "concepts" / "positive.txt").resolve(),
                               "tokenizer": text_model.tokenize, "name": "positive", "role": "concept"}]

    def other(texts: list[str]) -> dict[str, torch.Tensor]:
        return text_model.tokenize(texts)

    assert library.concept("positive", tokenizer=other) is not first  # a per-call tokenizer wins, cached apart
    assert recorder.calls[-1]["tokenizer"] is other
    library.concept("nouns")
    assert recorder.calls[-1]["value"] == (mixed / "concepts" / "nouns").resolve()


def test_random_sets_follow_the_concept_kind(mixed: Path, recorder: Recorder) -> None:
    library = ConceptLibrary(mixed / "concepts", tokenizer=text_model.tokenize)
    sets, pool = library.random_sets(3, kind="image")
    assert [s.name for s in sets] == ["random_0", "random_1", "random_2"] and pool is None
    sets, pool = library.random_sets(10, kind="text", tokenizer=text_model.tokenize)
    assert sets == [] and pool is not None and pool.name == "random"
    assert recorder.calls[-1]["role"] == "concept" and recorder.calls[-1]["value"].name == "random.txt"


def test_a_library_without_text_random_sets_says_how_to_add_them(tmp_path: Path) -> None:
    images(tmp_path / "random_0")
    lines(tmp_path / "positive.txt", ["great"])
    with pytest.raises(ConceptDataError, match=r"no text random counterparts: add files named random_0\.txt, "
                                               r"random_1\.txt.*random\.txt or random_pool\.txt"):
        ConceptLibrary(tmp_path).random_sets(3, kind="text")


def test_a_name_that_is_a_folder_and_a_file_is_an_error(tmp_path: Path) -> None:
    lines(tmp_path / "nouns.txt", ["a"])
    lines(tmp_path / "nouns" / "a.txt", ["b"])
    with pytest.raises(ConceptDataError, match=r"both a folder 'nouns' and a file 'nouns\.txt'; rename one"):
        ConceptLibrary(tmp_path).concept("nouns")


def test_inputs_of_a_target_may_be_a_txt_file(mixed: Path, recorder: Recorder) -> None:
    library = InputLibrary(mixed / "inputs", classes={"positive": 1}, tokenizer=text_model.tokenize)
    library.for_target("positive")
    assert recorder.calls[-1]["value"].name == "positive.txt" and recorder.calls[-1]["role"] == "input"
    assert library.for_target(1).name == "1"  # the image folder of the class index: tried first
    assert library.entries() == ["1", "positive"]


def test_text_without_a_tokenizer_names_the_setting(mixed: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"concept '.*positive\.txt' is text.*set tcav_tokenizer") as info:
        ConceptLibrary(mixed / "concepts").concept("positive")
    assert "image" not in str(info.value)


def test_the_session_routes_names_paths_and_strings(mixed: Path, recorder: Recorder) -> None:
    config = TCAVConfig(concepts=mixed / "concepts", inputs=mixed / "inputs", root=mixed,
                        classes={"positive": 1}, tokenizer="tests.helpers.text_model:tokenize")
    session = TCAVSession(config)
    session.resolve_concept("positive")
    session.resolve_concept("concepts/nouns")
    session.resolve_concept(["so great", "lovely"])
    session.resolve_inputs(None, "positive")
    session.resolve_inputs(["a great movie"], 1)
    sets, pool = session.resolve_random_sets(None, None, kind="text")
    assert sets == config.random_sets and pool is not None
    session.resolve_random_sets([["the train"], "concepts/random.txt"], None)
    roles = [(call["name"], call["role"]) for call in recorder.calls]
    # concepts/random.txt by path is the pool already loaded by name: read and tokenized once
    assert roles == [("positive", "concept"), ("nouns", "concept"), ("text", "concept"), ("positive", "input"),
                     ("inputs", "input"), ("random", "concept"), ("random", "random")]
    assert all(call["tokenizer"] is session.tokenizer for call in recorder.calls)
    assert session.concept_kind("positive") == "text" and session.concept_kind("striped") == "image"
    assert session.concept_kind(["a"]) == "text" and session.concept_kind(torch.zeros(1)) is None
    assert session.concept_kind("concepts/nouns") == "text" and session.concept_kind("concepts/striped") == "image"


def test_a_missing_txt_path_is_called_a_file(mixed: Path) -> None:
    session = TCAVSession(TCAVConfig(concepts=mixed / "concepts", root=mixed))
    with pytest.raises(ConceptDataError, match=r"concept file '.*elsewhere/adjectives\.txt' does not exist"):
        session.resolve_concept("elsewhere/adjectives.txt")


def test_tcav_tokenizer_is_checked_at_startup_and_imported_on_first_text(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"tcav_tokenizer in pytest.ini: 'tokenize' is not of the form"):
        build_config({"tcav_tokenizer": ("tokenize", "tcav_tokenizer in pytest.ini")}, root=tmp_path)
    config = build_config({"tcav_tokenizer": ("no_such_module_xyz:tokenize", "tcav_tokenizer in pytest.ini")},
                          root=tmp_path)
    session = TCAVSession(config)  # nothing imported yet
    assert session.tokenizer is not None
    with pytest.raises(ConfigurationError, match=r"tcav_tokenizer in pytest.ini: cannot import module "
                                                 r"'no_such_module_xyz'"):
        session.tokenizer(["a"])
    good = TCAVSession(build_config({"tcav_tokenizer": ("tests.helpers.text_model:tokenize", "ini")},
                                    root=tmp_path))
    assert good.tokenizer is not None and set(good.tokenizer(["so great"])) == {"input_ids", "attention_mask"}


PROJECT_TEST = '''
from pytest_tcav import assert_concept_insignificant, assert_concept_significant


def test_positive_words_make_positive(model):
    assert_concept_significant(model, "positive", target="positive", layers="pooled")


def test_nouns_do_not(model):
    assert_concept_insignificant(model, "nouns", target="positive", layers="pooled")


def test_strings_and_a_tokenizer_knob(model):
    import text_model

    assert_concept_significant(model, ["so great", "lovely", "a superb", "excellent", "great great"],
                               target="positive", layers="pooled", tokenizer=text_model.tokenize)
'''


@pytest.mark.slow  # runs pytest
def test_a_project_with_txt_files_and_tcav_tokenizer(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(text_model=Path(text_model.__file__).read_text())
    pytester.makeconftest("""
        import pytest
        import text_model

        @pytest.fixture(scope="session")
        def model():
            return text_model.WordBagNet()
    """)
    pytester.makeini(textwrap.dedent("""
        [pytest]
        pythonpath = .
        tcav_concepts = concepts
        tcav_inputs = inputs
        tcav_tokenizer = text_model:tokenize
        tcav_random_sets = 5
        tcav_classes =
            positive=1
    """))
    root = pytester.path
    lines(root / "concepts" / "positive.txt", text_model.sentences(text_model.POSITIVE, 20, 3, length=2))
    lines(root / "concepts" / "nouns" / "nouns.txt", text_model.sentences(text_model.NEUTRAL, 20, 3, length=2))
    lines(root / "concepts" / "random.txt", text_model.sentences(text_model.RANDOM, 80, 5, length=2))
    lines(root / "inputs" / "positive.txt", text_model.sentences(text_model.POSITIVE, 20, 7))
    pytester.makepyfile(test_text=PROJECT_TEST)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    assert result.ret == 0, result.stdout.str()
    result.assert_outcomes(passed=3)


def test_text_model_module_imports_only_torch() -> None:
    # It is copied into pytester projects, like tiny_model.py.
    source = Path(text_model.__file__).read_text()
    assert {line.split()[1] for line in source.splitlines() if line.startswith("import ")} <= {"re", "torch"}
    assert "tests." not in source and sys.modules["tests.helpers.text_model"] is text_model


def test_the_score_command_scores_the_concepts_of_the_inputs_kind(mixed: Path) -> None:
    from pytest_tcav.cli.score import InputsOfClass, _inputs_kind

    session = TCAVSession(TCAVConfig(concepts=mixed / "concepts", inputs=mixed / "inputs", root=mixed,
                                     classes={"positive": 1}))
    assert _inputs_kind(session, None, "positive") == "text"
    assert _inputs_kind(session, None, 1) == "image"  # inputs/1/ is tried before inputs/positive.txt
    assert _inputs_kind(session, InputsOfClass("positive"), 1) == "text"
    assert _inputs_kind(session, mixed / "inputs" / "positive.txt", 1) == "text"
    assert _inputs_kind(session, mixed / "inputs" / "1", "positive") == "image"
