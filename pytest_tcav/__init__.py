"""pytest-tcav: concept tests (TCAV, Kim et al. 2018) for PyTorch models, as pytest assertions."""

from __future__ import annotations

__version__ = "0.1.0"

from .cavs import CAV, CAVTrainer, HingeSGDTrainer, LogisticTrainer, MeanDifferenceTrainer, SklearnSGDTrainer
from .concepts import Concept, as_concept, load_image_folder, sample_random_sets
from .engine import TCAV
from .errors import (
    ConceptDataError,
    ConfigurationError,
    InsufficientDataError,
    LayerError,
    NonFiniteError,
    TargetError,
    TCAVError,
)
from .results import LayerResult, TCAVResult
from .store import MemoryStore

__all__ = [
    "CAV", "CAVTrainer", "Concept", "ConceptDataError", "ConfigurationError", "HingeSGDTrainer",
    "InsufficientDataError", "LayerError", "LayerResult", "LogisticTrainer", "MeanDifferenceTrainer",
    "MemoryStore", "NonFiniteError", "SklearnSGDTrainer", "TCAV", "TCAVError", "TCAVResult", "TargetError",
    "__version__", "as_concept", "load_image_folder", "sample_random_sets",
]
