"""The session: work done once per run, the registry behind fixture-free assertions, records, and a class
index without inputs (a wrong index is reported as such, not as a missing input folder)."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from pytest_tcav import Concept, TCAVSession, assert_concept_significant
from pytest_tcav.config import TCAVConfig
from pytest_tcav.errors import ConceptDataError, ConfigurationError, TargetError
from pytest_tcav.session import registry
from tests.helpers import tiny_model
from tests.helpers.checks import current
from tests.helpers.plugin_helpers import make_project


@pytest.fixture(scope="module")
def data() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return {"horizontal": tiny_model.stripes(12, gen), "noise": tiny_model.noise(12, gen),
            "inputs": tiny_model.stripes(16, gen), "pool": tiny_model.noise(60, gen)}


def test_a_repeated_check_recomputes_nothing(data: dict[str, torch.Tensor]) -> None:
    session = TCAVSession()
    model = tiny_model.EdgeNet()
    kwargs = dict(target=1, layers=["conv", "relu"], inputs=data["inputs"], random_pool=data["pool"], random_sets=5)
    first = session.score(model, Concept("horizontal", data["horizontal"]), **kwargs)
    computed = dict(session.store.computed)
    assert computed["activations"] == 2 * 6 and computed["gradients"] == 2  # 6 sets and 1 input set, 2 layers
    again = session.score(tiny_model.EdgeNet(), Concept("horizontal", data["horizontal"]), **kwargs)
    assert dict(session.store.computed) == computed  # a new instance with the same weights: nothing new
    assert session.store.reused["cav"] >= 2 * (5 + 10)  # per layer: 5 concept and 10 random-pair CAVs
    assert again == first
    # Another concept against the same random sets: only its own activations and CAVs are new.
    session.score(model, Concept("noise", data["noise"]), **kwargs)
    new = {k: session.store.computed[k] - computed.get(k, 0) for k in session.store.computed}
    assert new == {"activations": 2, "gradients": 0, "cav": 2 * 5}


def test_records_cross_as_plain_json(data: dict[str, torch.Tensor]) -> None:
    session = TCAVSession()
    with current(session):
        assert_concept_significant(tiny_model.EdgeNet(), Concept("horizontal", data["horizontal"]), target=1,
                                   layers="relu", inputs=data["inputs"], random_pool=data["pool"], random_sets=5)
    (record,) = session.records
    plain = record.to_dict()
    assert json.loads(json.dumps(plain)) == plain and type(record).from_dict(plain).to_dict() == plain
    assert record.nodeid is None and record.outcome == "passed" and record.concept == "horizontal"
    assert [r.layer for r in record.results] == ["relu"]


def test_registry_is_a_stack_with_a_lazy_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_active", [])
    monkeypatch.setattr(registry, "_default", None)
    default = registry.active_handle()
    assert default is registry.active_handle() and not default.built
    outer, inner = registry.SessionHandle(TCAVConfig()), registry.SessionHandle(TCAVConfig(seed=3))
    registry.activate(outer)
    registry.activate(inner)
    assert registry.active_handle() is inner
    assert registry.current_session().config.seed == 3 and inner.built and not outer.built
    registry.deactivate(inner)
    assert registry.active_handle() is outer
    registry.deactivate(outer)
    registry.deactivate(outer)  # already gone: nothing happens
    assert registry.active_handle() is default


def test_the_plugin_session_is_the_assertions_session(tcav: TCAVSession) -> None:
    assert registry.current_session() is tcav
    assert tcav.device == torch.device("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.slow  # runs pytest
def test_work_is_shared_between_tests(pytester: pytest.Pytester) -> None:
    make_project(pytester)
    pytester.makepyfile(test_shared="""
        import tiny_model
        from pytest_tcav import assert_concept_insignificant, assert_concept_significant
        from pytest_tcav.session.registry import current_session


        def test_first(model, tcav):
            assert current_session() is tcav
            assert_concept_significant(model, "horizontal", target=1, layers=["relu"])


        def test_second_recomputes_nothing(tcav):
            before, reused = dict(tcav.store.computed), sum(tcav.store.reused.values())
            assert_concept_significant(tiny_model.EdgeNet(), "horizontal", target="horizontal", layers="relu")
            assert dict(tcav.store.computed) == before
            assert sum(tcav.store.reused.values()) > reused


        def test_another_concept_reuses_the_random_sets(model, tcav):
            before = dict(tcav.store.computed)
            assert_concept_insignificant(model, "noisy", target=1, layers="relu")
            new = {k: tcav.store.computed[k] - before.get(k, 0) for k in tcav.store.computed}
            assert new == {"activations": 1, "gradients": 0, "cav": 5}


        def test_folders_are_read_once(tcav_concepts):
            assert tcav_concepts.concept("horizontal") is tcav_concepts.concept("horizontal")
    """)
    pytester.runpytest().assert_outcomes(passed=4)


@pytest.mark.slow  # runs pytest
def test_assertions_outside_pytest(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(tiny_model=(__import__("pathlib").Path(tiny_model.__file__).read_text()))
    script = pytester.makepyfile(script=textwrap.dedent("""
        import torch
        import tiny_model
        from pytest_tcav import ConceptTestFailure, assert_concept_significant
        from pytest_tcav.session.registry import current_session

        gen = torch.Generator().manual_seed(0)
        model = tiny_model.EdgeNet()
        kwargs = dict(target=1, layers="relu", inputs=tiny_model.stripes(16, gen),
                      random_pool=tiny_model.noise(60, gen), random_sets=5)
        result = assert_concept_significant(model, tiny_model.stripes(12, gen), **kwargs)
        try:
            assert_concept_significant(model, tiny_model.noise(12, gen), **kwargs)
        except ConceptTestFailure as failure:
            print("FAILED AS EXPECTED", failure.result.concept)
        print("CHECKS", len(current_session().records), result.layer("relu").score)
    """))
    result = pytester.run(sys.executable, str(script))
    assert result.ret == 0, result.stderr.str()
    assert "FAILED AS EXPECTED tensor" in result.outlines
    assert "CHECKS 2 1.0" in result.outlines


def test_assert_functions_accept_the_session_knobs() -> None:
    """The fixture shortcuts and the functions take the same keywords."""
    import inspect

    from pytest_tcav.api import assert_concept_insignificant

    significant = inspect.signature(assert_concept_significant).parameters
    insignificant = inspect.signature(assert_concept_insignificant).parameters
    score = inspect.signature(TCAVSession.score).parameters
    assert [*significant, "margin"] == list(insignificant)  # the equivalence margin is the insignificance check's
    assert set(score) - {"self", "margin", "min_cav_accuracy"} <= set(significant)
    assert set(significant) - set(score) == {"require", "score"}
    # the same default direction: each assertion is the other's negation
    assert significant["direction"].default == "positive" and insignificant["direction"].default == "positive"


# -- a class index without inputs ----------------------------------------------------------


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
