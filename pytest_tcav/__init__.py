"""pytest-tcav: concept tests (TCAV, Kim et al. 2018) for PyTorch models, as pytest assertions.

Names are imported on first use (PEP 562): pytest loads this package's plugin
in every run of every project where it is installed, and importing the engine
means importing torch, scikit-learn and scipy, which takes seconds.  A run
that tests no concept should not pay for them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "CAV": "cavs",
    "CAVTrainer": "cavs",
    "HingeSGDTrainer": "cavs",
    "LogisticTrainer": "cavs",
    "MeanDifferenceTrainer": "cavs",
    "SklearnSGDTrainer": "cavs",
    "Concept": "concepts",
    "as_concept": "concepts",
    "load_image_folder": "concepts",
    "sample_random_sets": "concepts",
    "TCAV": "engine",
    "ConceptDataError": "errors",
    "ConfigurationError": "errors",
    "InsufficientDataError": "errors",
    "LayerError": "errors",
    "NonFiniteError": "errors",
    "TargetError": "errors",
    "TCAVDataWarning": "errors",
    "TCAVError": "errors",
    "LayerResult": "results",
    "TCAVResult": "results",
    "MemoryStore": "store",
    "ConceptTestFailure": "assertions",
    "assert_concept_insignificant": "assertions",
    "assert_concept_significant": "assertions",
    "assert_concept_stable": "baselines",
    "BaselineError": "baselines",
    "ConceptStabilityFailure": "baselines",
    "StabilityResult": "baselines",
    "TCAVSession": "session",
    "TCAVConfig": "config",
    "ConceptLibrary": "library",
    "InputLibrary": "library",
}

__all__ = sorted([*_EXPORTS, "__version__"])


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


if TYPE_CHECKING:
    from .assertions import ConceptTestFailure, assert_concept_insignificant, assert_concept_significant
    from .baselines import BaselineError, ConceptStabilityFailure, StabilityResult, assert_concept_stable
    from .cavs import CAV, CAVTrainer, HingeSGDTrainer, LogisticTrainer, MeanDifferenceTrainer, SklearnSGDTrainer
    from .concepts import Concept, as_concept, load_image_folder, sample_random_sets
    from .config import TCAVConfig
    from .engine import TCAV
    from .errors import (
        ConceptDataError,
        ConfigurationError,
        InsufficientDataError,
        LayerError,
        NonFiniteError,
        TargetError,
        TCAVDataWarning,
        TCAVError,
    )
    from .library import ConceptLibrary, InputLibrary
    from .results import LayerResult, TCAVResult
    from .session import TCAVSession
    from .store import MemoryStore
