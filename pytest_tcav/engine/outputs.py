"""From what a model returns to one scalar per example: the target.

Models return a tensor, a mapping (a dict, a Hugging Face ``ModelOutput``), a
dataclass or a tuple.  The rule, in this order:

- a callable ``target`` receives the model's raw output, whatever it is, and
  picks its own scalar per example;
- otherwise ``output=`` (a key, an attribute name or an index, or a callable
  of the raw output) picks the tensor a class index reads;
- otherwise a tensor is itself; a mapping or dataclass with ``logits`` gives
  its logits; a tuple or list gives its first tensor.

Anything else is an error naming what the model returned and how to pick.

A :func:`next_token` target (a :class:`NextToken`) is a callable that also
receives the batch's ``attention_mask``: it reads a language model's logits
of one token at each example's last real position, wherever the padding is.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from pytest_tcav.errors import ConfigurationError, TargetError

Target = int | Callable[[Any], torch.Tensor]
#: How to pick the tensor a class-index target reads from a structured output.
Output = str | int | Callable[[Any], torch.Tensor] | None


def _describe(value: Any) -> str:
    kind = type(value).__name__
    if isinstance(value, Mapping):
        return f"{kind} with keys {', '.join(repr(k) for k in list(value)[:8])}"
    if dataclasses.is_dataclass(value):
        return f"{kind} with fields {', '.join(repr(f.name) for f in dataclasses.fields(value)[:8])}"
    if isinstance(value, (tuple, list)):
        return f"{kind} of ({', '.join(type(v).__name__ for v in value[:6])})"
    return kind


def _pick(raw: Any, output: str | int) -> Any:
    if isinstance(raw, Mapping) and output in raw:
        return raw[output]
    if isinstance(output, str) and not isinstance(raw, Mapping) and hasattr(raw, output):
        return getattr(raw, output)
    if isinstance(output, int) and not isinstance(output, bool) and isinstance(raw, (tuple, list)) \
            and -len(raw) <= output < len(raw):
        return raw[output]
    raise TargetError(f"output={output!r} picks nothing from the model's output, a {_describe(raw)}; "
                      "give one of its keys, fields or indices, or a callable")


def model_output(raw: Any, output: Output = None) -> torch.Tensor:
    """The tensor a class-index target reads, by the rule above."""
    if output is not None:
        picked = output(raw) if callable(output) else _pick(raw, output)
        if not isinstance(picked, torch.Tensor):
            raise TargetError(f"output={getattr(output, '__qualname__', output)!r} gave a "
                              f"{type(picked).__name__}, not a tensor")
        return picked
    if isinstance(raw, torch.Tensor):
        return raw
    if isinstance(raw, Mapping) and isinstance(raw.get("logits"), torch.Tensor):
        return raw["logits"]
    if not isinstance(raw, Mapping) and dataclasses.is_dataclass(raw) \
            and isinstance(getattr(raw, "logits", None), torch.Tensor):
        return raw.logits  # type: ignore[union-attr]
    if isinstance(raw, (tuple, list)):
        for value in raw:
            if isinstance(value, torch.Tensor):
                return value
    raise TargetError(
        f"the model returned a {_describe(raw)}, and the rule (a tensor; 'logits'; a tuple's first tensor) "
        "finds no tensor in it; pick one with output=KEY (or a callable of the output), or give a "
        "callable target, which receives the raw output"
    )


@dataclasses.dataclass(frozen=True, repr=False)
class NextToken:
    """The logit (or log-probability) of ``token_id`` as the next token after each example's last real token.

    A decoder-only language model returns logits of shape ``(batch, positions,
    vocabulary)``: position ``p`` scores the token that follows token ``p``.
    Under padding, position ``-1`` is a pad for every example shorter than the
    batch's longest when the tokenizer pads on the right, so this target reads
    each example's last position whose ``attention_mask`` is 1 (the last
    position without a mask, or for a model called without a mapping).  Left
    and right padding thus read the same token's logits.  Called by the engine
    as ``target(output, attention_mask)``; a user may call it the same way.

    Two targets with the same token and options are equal and share one cache
    key (:attr:`key`), in every process, so their gradients are cached on disk.
    """

    token_id: int
    log_prob: bool = False

    @property
    def key(self) -> str:
        """The cache key of this target: its content, the same in every process."""
        return f"next_token:{self.token_id}:{'log_prob' if self.log_prob else 'logit'}"

    @property
    def name(self) -> str:
        """How results and reports name the target."""
        return repr(self)

    def __repr__(self) -> str:
        return f"next_token({self.token_id}{', log_prob=True' if self.log_prob else ''})"

    def __call__(self, output: Any, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        try:
            logits = model_output(output)
        except TargetError:
            found = getattr(output, "logits", None)  # any object with a logits tensor
            if isinstance(found, torch.Tensor):
                return self(found, attention_mask)
            raise TargetError(f"{self!r} reads the model's logits (a tensor, 'logits', or a tuple's first "
                              f"tensor), and the model returned a {_describe(output)}; give a callable target "
                              "that picks the value per example") from None
        if logits.dim() == 2:  # (batch, vocabulary): the model already gives one position per example
            last = logits
        elif logits.dim() == 3:
            last = logits[torch.arange(logits.shape[0], device=logits.device), _last_real(logits, attention_mask)]
        else:
            raise TargetError(f"{self!r} needs logits of shape (batch, positions, vocabulary); the model gave "
                              f"{tuple(logits.shape)}")
        if not 0 <= self.token_id < last.shape[1]:
            raise TargetError(f"{self!r}: token id {self.token_id} is out of range for a vocabulary of "
                              f"{last.shape[1]} (valid: 0..{last.shape[1] - 1})")
        if self.log_prob:
            return torch.log_softmax(last.float(), dim=1)[:, self.token_id]
        return last[:, self.token_id]


def _last_real(logits: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Each example's last position whose mask is not 0 (the last position without a mask)."""
    n, width = logits.shape[0], logits.shape[1]
    if mask is None:
        return torch.full((n,), width - 1, dtype=torch.long, device=logits.device)
    if tuple(mask.shape) != (n, width):
        raise TargetError(f"the attention_mask has shape {tuple(mask.shape)} but the logits have {n} examples "
                          f"and {width} positions; a next-token target needs one logit row per token")
    real = mask.to(logits.device).ne(0)
    if not bool(real.any(1).all()):
        empty = torch.nonzero(~real.any(1)).flatten().tolist()
        raise TargetError(f"example(s) {', '.join(map(str, empty[:8]))} of the batch have no real token "
                          "(attention_mask all 0); a next-token target reads the last real one")
    positions = torch.arange(width, device=logits.device)
    return torch.where(real, positions, torch.zeros_like(positions)).amax(1)


def next_token(token_id: int, *, log_prob: bool = False) -> NextToken:
    """A target for decoder-only language models: the logit of ``token_id`` after each example's last real token.

    ``target=next_token(tokenizer.convert_tokens_to_ids("Paris"))`` reads the
    output's logits (``.logits``, a ``logits`` key, or a plain ``(batch,
    positions, vocabulary)`` tensor) at the last position whose
    ``attention_mask`` is 1, so a prompt scores the same alone and in a batch
    padded on either side.  ``log_prob=True`` reads the log-probability
    (log-softmax over the vocabulary) instead of the logit.
    """
    if isinstance(token_id, bool) or not isinstance(token_id, (int, np.integer)) or token_id < 0:
        raise ConfigurationError(f"next_token needs a token id (an int >= 0), got {token_id!r}")
    if not isinstance(log_prob, bool):
        raise ConfigurationError(f"next_token's log_prob must be True or False, got {log_prob!r}")
    return NextToken(int(token_id), log_prob)


def check_output_and_target(target: Target, output: Output) -> None:
    if output is not None and callable(target):
        raise ConfigurationError(
            "output= picks the tensor a class-index target reads; a callable target receives the model's "
            "raw output and picks its own values: give one of the two"
        )


def target_values(raw: Any, target: Target, output: Output = None, n: int | None = None,
                  mask: torch.Tensor | None = None) -> torch.Tensor:
    """One scalar per example (``n`` of them, when the caller knows): the target logit, or the callable's values.

    ``mask`` is the batch's ``attention_mask``, if it has one: a :class:`NextToken` target reads it.
    """
    if callable(target):
        values = target(raw, mask) if isinstance(target, NextToken) else target(raw)
        n = _batch_size(raw) if n is None else n
        if not isinstance(values, torch.Tensor) or values.dim() != 1 or (n is not None and values.shape[0] != n):
            shape = tuple(values.shape) if isinstance(values, torch.Tensor) else type(values).__name__
            expected = f"shape ({n},)" if n is not None else "shape (batch,)"
            raise TargetError(
                f"the target callable must return one scalar per example, {expected}; it returned {shape}"
            )
        return values
    if isinstance(target, bool) or not isinstance(target, (int, np.integer)):
        raise TargetError(f"target must be a class index or a callable, got {target!r}")
    tensor = model_output(raw, output)
    if tensor.dim() != 2:
        raise TargetError(
            f"a class-index target needs a model output of shape (batch, classes); got "
            f"{tuple(tensor.shape)}: pass a callable target instead"
        )
    if not 0 <= int(target) < tensor.shape[1]:
        raise TargetError(
            f"target {int(target)} is out of range for a model with {tensor.shape[1]} outputs "
            f"(valid: 0..{tensor.shape[1] - 1})"
        )
    return tensor[:, int(target)]


def _batch_size(raw: Any) -> int | None:
    """The batch size of a raw output, when its default tensor tells (to check a callable target's values)."""
    try:
        return int(model_output(raw).shape[0])
    except (TargetError, IndexError):
        return None
