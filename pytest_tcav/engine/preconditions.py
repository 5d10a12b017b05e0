"""Checks of the engine's arguments and data, with the messages that say what to fix.

Every rule that can reject a test before the model runs lives here, with
its wording: a wrong setting, a set the test cannot use (a shape, a dtype,
NaN, too few examples, two identical sets) and, while the model runs, a
failure it can explain (a set of the wrong dtype).  The computation in
:mod:`pytest_tcav.engine.tcav` then assumes valid input.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

import torch
from torch import nn

from pytest_tcav.engine import batches
from pytest_tcav.engine.activations import METHODS, all_finite
from pytest_tcav.engine.cav import MIN_EXAMPLES_PER_SET
from pytest_tcav.engine.examples import Concept
from pytest_tcav.engine.pooling import POOLINGS
from pytest_tcav.engine.statistics import CORRECTIONS, DIRECTIONS
from pytest_tcav.errors import (
    ConceptDataError,
    ConfigurationError,
    InsufficientDataError,
    NonFiniteError,
    TCAVDataWarning,
    TCAVError,
)


def check_engine_arguments(model: object, method: str, correction: str, batch_size: int, n_steps: int,
                           pooling: str = "flatten", forward_kwargs: object = None, output: object = None,
                           layer_call: object = None) -> None:
    """The settings a :class:`~pytest_tcav.engine.tcav.TCAV` is built with, checked before any work."""
    if not isinstance(model, nn.Module):
        raise ConfigurationError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if pooling not in POOLINGS:
        raise ConfigurationError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    if forward_kwargs is not None and not (isinstance(forward_kwargs, dict)
                                           and all(isinstance(k, str) for k in forward_kwargs)):
        raise ConfigurationError(f"forward_kwargs must be a dict of keyword arguments, got {forward_kwargs!r}")
    if output is not None and not isinstance(output, (str, int)) and not callable(output):
        raise ConfigurationError(f"output must be a key, an index or a callable, got {output!r}")
    if method not in METHODS:
        raise ConfigurationError(f"method must be one of {METHODS}, got {method!r}")
    if correction not in CORRECTIONS:
        raise ConfigurationError(f"correction must be one of {CORRECTIONS}, got {correction!r}")
    if batch_size < 1:
        raise ConfigurationError(f"batch_size must be positive, got {batch_size}")
    if n_steps < 1:
        raise ConfigurationError(f"n_steps must be positive, got {n_steps}")
    if layer_call is not None and (isinstance(layer_call, bool) or not isinstance(layer_call, int) or layer_call < 0):
        raise ConfigurationError(f"layer_call must be a call's index (0: the first call) or None, got {layer_call!r}")


def check_direction(direction: str) -> None:
    if direction not in DIRECTIONS:
        raise ConfigurationError(f"direction must be one of {DIRECTIONS}, got {direction!r}")


def _index_list(indices: list[int], limit: int = 8) -> str:
    """``0, 3, 7`` or ``0, 3, 7, ... (12 in all)``: which examples a message is about."""
    shown = ", ".join(str(i) for i in indices[:limit])
    return shown + (f", ... ({len(indices)} in all)" if len(indices) > limit else "")


@contextlib.contextmanager
def running_on(model: nn.Module, examples: Concept) -> Iterator[None]:
    """Say which set the model failed on, and why when the dtypes tell.

    A set the model cannot take fails deep inside the user's model with a
    message about tensors, not about folders or sets.  A non-float set
    (uint8 images) or a float set of another precision than the model's
    parameters is a diagnosis: it becomes a :class:`ConceptDataError`
    naming the set and the conversion.  Any other failure keeps its type
    (it may be a bug in the model, or memory) and gains a note naming the
    set, its shape and dtype.  A :class:`NonFiniteError` gains the set's name.
    """
    try:
        yield
    except NonFiniteError as exc:
        raise NonFiniteError(f"{examples.name!r}: {exc}") from None
    except TCAVError:
        raise
    except Exception as exc:
        if not isinstance(examples.examples, torch.Tensor):
            if hasattr(exc, "add_note"):  # Python 3.11+
                call = "model(**batch)" if isinstance(examples.examples, dict) else "model(*parts)"
                exc.add_note(f"pytest-tcav: raised while running the model on {examples.name!r} ({len(examples)} "
                             f"examples, {batches.describe(examples.examples)}) as {call}; a tuple or list "
                             "of tensors is passed as separate arguments (labels too: give inputs alone), a "
                             "mapping as keyword arguments")
            raise
        dtype = examples.examples.dtype
        described = (f"{examples.name!r} ({len(examples)} examples of shape "
                     f"{tuple(examples.examples.shape[1:])}, {dtype})")
        params = {p.dtype for p in model.parameters() if p.is_floating_point()}
        if dtype in (torch.uint8, torch.int8, torch.bool) and params:
            raise ConceptDataError(
                f"the model failed on {described} ({type(exc).__name__}: {exc}); convert the examples "
                "to floating point, e.g. images.float() / 255, or load images through a transform"
            ) from exc
        if examples.examples.is_floating_point() and params and dtype not in params:
            raise ConceptDataError(
                f"the model failed on {described}, its parameters being {', '.join(sorted(map(str, params)))} "
                f"({type(exc).__name__}: {exc}); convert the examples, e.g. x.to({sorted(map(str, params))[0]})"
            ) from exc
        if hasattr(exc, "add_note"):  # Python 3.11+
            exc.add_note(f"pytest-tcav: raised while running the model on {described}; if it is about "
                         "shapes or dtypes, check that every set matches the model's input")
        raise


def _check_layouts(concept: Concept, others: list[Concept], pooling: str) -> None:
    """Every set has the concept's structure, and each part its shape and dtype.

    With a pooling other than ``"flatten"`` the positions (the second
    dimension of a part) may differ between sets: the pooled activations do not
    depend on how many padding positions a set has.
    """
    kind, names = batches.layout(concept.examples)
    for s in others:
        if batches.layout(s.examples) != (kind, names):
            raise ConceptDataError(
                f"{s.name!r} examples are {batches.describe(s.examples)} but concept {concept.name!r} examples "
                f"are {batches.describe(concept.examples)}; every set must have the same parts as the model's input"
            )
        if isinstance(concept.examples, torch.Tensor):
            assert isinstance(s.examples, torch.Tensor)
            if tuple(s.examples.shape[1:]) != tuple(concept.examples.shape[1:]):
                raise ConceptDataError(
                    f"{s.name!r} examples have shape {tuple(s.examples.shape[1:])} but concept "
                    f"{concept.name!r} examples have shape {tuple(concept.examples.shape[1:])}; all sets must "
                    "match the model's input (a set is a tensor of shape (examples, *input shape): stack "
                    "single images)" + _length_hint(s.examples, concept.examples, pooling)
                )
            if s.examples.dtype != concept.examples.dtype:
                raise ConceptDataError(
                    f"{s.name!r} examples are {s.examples.dtype} but concept {concept.name!r} examples are "
                    f"{concept.examples.dtype}; convert all sets to the dtype the model takes"
                )
            continue
        for (name, mine), (_, theirs) in zip(_sorted_parts(s), _sorted_parts(concept)):
            shape, expected = tuple(mine.shape[1:]), tuple(theirs.shape[1:])
            if len(shape) >= 1:
                # Positions may differ: under a pooling they are pooled away; under "flatten" a layer
                # that keeps them gives sets of different widths, which check_widths reports.
                shape, expected = shape[1:], expected[1:]
            if shape != expected or mine.dim() != theirs.dim():
                raise ConceptDataError(
                    f"part {name} of {s.name!r} has shape {tuple(mine.shape[1:])} but in concept "
                    f"{concept.name!r} it has {tuple(theirs.shape[1:])}; every set must match the model's "
                    "input" + _length_hint(mine, theirs, pooling)
                )
            if mine.dtype != theirs.dtype:
                raise ConceptDataError(
                    f"part {name} of {s.name!r} is {mine.dtype} but in concept {concept.name!r} it is "
                    f"{theirs.dtype}; convert all sets to the dtype the model takes"
                )


def _sorted_parts(s: Concept) -> list[tuple[str, torch.Tensor]]:
    named = batches.parts(s.examples)
    return sorted(named) if isinstance(s.examples, dict) else named


def _length_hint(mine: torch.Tensor, theirs: torch.Tensor, pooling: str) -> str:
    """Sets padded to different lengths, under ``"flatten"``: say what to do about it."""
    if pooling == "flatten" and mine.dim() >= 2 and mine.dim() == theirs.dim() \
            and mine.shape[2:] == theirs.shape[2:] and mine.shape[1] != theirs.shape[1]:
        return (f". They differ only in length ({mine.shape[1]} vs {theirs.shape[1]} positions): "
                "pooling='flatten' needs every set padded to one length; pooling='mean', 'first' or "
                "'last' (tcav_pooling) compares sequences of any length")
    return ""


def check_sets(concept: Concept, randoms: list[Concept], inputs: Concept, pooling: str = "flatten") -> None:
    """Reject sets that cannot give a meaningful test, before the model runs.

    The rules (docs/troubleshooting.md): every set has the concept's
    structure, example shape and dtype (positions may differ when a pooling
    other than ``"flatten"`` is used); no example holds NaN or infinity; the concept
    and each random set have enough examples to hold some out; no two of
    them hold the same examples, in any order (an error); examples the
    concept shares with a random set only warn, since drawing random sets
    from a pool that happens to contain a concept image is legitimate but
    costs power.  Inputs may share examples with anything.
    """
    _check_layouts(concept, [*randoms, inputs], pooling)
    for s in [concept, *randoms, inputs]:
        for name, part in batches.parts(s.examples):
            if (part.is_floating_point() or part.is_complex()) and not all_finite(part):
                finite = torch.isfinite(part.reshape(len(s), -1)).all(1)
                if not bool(finite.all()):
                    bad = torch.nonzero(~finite).flatten().tolist()
                    where = f" (part {name})" if name else ""
                    raise ConceptDataError(
                        f"{s.name!r} example(s) {_index_list(bad)} of {len(s)} contain NaN or infinity{where}; "
                        "fix or drop them (check the preprocessing that produced them)"
                    )
    for s in [concept, *randoms]:
        if len(s) < MIN_EXAMPLES_PER_SET:
            raise InsufficientDataError(
                f"{s.name!r} has {len(s)} example(s); a CAV needs at least "
                f"{MIN_EXAMPLES_PER_SET} per set to hold some out for its accuracy"
            )
    seen: dict[frozenset[bytes], Concept] = {}
    for s in [concept, *randoms]:
        digests = s.example_digests
        other = seen.get(digests)
        if other is not None:
            order = "" if other.fingerprint == s.fingerprint else " (in another order or repeated)"
            raise ConceptDataError(
                f"{other.name!r} and {s.name!r} hold identical examples{order}; a CAV between "
                "identical sets is meaningless: give each set its own examples"
            )
        seen[digests] = s
    concept_digests = concept.example_digests
    shared = [(r.name, len(concept_digests & r.example_digests)) for r in randoms]
    shared = [(name, count) for name, count in shared if count]
    if shared:
        listing = ", ".join(f"{name!r} ({count} of {len(concept)})" for name, count in shared[:5])
        warnings.warn(
            f"concept {concept.name!r} shares examples with {len(shared)} of its {len(randoms)} random "
            f"set(s): {listing}{' ...' if len(shared) > 5 else ''}; a shared example sits on both sides "
            "of a CAV, which lowers its accuracy and the test's power: remove concept images from "
            "the random sets (or the random pool)",
            TCAVDataWarning,
            stacklevel=3,  # the caller of TCAV.test, which calls this directly
        )


def check_widths(layer: str, activations: list[torch.Tensor], sets: list[Concept], pooling: str) -> None:
    """One feature width per layer across sets, or CAVs cannot compare them: say why and what to do."""
    widths = [int(a.shape[1]) for a in activations]
    if len(set(widths)) <= 1:
        return
    k = next(i for i, w in enumerate(widths) if w != widths[0])
    hint = ("; with pooling='flatten' every position is a feature, so sets padded to different lengths "
            "differ: pad every set to one length, or use pooling='mean', 'first' or 'last' (tcav_pooling)"
            if pooling == "flatten" else "")
    raise ConceptDataError(
        f"at layer {layer!r}, {sets[k].name!r} gives {widths[k]} features per example but {sets[0].name!r} "
        f"gives {widths[0]}{hint}"
    )


def check_gradient_width(layer: str, gradients: torch.Tensor, cav_width: int, pooling: str) -> None:
    """The inputs' gradients must live where the CAVs do: inputs padded differently from the sets do not."""
    if int(gradients.shape[1]) == cav_width:
        return
    hint = ("; with pooling='flatten' every position is a feature, so inputs padded to another length than "
            "the concept and random sets differ: pad every set to one length, or use pooling='mean', 'first' "
            "or 'last' (tcav_pooling)" if pooling == "flatten" else "")
    raise ConceptDataError(
        f"at layer {layer!r}, the inputs give {int(gradients.shape[1])} features per example but the concept "
        f"and random sets give {cav_width}{hint}"
    )
