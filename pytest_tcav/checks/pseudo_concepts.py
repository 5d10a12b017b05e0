"""Measuring a random library's calibration: pseudo-concepts from random data the tests do not use, run as concepts.

A pseudo-concept is a set of random images of the concept size: a concept
that, by construction, the model does not rely on more than on any random
set.  Tested against the library's random sets exactly as a concept is, the
share found significant is the false-positive rate of the checks on that
library (:mod:`pytest_tcav.checks.calibration` does the arithmetic and keeps the file;
:func:`pytest_tcav.checks.significance.calibration_gate` decides what a check does with it).  The data
must be random images the tests do not use: ``random_*`` folders beyond the
``tcav_random_sets`` in use, a pool folder the explicit sets leave unused, or,
when the tests draw their sets from the pool, the pool's images that none of
the drawn sets contains.

A pseudo-concept is tested with the check's own request (:class:`~pytest_tcav.engine.spec.CheckSpec`,
settled), its concept replaced, through ``TCAVSession.measure``: this module calls down into the
session, never the other way.

Cost: each pseudo-concept is one concept pass (its activations and its ``N``
CAVs per layer); the random sets' activations and their pairwise CAVs (the
null) come from the same store the tests use, so a suite that ran once has
them cached already.
"""

from __future__ import annotations

import dataclasses
import hashlib
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from pytest_tcav.checks.calibration import Calibration, Status, layer_rates, load, save, status
from pytest_tcav.engine import batches
from pytest_tcav.engine.examples import Concept, ConceptLike, as_concept, list_image_files, sample_random_sets
from pytest_tcav.engine.spec import settled
from pytest_tcav.errors import ConceptDataError, ConfigurationError

if TYPE_CHECKING:
    from torch import nn

    from pytest_tcav.engine.spec import CheckSpec, TargetLike
    from pytest_tcav.session.session import TCAVSession

#: Offset of the pseudo-concepts' seed from ``tcav_seed``, so that they are not the random sets' draws.
SEED_OFFSET = 7919


def target_key(session: TCAVSession, target: TargetLike) -> str | None:
    """A class index as text (class names resolved), or None for a callable target (nothing to key on)."""
    if callable(target) and not isinstance(target, (int, str)):
        return None
    return str(int(session.resolve_target(target)))  # type: ignore[arg-type]


def identity_settings(spec: CheckSpec, n_random: int) -> dict[str, Any]:
    """What the rate depends on besides target, direction, alpha and the fingerprints.

    ``spec`` is settled: a check's own ``method=``/``n_steps=``/``seed=`` win over the configuration,
    as they do in the check.
    """
    knobs = spec.engine
    method = knobs.method
    settings: dict[str, Any] = {"method": method, "n_steps": knobs.n_steps if method != "gradient" else None,
                                "seed": knobs.seed, "random_sets": n_random}
    # Settings at their defaults stay out, so calibrations stored before they existed stay valid.
    layer_point, pooling = knobs.layer_point, knobs.pooling
    if layer_point != "output":
        settings["layer_point"] = layer_point
    if pooling != "flatten":
        settings["pooling"] = pooling
    if knobs.layer_call is not None:
        settings["layer_call"] = knobs.layer_call
    return settings


def used_random_sets(session: TCAVSession, size: int, random_sets: Any = None,
                     random_pool: Any = None) -> list[Concept]:
    """The random sets a concept of ``size`` examples is compared with (drawn as the engine draws them)."""
    sets, pool = session.resolve_random_sets(random_sets, random_pool)
    if pool is not None:
        assert isinstance(sets, int)
        pool_set = as_concept(pool, name="random_pool", transform=session.transform, role="random pool")
        return sample_random_sets(pool_set, sets, size, session.config.seed)
    assert not isinstance(sets, int)
    return [as_concept(s, name=f"random[{k}]", transform=session.transform, role="random")
            for k, s in enumerate(sets)]


def library_fingerprint(sets: Sequence[Concept]) -> str:
    return hashlib.sha256("\n".join(s.fingerprint for s in sets).encode()).hexdigest()


def inputs_fingerprint(session: TCAVSession, inputs: ConceptLike | None, target: TargetLike) -> str:
    value = session.resolve_inputs(inputs, target)
    return as_concept(value, name="inputs", transform=session.transform, role="input").fingerprint


def check_status(session: TCAVSession, spec: CheckSpec, *, model_fingerprint: str,
                 concept_size: int) -> Status | None:
    """The calibration state of one concept check, its ``spec`` settled (None: a callable target, which
    cannot be keyed)."""
    key = target_key(session, spec.target)
    cache_dir = session.config.cache_dir
    if key is None or cache_dir is None:
        return None
    direction = settled(spec.direction, "direction")
    sets = used_random_sets(session, concept_size, spec.random_sets, spec.random_pool)
    found = load(cache_dir, key, direction, settled(spec.alpha, "alpha"), identity_settings(spec, len(sets)))
    return status(found, library=library_fingerprint(sets), model=model_fingerprint,
                  inputs=inputs_fingerprint(session, spec.inputs, spec.target), layers=spec.layer_names,
                  target=key, direction=direction)


# -- the data of pseudo-concepts --------------------------------------------------------------


def default_concept_size(session: TCAVSession) -> int:
    """The median image count of the library's concept folders, else the random sets' size."""
    library = session.concepts
    root = library.require_root()
    counts = [len(list_image_files(root / name)) for name in library.names()]
    counts = [c for c in counts if c]
    if counts:
        return int(statistics.median(counts))
    explicit = library.random_set_names()
    if explicit:
        return len(list_image_files(root / explicit[0]))
    raise ConfigurationError("the concept library has no concept folders to take the concept size from; "
                             "give --concept-size")


@dataclass(frozen=True)
class SpareData:
    """Random images the tests do not use, and where they came from."""

    examples: Concept
    source: str


def spare_data(session: TCAVSession, size: int, count: int, in_use: int | None = None) -> SpareData:
    """The random data pseudo-concepts are drawn from; a clear error when the library has none.

    ``in_use``: how many random sets the checks use, when a check asks for other than ``tcav_random_sets``.
    """
    library = session.concepts
    root = library.require_root()
    n = session.config.random_sets if in_use is None else in_use
    explicit = library.random_set_names()
    need = (f"at least {size} images (one pseudo-concept of the concept size), better {count * size} "
            f"({count} pseudo-concepts that share no image)")
    if explicit:
        spare = explicit[n:]
        parts = [library.load(root / name, name=name) for name in spare]
        pool = library.pool_name()
        if pool is not None:  # explicit sets win: the tests never draw from the pool
            parts.append(library.load(root / pool, name=pool))
            spare = [*spare, pool]
        shown = ", ".join(spare) if len(spare) <= 4 else f"{spare[0]} ... {spare[-1]}, {len(spare)} folders"
        where = f"the random folders beyond the {n} in use ({shown})" if spare else ""
        if not parts:
            raise ConceptDataError(
                f"no random data the tests do not use: the concept library {str(root)!r} has "
                f"{len(explicit)} random folder(s), and the tests use the first {n} (tcav_random_sets); add "
                f"folders random_{len(explicit)}, random_{len(explicit) + 1}, ... or a pool folder 'random' "
                f"with {need}, drawn from the same source as the random sets")
        examples = batches.concat([p.examples for p in parts])
    else:
        pool = library.pool_name()
        if pool is None:
            library.random_sets(n)  # raises: the library has no random data at all
            raise AssertionError("unreachable")
        pool_set = library.load(root / pool, name=pool)
        used: set[bytes] = set()
        for s in sample_random_sets(pool_set, n, size, session.config.seed):
            used |= s.example_digests
        keep = [k for k in range(len(pool_set))
                if _digest(batches.take(pool_set.examples, slice(k, k + 1))) not in used]
        if not keep:
            raise ConceptDataError(
                f"no random data the tests do not use: the {n} random sets drawn from the pool "
                f"{str(root / pool)!r} ({len(pool_set)} images) use all of it; add {need} to the pool")
        examples = batches.take(pool_set.examples, torch.tensor(keep))
        where = f"the images of the pool '{pool}' that the {n} random sets drawn from it leave unused"
    if len(examples) < size:
        raise ConceptDataError(
            f"too little random data the tests do not use for pseudo-concepts of {size} examples: "
            f"{where} hold only {len(examples)} image(s); add {need}")
    return SpareData(Concept("spare", examples, source=where), where)


def _digest(example: batches.Examples) -> bytes:
    """The content hash of a one-example set."""
    return next(iter(batches.example_digests(example)))


def pseudo_concepts(spare: Concept, count: int, size: int, seed: int) -> list[Concept]:
    """``count`` seeded draws of ``size`` examples: disjoint when there is enough data, else overlapping."""
    gen = torch.Generator().manual_seed(int(seed) + SEED_OFFSET)
    total = len(spare)
    if total >= count * size:
        order = torch.randperm(total, generator=gen)
        picks = [order[k * size:(k + 1) * size] for k in range(count)]
    else:
        picks = [torch.randperm(total, generator=gen)[:size] for _ in range(count)]
    return [Concept(f"pseudo_{k}", batches.take(spare.examples, p.sort().values), source="pseudo-concept")
            for k, p in enumerate(picks)]


# -- running ----------------------------------------------------------------------------------


def calibrate(session: TCAVSession, model: nn.Module, spec: CheckSpec, concepts: Sequence[Concept], *,
              on_done: Callable[[int], None] | None = None) -> Calibration:
    """Test each pseudo-concept as a concept (against the library's random sets) and count the verdicts.

    ``spec`` is the settled request of a concept check (``method=``, ``seed=``, ``random_sets=``,
    ``inputs=``...; its own concept is not used): the pseudo-concepts are tested exactly as that
    check tests its concept, without its verdict (no expectation, no margin).
    """
    key = target_key(session, spec.target)
    if key is None:
        raise ConfigurationError("a callable target cannot be calibrated: name a class index or class name")
    if not concepts:
        raise ConfigurationError("calibration needs at least one pseudo-concept")
    layers = spec.layer_names
    measured = dataclasses.replace(spec, layers=layers, expectation=None, margin=None, score=None, stability=None)
    p_values: dict[str, list[float]] = {name: [] for name in layers}
    family = 0
    model_fp = ""
    for k, concept in enumerate(concepts):
        result = session.measure(model, dataclasses.replace(measured, concept=concept))
        for layer in result.layers:
            p_values[layer.layer].append(layer.p_value)
        family += bool(result.any_significant)
        model_fp = result.model_fingerprint
        if on_done is not None:
            on_done(k + 1)
    sets = used_random_sets(session, len(concepts[0]), spec.random_sets, spec.random_pool)
    alpha = settled(spec.alpha, "alpha")
    return Calibration(
        target=key, direction=settled(spec.direction, "direction"), alpha=alpha,
        settings=identity_settings(spec, len(sets)), library=library_fingerprint(sets), model=model_fp,
        inputs=inputs_fingerprint(session, spec.inputs, spec.target), pseudo_concepts=len(concepts),
        layers=layer_rates(p_values, alpha), family_significant=family,
    )


def calibrate_check(session: TCAVSession, model: nn.Module, spec: CheckSpec, *, concept_size: int,
                    count: int) -> Calibration:
    """``tcav_calibrate``: measure and store the calibration one concept check needs, as it tests.

    The pseudo-concepts have the check's concept size and go through the check's own request, so
    the stored calibration is the one :func:`check_status` then finds for this check.
    """
    in_use = spec.random_sets
    spare = spare_data(session, concept_size, count, in_use if isinstance(in_use, int) else None)
    concepts = pseudo_concepts(spare.examples, count, concept_size, session.config.seed)
    calibration = calibrate(session, model, spec, concepts)
    assert session.config.cache_dir is not None, "calibrations are stored in the disk cache"
    save(session.config.cache_dir, calibration)
    return calibration
