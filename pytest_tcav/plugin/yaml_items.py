"""Declarative concept tests: ``tcav_*.yaml`` files collected as pytest items.

People who do not write Python (reviewers, domain experts) should be able to
read and change what a model is expected to rely on.  Each expectation of a
file is one pytest item (``tcav_zebra.yaml::striped::significant``) with the
``tcav`` marker, run by the same code as the Python assertions
(:func:`~pytest_tcav.checks.significance.check_concept`,
:func:`~pytest_tcav.checks.stability.check_stable`) on the request
:func:`~pytest_tcav.checks.yaml_schema.check_spec` builds, so it fails with the same message.

The file format, and the parser that checks it, are in
:mod:`pytest_tcav.checks.yaml_schema` (documented in docs/yaml-tests.md).  It,
yaml and the checks are imported only once a file matches the pattern: the
plugin imports this module in every pytest run of every project.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_tcav.checks.baseline_names import BASELINE_DIR
from pytest_tcav.errors import (
    ConceptTestFailure,
    ConfigurationError,
    TCAVError,
    YamlSpecError,
    shown_path,
)
from pytest_tcav.plugin.stash import HANDLE_KEY

if TYPE_CHECKING:
    from torch import nn

    from pytest_tcav.checks.yaml_schema import ConceptSpec, ExpectationSpec, FileSpec
    from pytest_tcav.session.session import TCAVSession

#: The ini key, and its default, of the file names collected as declarative tests.
PATTERN_INI = "tcav_yaml_pattern"
DEFAULT_PATTERNS = ("tcav_*.yaml",)


# -- running ------------------------------------------------------------------------------


def load_model(spec: FileSpec, session: TCAVSession) -> nn.Module:
    """Call the file's model loader (once per session and arguments), on ``tcav.device``, in eval mode."""
    from torch import nn

    from pytest_tcav.checks.yaml_schema import import_loader

    key = repr((spec.model, spec.model_args, sorted(spec.model_kwargs.items())))
    models = session.loaded_models
    if key not in models:
        loader = import_loader(spec)
        model = loader(*spec.model_args, **spec.model_kwargs)
        if not isinstance(model, nn.Module):
            raise ConfigurationError(f"{shown_path(spec.path)}:{spec.line('model')}: model loader {spec.model!r} "
                                     f"returned {type(model).__name__}, not a torch.nn.Module")
        models[key] = model.to(session.device).eval()
    return models[key]


class TCAVYamlFile(pytest.File):
    """A ``tcav_*.yaml`` file: one collector per concept, one item per expectation."""

    spec: FileSpec | None = None

    def collect(self) -> Iterator[TCAVYamlConcept]:
        from pytest_tcav.checks.yaml_schema import load_spec

        self.spec = load_spec(self.path)
        for concept in self.spec.concepts:
            yield TCAVYamlConcept.from_parent(self, name=concept.name, spec=self.spec, concept=concept)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        if isinstance(excinfo.value, YamlSpecError):
            return f"{excinfo.value}\n(see docs/yaml-tests.md for the format)"
        return super().repr_failure(excinfo)


class TCAVYamlConcept(pytest.Collector):
    """The expectations of one concept of a YAML test file."""

    def __init__(self, *, spec: FileSpec, concept: ConceptSpec, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.spec = spec
        self.concept = concept

    def collect(self) -> Iterator[TCAVYamlItem]:
        for expectation in self.concept.expectations:
            yield TCAVYamlItem.from_parent(self, name=expectation.name, spec=self.spec, concept=self.concept,
                                           expectation=expectation)


class TCAVYamlItem(pytest.Item):
    """One expectation of one concept, run like the matching Python assertion."""

    def __init__(self, *, spec: FileSpec, concept: ConceptSpec, expectation: ExpectationSpec, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.spec = spec
        self.concept = concept
        self.expectation = expectation
        self.add_marker(pytest.mark.tcav)

    def _session(self) -> TCAVSession:
        return self.config.stash[HANDLE_KEY].get()

    def runtest(self) -> None:
        from pytest_tcav.checks.significance import check_concept
        from pytest_tcav.checks.stability import check_stable
        from pytest_tcav.checks.yaml_schema import check_spec
        from pytest_tcav.engine.spec import settle

        session = self._session()
        try:  # a model loader that raises: the check is still in the summary, as an error
            model = load_model(self.spec, session)
            spec = settle(check_spec(self.spec, self.concept, self.expectation), session.config)
        except Exception as exc:
            raise self._recorded(session, exc)  # noqa: B904
        if spec.expectation == "stable":
            check_stable(session, model, spec)
        else:
            check_concept(session, model, spec)

    def _recorded(self, session: TCAVSession, exc: BaseException) -> BaseException:
        """Record the check as an error before it could start (see :mod:`pytest_tcav.checks.raised`)."""
        from pytest_tcav.checks import raised, records

        kind, options = self.expectation.kind, self.expectation.options
        expectation = {"direction": "significant", "stable": "stable"}.get(kind, kind)
        direction = options.get("direction") or ("positive" if expectation == "significant" else "either")
        entry = records.check_record(self.concept.name, self.spec.target, list(self.spec.layers), expectation,
                                     direction, options.get("require", self.spec.require))
        return raised.recorded(session, entry, exc)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        """The assertion's own message under the expectation's file and line, without Python frames."""
        exc = excinfo.value
        if isinstance(exc, (ConceptTestFailure, TCAVError)):
            where = f"{self.nodeid.split('::')[0]}:{self.expectation.line}"  # the file, from the rootdir
            kind = "expectation failed" if isinstance(exc, ConceptTestFailure) else "could not run"
            head = f"{where}: {self.concept.name}: {self.expectation.name}: {kind}"
            return f"{head}\n\n{type(exc).__name__}: {exc}"
        return super().repr_failure(excinfo)

    def _traceback_filter(self, excinfo: pytest.ExceptionInfo[BaseException]) -> Any:
        """For an unexpected error (a bug in a model loader or model), show no pytest or pluggy frames.

        A Python test's traceback starts at the test function; this item has no
        user function, so the frames worth reading start in the loader or model.
        """
        import _pytest
        import pluggy

        hidden = tuple(str(Path(str(module.__file__)).parent) + os.sep for module in (_pytest, pluggy))
        traceback = excinfo.traceback.filter(excinfo)
        return traceback.filter(lambda entry: not str(entry.path).startswith(hidden))

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, self.expectation.line - 1, f"{self.concept.name}::{self.expectation.name}"


def patterns(config: pytest.Config) -> list[str]:
    """The file-name patterns of declarative tests (ini ``tcav_yaml_pattern``; empty: none)."""
    try:
        value = config.getini(PATTERN_INI)
    except ValueError:  # the plugin's ini keys are not registered (another plugin calls this)
        return list(DEFAULT_PATTERNS)
    if value is None:
        return list(DEFAULT_PATTERNS)
    return [str(v) for v in value]


def collect_file(file_path: Path, parent: pytest.Collector) -> TCAVYamlFile | None:
    """The ``pytest_collect_file`` hook's work: a matching YAML file outside ``tcav_baselines/``."""
    name = file_path.name
    if not name.endswith((".yaml", ".yml")):
        return None
    if not any(fnmatch.fnmatch(name, pattern) for pattern in patterns(parent.config)):
        return None
    if file_path.parent.name == BASELINE_DIR:
        return None
    return TCAVYamlFile.from_parent(parent, path=file_path)
