"""The pseudo-concepts' null in a session: drawn from the library's spare random data, measured once,
stored under the disk cache, reused by every later check and run, and never the concept under test."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from pytest_tcav import Concept, TCAVSession
from pytest_tcav.config import TCAVConfig
from pytest_tcav.errors import ConceptDataError, ConfigurationError, InsufficientDataError
from pytest_tcav.session import pseudo_null
from tests.helpers import tiny_model

K = 20  # what the default exact rank test needs for one layer at alpha 0.05 (1/(K+1) < 0.05)


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pseudo")
    tiny_model.write_library(root, n_random=30)  # random_0..4 in use, random_5..29 spare: 25 disjoint sets
    return root


def _session(root: Path, cache_dir: Path, **changes: Any) -> TCAVSession:
    values: dict[str, Any] = dict(concepts=root / "concepts", inputs=root / "inputs", random_sets=5,
                                  pseudo_concepts=K, cache_dir=cache_dir, null="pseudo")
    return TCAVSession(TCAVConfig(**{**values, **changes}))


def _counting(session: TCAVSession) -> list[Any]:
    """Record every request the session measures (the check's own and each pseudo-concept's)."""
    calls: list[Any] = []
    measure = session.measure

    def counted(model: torch.nn.Module, spec: Any) -> Any:
        calls.append(spec)
        return measure(model, spec)

    session.measure = counted  # type: ignore[method-assign]
    return calls


@pytest.mark.slow  # two dozen checks
def test_the_null_is_measured_once_stored_and_reused_by_later_runs(library: Path, tmp_path: Path) -> None:
    model = tiny_model.EdgeNet()
    first = _session(library, tmp_path)
    calls = _counting(first)
    result = first.score(model, "horizontal", target=1, layers=["relu"])
    assert result.null == "pseudo" and len(result.layers[0].null_statistics) == K
    assert len(calls) == 1 + K  # the check, then each pseudo-concept once
    assert result.layers[0].significant
    first.score(model, "vertical", target=1, layers=["relu"], direction="negative")
    assert len(calls) == 1 + K + 1  # a second check of the same target and settings: nothing more
    stored = list((tmp_path / pseudo_null.FOLDER).glob("*.json"))
    assert len(stored) == 1
    data = json.loads(stored[0].read_text())
    assert data["count"] == K and list(data["layers"]) == ["relu"] and len(data["members"]) == K

    later = _session(library, tmp_path)  # a later run: read back, not measured
    later_calls = _counting(later)
    again = later.score(model, "horizontal", target=1, layers=["relu"])
    assert len(later_calls) == 1 and again == result
    assert again.null_source is not None and again.null_source.startswith(f"K = {K} pseudo-concepts (pseudo_null/")


@pytest.mark.slow  # two dozen checks
def test_new_layers_are_measured_alone_and_a_changed_model_measures_again(library: Path, tmp_path: Path) -> None:
    model = tiny_model.EdgeNet()
    session = _session(library, tmp_path, pseudo_concepts=2 * K)  # what the rank test needs for two layers
    calls = _counting(session)
    session.score(model, "horizontal", target=1, layers=["relu"])
    session.score(model, "horizontal", target=1, layers=["conv", "relu"])
    assert [c.layer_names for c in calls[1 + 2 * K + 1:]] == [["conv"]] * (2 * K)  # only the layer not measured yet
    changed = tiny_model.EdgeNet()
    with torch.no_grad():
        changed.conv.weight.mul_(1.5)
    session.score(changed, "horizontal", target=1, layers=["relu"])
    assert len(list((tmp_path / pseudo_null.FOLDER).glob("*.json"))) == 2


def test_without_a_disk_cache_the_null_is_kept_for_the_session(library: Path, tmp_path: Path) -> None:
    session = _session(library, tmp_path / "unused", cache="off")
    calls = _counting(session)
    session.score(tiny_model.EdgeNet(), "horizontal", target=1, layers=["relu"])
    session.score(tiny_model.EdgeNet(), "noisy", target=1, layers=["relu"])
    assert len(calls) == 2 + K and not (tmp_path / "unused" / pseudo_null.FOLDER).exists()


def test_a_pseudo_concept_is_never_the_concept_under_test(library: Path, tmp_path: Path) -> None:
    session = _session(library, tmp_path, pseudo_concepts=K + 2)  # disjoint draws: one spare image, one left out
    spare = session.concepts.load(library / "concepts" / "random_7").examples
    horizontal = session.concepts.load(library / "concepts" / "horizontal").examples
    mixed = Concept("mixed", torch.cat([spare[:1], horizontal[1:]]))  # one spare image: one pseudo-concept
    result = session.score(tiny_model.EdgeNet(), mixed, target=1, layers=["relu"])
    assert len(result.layers[0].null_statistics) == K + 1
    assert result.null_source is not None and result.null_source.endswith(
        "1 sharing examples with the concept left out)")
    with pytest.raises(InsufficientDataError, match="never judged against itself"):  # all of it spare data
        session.score(tiny_model.EdgeNet(), Concept("spare", spare), target=1, layers=["relu"])


def test_what_the_pseudo_null_cannot_serve_is_refused_clearly(library: Path, tmp_path: Path) -> None:
    session = _session(library, tmp_path)
    model = tiny_model.EdgeNet()
    own = [library / "concepts" / f"random_{k}" for k in range(5)]
    with pytest.raises(ConfigurationError, match="spare random data"):
        session.score(model, "horizontal", target=1, layers=["relu"], random_sets=own)
    with pytest.raises(ConfigurationError, match="not a plain callable"):
        session.score(model, "horizontal", target=lambda out: out[:, 1], layers=["relu"],
                      inputs=library / "inputs" / "1")
    # a relative check keeps its own null (relabelings) whatever tcav_null says
    relative = session.score(model, "horizontal", target=1, layers=["relu"], against="vertical")
    assert relative.null == "random" and relative.against == ["vertical"]
    with pytest.raises(ConfigurationError, match="relabelings"):
        session.score(model, "horizontal", target=1, layers=["relu"], against="vertical", null="pseudo")
    bare = tmp_path / "bare"
    tiny_model.write_library(bare, n_random=5)
    with pytest.raises(ConceptDataError, match="no random data the tests do not use"):
        _session(bare, tmp_path / "bare-cache").score(model, "horizontal", target=1, layers=["relu"])


def test_text_pseudo_concepts_are_sentences_of_the_text_pool_tokenized_on_their_own(tmp_path: Path) -> None:
    from tests.helpers import text_model

    root = tmp_path / "text"
    (root / "concepts").mkdir(parents=True)
    (root / "inputs").mkdir()
    (root / "concepts" / "positive.txt").write_text(
        "\n".join(text_model.sentences(text_model.POSITIVE, 8, 1)) + "\n")
    (root / "concepts" / "random.txt").write_text(
        "\n".join(text_model.sentences(text_model.RANDOM, 200, 2)) + "\n")
    (root / "inputs" / "positive.txt").write_text("\n".join(text_model.sentences(text_model.POSITIVE, 6, 3)) + "\n")
    tiny_model.save_images(tiny_model.noise(4, torch.Generator().manual_seed(0)), root / "concepts" / "random_0")
    session = TCAVSession(TCAVConfig(concepts=root / "concepts", inputs=root / "inputs", random_sets=5,
                                     pseudo_concepts=K, cache_dir=tmp_path / "cache", null="pseudo",
                                     classes={"positive": 1}))
    calls = _counting(session)
    result = session.score(text_model.WordBagNet(), "positive", target="positive", layers=["pooled"],
                           tokenizer=text_model.tokenize)
    members = [c.concept for c in calls[1:]]
    assert len(members) == K and all(m.texts is not None and len(m) == 8 for m in members)
    used = {t for s in session.random_set_concepts(8, kind="text", tokenizer=text_model.tokenize)
            for t in s.texts or ()}
    assert not used & {t for m in members for t in m.texts or ()}  # never a sentence of the random sets in use
    assert len(result.layers[0].null_statistics) == K and result.layers[0].significant
