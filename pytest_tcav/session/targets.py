"""A class index checked against the model, when the missing input folder is only the symptom.

Without ``inputs=``, a class index's inputs come from its folder in the input library.  When that
folder is missing because the index is wrong (``target=7`` for a model with two classes), saying
that folder ``7`` is missing sends the user looking for data; the index is the error.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from torch import nn

from pytest_tcav.engine.activations import Target, concept_activations
from pytest_tcav.engine.batches import take
from pytest_tcav.engine.examples import ConceptLike, as_concept
from pytest_tcav.errors import ConceptDataError, TargetError


@contextmanager
def index_in_range(model: nn.Module, concept: ConceptLike, target: Target | None, transform: Any = None,
                   forward_kwargs: Mapping[str, Any] | None = None) -> Iterator[None]:
    """Around finding a target's inputs: a :class:`ConceptDataError` there becomes the out-of-range
    target's :class:`TargetError` when the model has no class ``target`` (``None``: inputs were given)."""
    try:
        yield
    except ConceptDataError:
        error = target_out_of_range(model, concept, target, transform, forward_kwargs)
        if error is not None:
            raise error from None
        raise


def target_out_of_range(model: nn.Module, concept: ConceptLike, target: Target | None, transform: Any = None,
                        forward_kwargs: Mapping[str, Any] | None = None) -> TargetError | None:
    """The error for a class index the model does not have, found by running it on one concept example.

    ``None`` when the index is in range, or when the model's output tells nothing (an output that
    is not one ``(batch, classes)`` tensor, or a probe that fails): the caller keeps the error it had.
    """
    if target is None or callable(target) or isinstance(target, bool):
        return None
    try:
        example = take(as_concept(concept, transform=transform, name="probe").examples, slice(0, 1))
        output = concept_activations(model, {"output": model}, example, batch_size=1,
                                     forward_kwargs=forward_kwargs)["output"]
        outputs = int(output.shape[1])
    except Exception:  # noqa: BLE001 - the probe only refines an error already being raised
        return None
    if 0 <= int(target) < outputs:
        return None
    return TargetError(f"target {int(target)} is out of range for a model with {outputs} outputs (valid: "
                       f"0..{outputs - 1}); check the class index, or name the class through tcav_classes")
