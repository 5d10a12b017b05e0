"""Fixtures of the example suite: the models under test.

This is the pattern for your own suite. pytest-tcav gives you the concept
library, the input library, the engine and its cache (the ``tcav`` fixture);
*you* provide the model, with a fixture that

* is session-scoped, so the weights are loaded once per run (the engine's
  cache keys on the weights' content, so every test of the run shares the
  work done on the same model);
* returns the model in eval mode;
* puts it on ``tcav.device`` (``tcav_device`` / ``--tcav-device``, else CUDA
  when there is one, else the CPU);
* imports torch and the model's code inside the fixture, not at the top:
  under pytest-xdist the controller imports every conftest but runs no test,
  and the workers start only once it has (docs/scaling.md).

In a project with one model this is usually a single fixture called
``model``. Here there are three: the image model as it should be, the
"retrained" one that picked up the watermark shortcut, and the text model
(a pretrained transformer with a sentiment head).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from torch import nn


@pytest.fixture(scope="session")
def good_model(tcav) -> nn.Module:
    """The texture classifier as it should be: zebra by stripes, leopard by dots, snake by zigzags."""
    from model import load_model  # example_suite/ is on sys.path (pythonpath = . in pytest.ini)

    return load_model("good").to(tcav.device)


@pytest.fixture(scope="session")
def shortcut_model(tcav) -> nn.Module:
    """The retrained classifier: it learnt the watermark in the corner as its "zebra" cue."""
    from model import load_model

    return load_model("shortcut").to(tcav.device)


@pytest.fixture(scope="session")
def sentiment_model(tcav) -> nn.Module:
    """The sentiment classifier: packaged all-MiniLM-L6-v2 + a trained head; positive by positive adjectives."""
    # Imported here, not at the top: transformers loads only when a text test runs.
    from sentiment_model import load_model as load_sentiment_model

    return load_sentiment_model().to(tcav.device)
