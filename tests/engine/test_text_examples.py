"""Text examples: reading .txt files and folders, the tokenizer's output checks, and errors that speak of text.

The end-to-end tests run text through a tokenizer into a TCAV result: the
engine takes the tokenizer's mapping of tensors as examples (``model(**batch)``).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pytest_tcav.engine.tcav import TCAV
from pytest_tcav.engine.text_examples import (
    is_text_list,
    is_text_path,
    prepare,
    read_text,
    read_text_file,
    text_examples,
    tokenize,
)
from pytest_tcav.errors import ConceptDataError, ConfigurationError
from tests.helpers import text_model, tiny_model


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


# -- reading -----------------------------------------------------------------------------


def test_a_file_is_one_example_per_non_empty_line(tmp_path: Path) -> None:
    file = write(tmp_path / "c.txt", b"\xef\xbb\xbfso wonderful\r\n\n   \n  truly great  \nlast line, no newline")
    assert read_text_file(file) == ["so wonderful", "truly great", "last line, no newline"]
    assert read_text(file) == read_text_file(file)


def test_a_folder_is_every_line_of_its_txt_files_in_file_order(tmp_path: Path) -> None:
    folder = tmp_path / "c"
    write(folder / "b.txt", "third\nfourth\n")
    write(folder / "a.TXT", "first\n\nsecond\n")
    write(folder / ".hidden.txt", "never\n")
    write(folder / "notes.md", "never either\n")
    assert read_text(folder) == ["first", "second", "third", "fourth"]


def test_what_counts_as_text(tmp_path: Path) -> None:
    text_folder = tmp_path / "text"
    write(text_folder / "a.txt", "x\n")
    image_folder = tmp_path / "images"
    tiny_model.save_images(tiny_model.noise(2, torch.Generator().manual_seed(0)), image_folder)
    write(image_folder / "README.txt", "about these images\n")
    assert is_text_path(text_folder) and is_text_path(text_folder / "a.txt")
    assert not is_text_path(image_folder)  # images with a README stay images
    assert not is_text_path(tmp_path / "missing.txt") and not is_text_path(tmp_path / "missing")
    assert is_text_list(["a", "b"]) and is_text_list(("a",))
    assert not is_text_list([]) and not is_text_list("a string") and not is_text_list(["a", 1])


@pytest.mark.parametrize("layout, message", [
    ("missing", r"concept text '.*missing' does not exist"),
    ("empty_folder", r"concept folder '.*empty_folder' contains no \.txt files"),
    ("blank_file.txt", r"concept text file '.*blank_file\.txt' has no non-empty line"),
    ("blank_folder", r"the \.txt files of concept folder '.*blank_folder' have no non-empty line"),
    ("image.png", r"concept file '.*image\.png' is not a \.txt file"),
])
def test_unreadable_text_says_what_is_wrong(tmp_path: Path, layout: str, message: str) -> None:
    (tmp_path / "empty_folder").mkdir()
    write(tmp_path / "blank_file.txt", "\n  \n")
    write(tmp_path / "blank_folder" / "a.txt", "\n")
    write(tmp_path / "image.png", b"\x89PNG")
    with pytest.raises(ConceptDataError, match=message) as info:
        read_text(tmp_path / layout)
    assert "image" not in str(info.value).replace("image.png", "")  # no advice about image files for text


def test_undecodable_text_names_the_file_and_the_line(tmp_path: Path) -> None:
    file = write(tmp_path / "lib" / "latin1.txt", b"fine\n" + "caf\xe9 au lait\n".encode("latin-1"))
    with pytest.raises(ConceptDataError, match=r"random text file '.*latin1\.txt', line 2: not UTF-8 "
                                               r"\(byte 0xe9 at column 4\); save the file as UTF-8"):
        read_text(tmp_path / "lib", role="random")
    with pytest.raises(ConceptDataError, match="line 2"):
        read_text_file(file)


# -- tokenizing --------------------------------------------------------------------------


def test_tokenizer_output_is_a_mapping_of_cpu_tensors_one_row_per_text() -> None:
    parts = tokenize(["so wonderful", "the train", "a great lovely movie"], text_model.tokenize)
    assert list(parts) == ["input_ids", "attention_mask"]
    assert parts["input_ids"].shape == parts["attention_mask"].shape == (3, 4)
    assert parts["attention_mask"].sum(1).tolist() == [2, 2, 4]


@pytest.mark.slow  # loads transformers
def test_a_hugging_face_tokenizer_passes_the_checks(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    vocab = write(tmp_path / "vocab.txt", "\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "the", "movie", "was",
                                                     "wonderful", "awful"]) + "\n")
    hf = transformers.BertTokenizer(vocab_file=str(vocab))
    parts = tokenize(["the movie was wonderful", "awful"],
                     lambda texts: hf(texts, padding=True, return_tensors="pt"))
    assert set(parts) == {"input_ids", "token_type_ids", "attention_mask"}
    assert parts["input_ids"].shape == (2, 6)  # [CLS] 4 words [SEP]
    assert all(type(v) is torch.Tensor for v in parts.values())
    with pytest.raises(ConceptDataError, match=r"returned list for 'input_ids', not a tensor; call a Hugging "
                                               r"Face tokenizer with padding=True, return_tensors=\"pt\""):
        tokenize(["the movie", "awful"], lambda texts: hf(texts))


def _fixed(value: object):  # a tokenizer that returns ``value`` whatever it is given
    return lambda texts: value


@pytest.mark.parametrize("returned, message", [
    (torch.zeros(2, 3), r"returned Tensor for .*; it must return a mapping of tensors"),
    ({}, r"returned an empty mapping"),
    ({"input_ids": [[1, 2], [3]]}, r"returned list for 'input_ids', not a tensor"),
    ({"input_ids": torch.zeros(3, 4)}, r"returned 3 row\(s\) for 'input_ids' from 2 texts"),
    ({"input_ids": torch.tensor(1)}, r"returned a scalar for 'input_ids'"),
    ({"input_ids": torch.zeros(2, 4), "attention_mask": torch.zeros(2, 5)},
     r"returned parts of unequal length .*\(input_ids 4, attention_mask 5\)"),
])
def test_a_tokenizer_returning_the_wrong_thing_is_told_how_to_call_one(returned: object, message: str) -> None:
    with pytest.raises(ConceptDataError, match=message) as info:
        tokenize(["a", "b"], _fixed(returned))
    assert 'padding=True, return_tensors="pt"' in str(info.value)


def test_a_failing_tokenizer_is_named_with_its_error() -> None:
    def broken(texts: list[str]) -> dict[str, torch.Tensor]:
        raise ValueError("Unable to create tensor, you should probably activate padding")

    with pytest.raises(ConceptDataError, match=r"the tokenizer .*broken failed on concept a list of 2 strings "
                                               r"\(ValueError: Unable to create tensor.*padding=True"):
        text_examples(["a", "b"], broken)


def test_text_without_a_tokenizer_says_how_to_set_one(tmp_path: Path) -> None:
    file = write(tmp_path / "striped.txt", "a\nb\n")
    for value in (["a", "b"], file, tmp_path):
        with pytest.raises(ConfigurationError, match=r"is text, and text needs a tokenizer.*set tcav_tokenizer = "
                                                     r"module:callable.*or pass tokenizer=") as info:
            text_examples(value, None)  # type: ignore[arg-type]
        assert "image" not in str(info.value) and ".png" not in str(info.value)


def test_prepare_leaves_anything_but_text_alone(tmp_path: Path) -> None:
    tensor = torch.zeros(2, 3)
    assert prepare(tensor, None) is tensor
    images = tmp_path / "images"
    tiny_model.save_images(tiny_model.noise(2, torch.Generator().manual_seed(0)), images)
    assert prepare(images, None) is images and prepare(str(images), None) == str(images)
    parts = prepare(["so great", "a lovely trip"], text_model.tokenize)
    assert set(parts) == {"input_ids", "attention_mask"}


def test_the_engine_refuses_text_without_a_tokenizer_with_no_image_advice() -> None:
    engine = TCAV(text_model.WordBagNet())
    inputs = text_model.tokenize(text_model.sentences(text_model.POSITIVE, 6, 1))
    with pytest.raises(ConfigurationError, match=r"concept a list of 4 strings is text.*tcav_tokenizer") as info:
        engine.test(["so great", "lovely", "a superb meal", "great"], target=1, inputs=inputs, layers="pooled",
                    random_sets=[["the train"], ["a clock"]])
    assert "image" not in str(info.value)


# -- end to end ---------------------------------------------------------------------------


def test_text_concepts_through_a_tokenizer_find_the_planted_words(tmp_path: Path) -> None:
    """Lists of strings and .txt files alike: the positive words matter for class 1, neutral nouns do not."""
    engine = TCAV(text_model.WordBagNet(), tokenizer=text_model.tokenize)
    randoms = [text_model.sentences(text_model.RANDOM, 20, 100 + k, length=2) for k in range(5)]
    inputs = text_model.sentences(text_model.POSITIVE, 20, 7)
    concept_file = write(tmp_path / "positive.txt", "\n".join(text_model.sentences(text_model.POSITIVE, 20, 3,
                                                                                   length=2)) + "\n")
    positive = engine.test(concept_file, target=1, inputs=inputs, layers="pooled", random_sets=randoms)
    assert positive.significant_layers == ["pooled"]
    assert positive.n_concept_examples == 20 and positive.n_inputs == 20
    neutral = engine.test(text_model.sentences(text_model.NEUTRAL, 20, 3, length=2), target=1, inputs=inputs,
                          layers="pooled", random_sets=randoms, direction="either")
    assert neutral.significant_layers == []


def test_a_text_pool_is_sampled_like_an_image_pool(tmp_path: Path) -> None:
    engine = TCAV(text_model.WordBagNet(), tokenizer=text_model.tokenize)
    pool = write(tmp_path / "random.txt", "\n".join(text_model.sentences(text_model.RANDOM, 60, 5, length=2)))
    result = engine.test(text_model.sentences(text_model.POSITIVE, 20, 3, length=2), target=1,
                         inputs=text_model.sentences(text_model.POSITIVE, 20, 7), layers="pooled",
                         random_sets=5, random_pool=pool)
    assert result.n_random == 5 and result.significant_layers == ["pooled"]
