"""A class index checked against the model, when the missing input folder is only the symptom.

Without ``inputs=``, a class index's inputs come from its folder in the input library.  When that
folder is missing because the index is wrong (``target=7`` for a model with two classes), saying
that folder ``7`` is missing sends the user looking for data; the index is the error.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from pytest_tcav.engine.activations import Target, concept_activations
from pytest_tcav.engine.examples import ConceptLike, as_concept
from pytest_tcav.errors import TargetError


def target_out_of_range(model: nn.Module, concept: ConceptLike, target: Target, transform: Any = None
                        ) -> TargetError | None:
    """The error for a class index the model does not have, found by running it on one concept example.

    ``None`` when the index is in range, or when the model's output tells nothing (the probe fails):
    the caller then raises the error it had.
    """
    if callable(target) or isinstance(target, bool):
        return None
    try:
        example = as_concept(concept, transform=transform, name="probe").examples[:1]
        output = concept_activations(model, {"output": model}, example, batch_size=1)["output"]
        outputs = int(output.shape[1])
    except Exception:  # noqa: BLE001 - the probe only refines an error already being raised
        return None
    if 0 <= int(target) < outputs:
        return None
    return TargetError(f"target {int(target)} is out of range for a model with {outputs} outputs (valid: "
                       f"0..{outputs - 1}); check the class index, or name the class through tcav_classes")
