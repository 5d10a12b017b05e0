"""pytest-tcav: concept tests (TCAV, Kim et al. 2018) for PyTorch models, as pytest assertions.

Names are imported on first use (PEP 562): pytest loads this package's plugin
in every run of every project where it is installed, and importing the engine
means importing torch, scikit-learn and scipy, which takes seconds.  A run
that tests no concept should not pay for them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from pytest_tcav._version import __version__

_EXPORTS: dict[str, str] = {
    "CAV": "pytest_tcav.engine.cav",
    "CAVTrainer": "pytest_tcav.engine.cav",
    "HingeSGDTrainer": "pytest_tcav.engine.trainers",
    "LogisticTrainer": "pytest_tcav.engine.trainers",
    "MeanDifferenceTrainer": "pytest_tcav.engine.trainers",
    "SklearnSGDTrainer": "pytest_tcav.engine.trainers",
    "Concept": "pytest_tcav.engine.examples",
    "as_concept": "pytest_tcav.engine.examples",
    "load_image_folder": "pytest_tcav.engine.examples",
    "sample_random_sets": "pytest_tcav.engine.examples",
    "TCAV": "pytest_tcav.engine.tcav",
    "NextToken": "pytest_tcav.engine.outputs",
    "next_token": "pytest_tcav.engine.outputs",
    "LayerResult": "pytest_tcav.engine.results",
    "TCAVResult": "pytest_tcav.engine.results",
    "BaselineError": "pytest_tcav.errors",
    "ConceptDataError": "pytest_tcav.errors",
    "ConceptStabilityFailure": "pytest_tcav.errors",
    "ConceptTestFailure": "pytest_tcav.errors",
    "ConfigurationError": "pytest_tcav.errors",
    "InsufficientDataError": "pytest_tcav.errors",
    "LayerError": "pytest_tcav.errors",
    "NonFiniteError": "pytest_tcav.errors",
    "TargetError": "pytest_tcav.errors",
    "TCAVCacheWarning": "pytest_tcav.errors",
    "TCAVCalibrationWarning": "pytest_tcav.errors",
    "TCAVPowerWarning": "pytest_tcav.errors",
    "TCAVDataWarning": "pytest_tcav.errors",
    "TCAVError": "pytest_tcav.errors",
    "YamlSpecError": "pytest_tcav.errors",
    "MemoryStore": "pytest_tcav.storage.memory",
    "assert_concept_insignificant": "pytest_tcav.api",
    "assert_concept_significant": "pytest_tcav.api",
    "assert_concept_stable": "pytest_tcav.api",
    "StabilityResult": "pytest_tcav.checks.stability",
    "TCAVSession": "pytest_tcav.session.session",
    "TCAVConfig": "pytest_tcav.config",
    "ConceptLibrary": "pytest_tcav.session.library",
    "InputLibrary": "pytest_tcav.session.library",
}

__all__ = sorted([*_EXPORTS, "__version__"])


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


if TYPE_CHECKING:
    from pytest_tcav.api import (
        assert_concept_insignificant,
        assert_concept_significant,
        assert_concept_stable,
    )
    from pytest_tcav.checks.stability import (
        StabilityResult,
    )
    from pytest_tcav.config import (
        TCAVConfig,
    )
    from pytest_tcav.engine.cav import (
        CAV,
        CAVTrainer,
    )
    from pytest_tcav.engine.examples import (
        Concept,
        as_concept,
        load_image_folder,
        sample_random_sets,
    )
    from pytest_tcav.engine.outputs import (
        NextToken,
        next_token,
    )
    from pytest_tcav.engine.results import (
        LayerResult,
        TCAVResult,
    )
    from pytest_tcav.engine.tcav import (
        TCAV,
    )
    from pytest_tcav.engine.trainers import (
        HingeSGDTrainer,
        LogisticTrainer,
        MeanDifferenceTrainer,
        SklearnSGDTrainer,
    )
    from pytest_tcav.errors import (
        BaselineError,
        ConceptDataError,
        ConceptStabilityFailure,
        ConceptTestFailure,
        ConfigurationError,
        InsufficientDataError,
        LayerError,
        NonFiniteError,
        TargetError,
        TCAVCacheWarning,
        TCAVCalibrationWarning,
        TCAVDataWarning,
        TCAVError,
        TCAVPowerWarning,
        YamlSpecError,
    )
    from pytest_tcav.session.library import (
        ConceptLibrary,
        InputLibrary,
    )
    from pytest_tcav.session.session import (
        TCAVSession,
    )
    from pytest_tcav.storage.memory import (
        MemoryStore,
    )
