"""Batched example structures: one tensor, a tuple of tensors, or a mapping of names to tensors.

Models take their examples in one of three shapes: ``model(x)``, ``model(*parts)``
(an image and a mask, two modalities) or ``model(**batch)`` (a tokenizer's
``BatchEncoding``: ``input_ids``, ``attention_mask``...).  Every operation the
engine needs on a set of examples (its length, a subset, batches, moving to a
device, content hashes) is defined here once for the three, so the rest of the
engine never asks which one it holds.  Every part is batched along its first
dimension, with one length for all parts.

A plain tensor stays exactly the tensor it was: its fingerprint and example
hashes are the ones of earlier versions, so existing caches stay valid.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from pytest_tcav.engine import fingerprints
from pytest_tcav.errors import ConceptDataError, ConfigurationError

#: A set of examples: a tensor, a tuple of tensors (``model(*parts)``) or a dict of them (``model(**batch)``).
Examples = torch.Tensor | tuple[torch.Tensor, ...] | dict[str, torch.Tensor]

#: The part of a mapping that says which positions are real tokens (1) and which are padding (0).
MASK_KEY = "attention_mask"


def parts(examples: Examples) -> list[tuple[str, torch.Tensor]]:
    """Every tensor of a set with the name messages use for it (``''`` for a plain tensor)."""
    if isinstance(examples, torch.Tensor):
        return [("", examples)]
    if isinstance(examples, dict):
        return [(repr(k), v) for k, v in examples.items()]
    return [(f"[{k}]", v) for k, v in enumerate(examples)]


def layout(examples: Examples) -> tuple[str, tuple[str, ...]]:
    """The structure without the data: ``('tensor', ())``, ``('tuple', ('[0]', '[1]'))``, ``('mapping', keys)``."""
    if isinstance(examples, torch.Tensor):
        return "tensor", ()
    if isinstance(examples, dict):
        return "mapping", tuple(sorted(examples))
    return "tuple", tuple(name for name, _ in parts(examples))


def as_examples(value: Any, label: str) -> Examples:
    """Check a tensor, tuple/list or mapping of tensors and bring it to the CPU as a structure.

    Every part must be a tensor with the examples along its first dimension,
    all of one length; the error names the part that differs.  A tuple of one
    tensor is that tensor (``model(*(x,))`` is ``model(x)``).
    """
    if isinstance(value, torch.Tensor):
        structure: Examples = value.detach().cpu()
    elif isinstance(value, Mapping):
        if not value:
            raise ConceptDataError(f"{label}: the mapping of inputs is empty")
        structure = {str(k): _part(label, repr(k), v) for k, v in value.items()}
    elif isinstance(value, (tuple, list)):
        if not value:
            raise ConceptDataError(f"{label}: the tuple of inputs is empty")
        structure = tuple(_part(label, f"[{k}]", v) for k, v in enumerate(value))
        if len(structure) == 1:  # model(*(x,)) is model(x): one set, one fingerprint (TensorDataset(x) items)
            structure = structure[0]
    else:
        raise ConceptDataError(f"{label}: examples must be a tensor, a tuple of tensors or a mapping of "
                               f"names to tensors, got {type(value).__name__}")
    check(structure, label)
    return structure


def _part(label: str, name: str, value: Any) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        hint = (" (a tokenizer gives tensors when called with return_tensors='pt')"
                if isinstance(value, (list, tuple)) else "")
        raise ConceptDataError(f"{label}: part {name} is a {type(value).__name__}, not a tensor{hint}")
    return value.detach().cpu()


def check(examples: Examples, label: str) -> None:
    """Every part batched along its first dimension, with one length, and at least one example."""
    named = parts(examples)
    for name, tensor in named:
        if tensor.dim() < 1:
            what = f"part {name}" if name else "the tensor"
            raise ConceptDataError(f"{label}: {what} is a scalar; examples are batched along the first dimension")
    lengths = [(name, int(t.shape[0])) for name, t in named]
    first_name, n = lengths[0]
    for name, size in lengths[1:]:
        if size != n:
            raise ConceptDataError(
                f"{label}: part {name} has {size} examples (first dimension) but part {first_name} has {n}; "
                "every part of a set holds the same examples along its first dimension"
            )
    if n == 0:
        raise ConceptDataError(f"{label} has no examples")


def length(examples: Examples) -> int:
    return int(parts(examples)[0][1].shape[0])


def map_parts(examples: Examples, function: Any) -> Examples:
    if isinstance(examples, torch.Tensor):
        return function(examples)
    if isinstance(examples, dict):
        return {k: function(v) for k, v in examples.items()}
    return tuple(function(v) for v in examples)


def take(examples: Examples, index: torch.Tensor | slice) -> Examples:
    """The examples at ``index`` (a tensor of indices or a slice) from every part."""
    return map_parts(examples, lambda t: t[index])


def batches(examples: Examples, batch_size: int) -> Iterator[Examples]:
    if batch_size < 1:
        raise ConfigurationError(f"batch_size must be positive, got {batch_size}")
    for start in range(0, length(examples), batch_size):
        yield take(examples, slice(start, start + batch_size))


def to(examples: Examples, device: torch.device) -> Examples:
    return map_parts(examples, lambda t: t.to(device))


def concat(chunks: Sequence[Examples]) -> Examples:
    """Chunks of one layout joined along the first dimension."""
    first = chunks[0]
    if isinstance(first, torch.Tensor):
        return torch.cat(list(chunks))  # type: ignore[arg-type]
    if isinstance(first, dict):
        return {k: torch.cat([c[k] for c in chunks]) for k in first}  # type: ignore[call-overload, index]
    return tuple(torch.cat([c[k] for c in chunks]) for k in range(len(first)))  # type: ignore[index]


def stack(items: Sequence[Any], label: str) -> Examples:
    """Single examples (tensors, tuples or mappings of tensors, e.g. a Dataset's items) stacked into a set."""
    first = items[0]
    try:
        if isinstance(first, torch.Tensor):
            return as_examples(torch.stack(list(items)), label)
        if isinstance(first, Mapping):
            return as_examples({k: torch.stack([torch.as_tensor(it[k]) for it in items]) for k in first}, label)
        if isinstance(first, (tuple, list)):
            return as_examples(tuple(torch.stack([torch.as_tensor(it[k]) for it in items])
                                     for k in range(len(first))), label)
    except (RuntimeError, KeyError, IndexError, TypeError) as exc:
        raise ConceptDataError(f"{label}: its items cannot be stacked into one batch ({type(exc).__name__}: "
                               f"{exc}); every item needs the same parts, of one shape each") from None
    raise ConceptDataError(f"{label}: items must be tensors, tuples of tensors or mappings of tensors, "
                           f"got {type(first).__name__}")


def call(model: nn.Module, examples: Examples, forward_kwargs: Mapping[str, Any] | None = None) -> Any:
    """Run the model on a batch: ``model(x)``, ``model(*parts)`` or ``model(**batch)``, plus fixed keywords."""
    extra = dict(forward_kwargs or {})
    if isinstance(examples, torch.Tensor):
        return model(examples, **extra)
    if isinstance(examples, dict):
        return model(**examples, **extra)
    return model(*examples, **extra)


def describe(examples: Examples) -> str:
    """``shape (3, 32, 32), torch.float32`` or ``parts 'input_ids' (12,) int64, ...``: for messages."""
    if isinstance(examples, torch.Tensor):
        return f"shape {tuple(examples.shape[1:])}, {examples.dtype}"
    return "parts " + ", ".join(f"{name} {tuple(t.shape[1:])} {str(t.dtype).replace('torch.', '')}"
                                for name, t in parts(examples))


def attention_mask(examples: Examples) -> torch.Tensor | None:
    """The mapping's ``attention_mask`` as a (examples, positions) tensor of 0/1, if it has one."""
    if isinstance(examples, dict) and MASK_KEY in examples:
        mask = examples[MASK_KEY]
        if mask.dim() == 2:
            return mask
    return None


def trim_padding(examples: Examples) -> Examples:
    """Drop the trailing positions that are padding in every example (by the ``attention_mask``).

    With a pooling that ignores padding, a set padded to 12 tokens and the
    same set padded to 20 are the same set: trimming both to their longest
    real example gives them one content, hence one fingerprint, one cache
    entry and one seed.  Parts whose second dimension is not the mask's
    length are left as they are.
    """
    mask = attention_mask(examples)
    if mask is None:
        return examples
    real = torch.nonzero(mask.ne(0).any(0)).flatten()
    keep = int(real.max()) + 1 if len(real) else 1
    width = int(mask.shape[1])
    if keep == width:
        return examples
    assert isinstance(examples, dict)
    return {k: v[:, :keep] if v.dim() >= 2 and v.shape[1] == width else v for k, v in examples.items()}


def fingerprint(examples: Examples) -> str:
    """A content hash: a plain tensor's is :func:`fingerprints.fingerprint_tensor`, as always."""
    if isinstance(examples, torch.Tensor):
        return fingerprints.fingerprint_tensor(examples)
    kind, _ = layout(examples)
    h = hashlib.sha256(f"structure:{kind}".encode())
    named = sorted(parts(examples)) if isinstance(examples, dict) else parts(examples)
    for name, tensor in named:
        h.update(f"|{name}:{fingerprints.fingerprint_tensor(tensor)}".encode())
    return h.hexdigest()


def example_digests(examples: Examples) -> frozenset[bytes]:
    """One content hash per distinct example, over every part."""
    if isinstance(examples, torch.Tensor):
        return fingerprints.example_digests(examples)
    named = sorted(parts(examples)) if isinstance(examples, dict) else parts(examples)
    return fingerprints.example_digests_of_parts([t for _, t in named])
