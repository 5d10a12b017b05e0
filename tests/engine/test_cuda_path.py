"""The CUDA path: on a GPU, a concept test gives the CPU's verdicts, with the model's passes on the GPU.

Skipped without CUDA.  ``TCAV_TEST_DEVICE`` runs the module on another device
(``cpu`` checks the module itself on a machine without a GPU; ``mps``, ``cuda:1``).
``benchmarks/gpu_checks.sh`` runs it on a GPU machine.

Tolerances.  A GPU computes in another order, and cuDNN convolutions use TF32
by default (inputs rounded to a 10-bit mantissa), so activations are not the
CPU's bit for bit.  The bounds below were set from an emulation on the CPU:
the texture model with its weights and every convolution's input rounded to
TF32 moved activations by 6e-4 of their norm, target gradients by 1e-2 (a ReLU
or max-pool that flips reroutes a gradient), TCAV scores by up to 0.03,
mean cosines by up to 0.018, CAV accuracies by up to 0.06 and p-values by up
to 2.6x, and changed none of the 18 verdicts of the three concepts in both
directions.  Each bound is about three times (ten for activations) what the
emulation moved, and the verdicts must be identical.
"""

from __future__ import annotations

import copy
import math
import os

import pytest
import torch
from torch import nn

from pytest_tcav import TCAV
from pytest_tcav.engine.activations import concept_activations, target_gradients
from pytest_tcav.engine.layers import resolve_layers
from tests.helpers.plugin_helpers import make_project
from tests.helpers.synthetic import LAYERS

DEVICE = os.environ.get("TCAV_TEST_DEVICE", "cuda")

pytestmark = [pytest.mark.slow,  # every test here trains a model (and runs it on the GPU)
              pytest.mark.skipif(DEVICE.startswith("cuda") and not torch.cuda.is_available(),
                                 reason="needs a CUDA GPU (TCAV_TEST_DEVICE=cpu runs it on the CPU)")]

ACTIVATION_TOLERANCE = 1e-2  # relative to the activations' norm
GRADIENT_TOLERANCE = 0.05  # relative to the gradients' norm
SCORE_TOLERANCE = 0.1  # TCAV score (share of inputs)
STATISTIC_TOLERANCE = 0.05  # mean cosine between gradients and CAV
CAV_ACCURACY_TOLERANCE = 0.15
P_VALUE_FACTOR = 10.0  # p-values below 0.5 within this factor


@pytest.fixture(scope="module")
def device_model(texture_model: nn.Module) -> nn.Module:
    return copy.deepcopy(texture_model).to(DEVICE)


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def test_activations_and_gradients_match_the_cpu(texture_model, device_model, ground_truth_data) -> None:
    data = ground_truth_data
    on_cpu = resolve_layers(texture_model, LAYERS)
    on_device = resolve_layers(device_model, LAYERS)
    acts_cpu = concept_activations(texture_model, on_cpu, data.striped)
    acts_dev = concept_activations(device_model, on_device, data.striped)
    grads_cpu = target_gradients(texture_model, on_cpu, data.striped_inputs, 1)
    grads_dev = target_gradients(device_model, on_device, data.striped_inputs, 1)
    for name in LAYERS:
        assert acts_dev[name].device.type == "cpu" and grads_dev[name].device.type == "cpu"  # what the store keeps
        assert relative_error(acts_dev[name], acts_cpu[name]) <= ACTIVATION_TOLERANCE, name
        assert relative_error(grads_dev[name], grads_cpu[name]) <= GRADIENT_TOLERANCE, name


@pytest.mark.parametrize(("concept", "direction"), [("striped", "positive"), ("dotted", "negative")])
def test_a_concept_test_gives_the_cpus_verdicts(texture_model, device_model, ground_truth_data, concept: str,
                                                direction: str) -> None:
    data = ground_truth_data
    devices: set[str] = set()
    hook = device_model.conv1.register_forward_hook(lambda module, args, out: devices.add(args[0].device.type))
    try:
        on_device = TCAV(device_model, seed=0).test(getattr(data, concept), target=1, inputs=data.striped_inputs,
                                                    layers=LAYERS, random_sets=data.random_sets, direction=direction)
    finally:
        hook.remove()
    on_cpu = TCAV(texture_model, seed=0).test(getattr(data, concept), target=1, inputs=data.striped_inputs,
                                              layers=LAYERS, random_sets=data.random_sets, direction=direction)
    assert devices == {torch.device(DEVICE).type}  # every forward pass (activations and gradients) ran there
    for gpu, cpu in zip(on_device.layers, on_cpu.layers):
        assert (gpu.verdict, gpu.significant) == (cpu.verdict, cpu.significant), gpu.layer
        assert abs(gpu.score - cpu.score) <= SCORE_TOLERANCE, gpu.layer
        assert abs(gpu.statistic - cpu.statistic) <= STATISTIC_TOLERANCE, gpu.layer
        assert abs(gpu.cav_accuracy - cpu.cav_accuracy) <= CAV_ACCURACY_TOLERANCE, gpu.layer
        if cpu.p_value < 0.5:
            assert abs(math.log10(gpu.p_value / cpu.p_value)) <= math.log10(P_VALUE_FACTOR), gpu.layer


def test_the_plugin_runs_a_check_on_the_configured_device(pytester: pytest.Pytester) -> None:
    """``--tcav-device`` and a model fixture that follows it: the check passes, as on the CPU."""
    make_project(pytester)
    pytester.makepyfile(test_device=f"""
        import pytest
        import torch

        import tiny_model
        from pytest_tcav import assert_concept_significant


        @pytest.fixture
        def device_model(tcav):
            return tiny_model.EdgeNet().to(tcav.device)


        def test_horizontal(tcav, device_model):
            assert tcav.device.type == torch.device({DEVICE!r}).type
            assert next(device_model.parameters()).device.type == tcav.device.type
            assert_concept_significant(device_model, "horizontal", target=1, layers="relu")
    """)
    pytester.runpytest_inprocess(f"--tcav-device={DEVICE}").assert_outcomes(passed=1)
