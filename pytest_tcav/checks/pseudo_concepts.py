"""Measuring a random library's calibration: pseudo-concepts tested as concepts, their verdicts counted.

The pseudo-concepts and their measurement are the session's
(:mod:`pytest_tcav.session.pseudo_null`: the same passes make the conditional
null of ``tcav_null = pseudo``); this module turns them into the false-positive
rate of the ``random`` null on this library (:mod:`pytest_tcav.checks.calibration`
does the arithmetic and keeps the file;
:func:`pytest_tcav.checks.significance.calibration_gate` decides what a check
does with it).  Each pseudo-concept's verdict under the ``random`` null is
recomputed from its statistic and the library's leave-one-out null, which the
stored measurement keeps per layer, so one measurement serves every direction,
alpha and correction.

Cost: each pseudo-concept is one concept pass (its activations and its ``N``
CAVs per layer); the random sets' activations and their pairwise CAVs (the
null) come from the same store the tests use, so a suite that ran once has
them cached already.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from pytest_tcav.checks.calibration import Calibration, Status, layer_rates, load, save, status
from pytest_tcav.engine.conditional_null import resolve_null_test
from pytest_tcav.engine.examples import as_concept
from pytest_tcav.engine.fingerprints import model_fingerprint
from pytest_tcav.engine.spec import settled
from pytest_tcav.engine.statistics import adjust_p_values, compare_to_null
from pytest_tcav.errors import ConfigurationError
from pytest_tcav.session.pseudo_null import identity_settings, library_fingerprint

if TYPE_CHECKING:
    from torch import nn

    from pytest_tcav.engine.conditional_null import PseudoNull
    from pytest_tcav.engine.examples import ConceptLike
    from pytest_tcav.engine.spec import CheckSpec, TargetLike
    from pytest_tcav.session.session import TCAVSession


def target_key(session: TCAVSession, target: TargetLike) -> str | None:
    """A class index as text (class names resolved), or None for a callable target (nothing to key on)."""
    if callable(target) and not isinstance(target, (int, str)):
        return None
    return str(int(session.resolve_target(target)))  # type: ignore[arg-type]


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
    sets = session.random_set_concepts(concept_size, spec.random_sets, spec.random_pool)
    found = load(cache_dir, key, direction, settled(spec.alpha, "alpha"), identity_settings(spec, len(sets)))
    return status(found, library=library_fingerprint(sets), model=model_fingerprint,
                  inputs=inputs_fingerprint(session, spec.inputs, spec.target), layers=spec.layer_names,
                  target=key, direction=direction)


# -- running ----------------------------------------------------------------------------------


def random_null_p_values(null: PseudoNull, spec: CheckSpec) -> dict[str, list[float]]:
    """Per layer, each pseudo-concept's p-value under the ``random`` null, as a check of ``spec`` computes it."""
    direction = settled(spec.direction, "direction")
    test = resolve_null_test(spec.null_test, "random")
    return {name: [compare_to_null(value, np.asarray(layer.random_null), direction, test).p_value  # type: ignore[arg-type]
                   for value in layer.statistics]
            for name, layer in ((name, null.layer(name)) for name in spec.layer_names)}


def calibrate(session: TCAVSession, model: nn.Module, spec: CheckSpec, *, concept_size: int, count: int,
              on_done: Callable[[int], None] | None = None) -> tuple[Calibration, PseudoNull]:
    """Test ``count`` pseudo-concepts as concepts (against the library's random sets) and count the verdicts.

    ``spec`` is the settled request of a concept check (``method=``, ``seed=``, ``random_sets=``,
    ``inputs=``...; its own concept is not used): the pseudo-concepts are tested exactly as that
    check tests its concept, without its verdict.  The measurement is the session's pseudo-concepts'
    null (read back when it was stored before), so ``tcav_null = pseudo`` reuses it.
    """
    key = target_key(session, spec.target)
    if key is None:
        raise ConfigurationError("a callable target cannot be calibrated: name a class index or class name")
    if count < 1:
        raise ConfigurationError("calibration needs at least one pseudo-concept")
    null = session.pseudo_null(model, spec, size=concept_size, count=count, on_done=on_done)
    p_values = random_null_p_values(null, spec)
    alpha = settled(spec.alpha, "alpha")
    correction = settled(spec.correction, "correction")
    family = sum(any(p < alpha for p in adjust_p_values(list(row), correction))  # type: ignore[arg-type]
                 for row in zip(*p_values.values()))
    sets = session.random_set_concepts(concept_size, spec.random_sets, spec.random_pool)
    calibration = Calibration(
        target=key, direction=settled(spec.direction, "direction"), alpha=alpha,
        settings=identity_settings(spec, len(sets)), library=library_fingerprint(sets),
        model=model_fingerprint(model), inputs=inputs_fingerprint(session, spec.inputs, spec.target),
        pseudo_concepts=null.k, layers=layer_rates(p_values, alpha), family_significant=family,
        shifts={name: null.layer(name).shift_in_null_sds() for name in spec.layer_names},
        spreads={name: null.layer(name).spread_ratio() for name in spec.layer_names},
    )
    return calibration, null


def calibrate_check(session: TCAVSession, model: nn.Module, spec: CheckSpec, *, concept_size: int,
                    count: int) -> Calibration:
    """``tcav_calibrate``: measure and store the calibration one concept check needs, as it tests.

    The pseudo-concepts have the check's concept size and go through the check's own request, so
    the stored calibration is the one :func:`check_status` then finds for this check.
    """
    calibration, _null = calibrate(session, model, spec, concept_size=concept_size, count=count)
    assert session.config.cache_dir is not None, "calibrations are stored in the disk cache"
    save(session.config.cache_dir, calibration)
    return calibration
