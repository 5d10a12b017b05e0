"""What the benchmarks share: the workload (GoogLeNet, generated images), Captum's recipe, the floor, memory.

Every workload is generated here from fixed seeds, so two processes (a first
run and a rerun) build the same model weights and the same images, and
nothing is downloaded.  Scripts import this module from their own folder
(``python benchmarks/x.py`` puts it on ``sys.path``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import resource
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

LAYERS = ["inception4c", "inception4d", "inception4e"]
TARGET = 340


def googlenet(seed: int = 0) -> torch.nn.Module:
    """torchvision GoogLeNet with random weights (its own initialisation, seeded), in eval mode."""
    import torchvision

    torch.manual_seed(seed)
    return torchvision.models.googlenet(weights=None, init_weights=True, aux_logits=False).eval()


def make_sets(n_random: int, images: int, inputs: int, size: int, seed: int = 1
              ) -> tuple[list[tuple[str, torch.Tensor]], torch.Tensor]:
    """``[("concept", ...), ("random_0", ...), ...]`` of ``images`` random images each, and the inputs."""
    gen = torch.Generator().manual_seed(seed)
    shape = (images, 3, size, size)
    names = ["concept"] + [f"random_{k}" for k in range(n_random)]
    sets = [(name, torch.rand(shape, generator=gen)) for name in names]
    return sets, torch.rand((inputs, 3, size, size), generator=gen)


def tutorial_experimental_sets(n_sets: int) -> list[tuple[int, int]]:
    """Captum's tutorial recipe, as set positions: concept vs each random set, random_0 vs each other one."""
    pairs = [(0, i) for i in range(1, n_sets)]
    pairs += [(1, i) for i in range(2, n_sets)]
    return pairs


def have_captum() -> bool:
    return importlib.util.find_spec("captum") is not None


def captum_version() -> str | None:
    if not have_captum():
        return None
    from importlib import metadata

    try:
        return metadata.version("captum")
    except metadata.PackageNotFoundError:  # pragma: no cover - importable but not installed as a package
        return "unknown"


def captum_run(model: torch.nn.Module, sets: list[tuple[str, torch.Tensor]], inputs: torch.Tensor,
               save_path: str, pairs: list[tuple[int, int]], *, classifier: Any = None,
               batch_size: int = 64, sync: Callable[[], None] = lambda: None
               ) -> tuple[float, dict[str, Any], list[list[Any]]]:
    """Captum's TCAV on the given experimental sets (positions in ``sets``); returns (seconds, scores, sets)."""
    from captum.concept import TCAV as CaptumTCAV
    from captum.concept import Concept as CaptumConcept
    from torch.utils.data import DataLoader

    concepts = [CaptumConcept(k, name, DataLoader(images, batch_size=batch_size))
                for k, (name, images) in enumerate(sets)]
    experimental = [[concepts[a], concepts[b]] for a, b in pairs]
    sync()
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tcav = CaptumTCAV(model, LAYERS, classifier=classifier, save_path=save_path)
        scores = tcav.interpret(inputs, experimental, target=TARGET)
    sync()
    return time.perf_counter() - start, scores, experimental


def floor_run(model: torch.nn.Module, concept_images: Any, inputs: Any, *,
              layers: Sequence[str] = LAYERS, target: int = TARGET, pooling: str = "flatten",
              batch_size: int = 64, channels_last: bool | None = None, device: torch.device | None = None,
              sync: Callable[[], None] = lambda: None) -> float:
    """The least model work TCAV needs: one no-grad pass over the concept images, one forward/backward.

    Runs the engine's own passes (batches of ``batch_size``), without the rest.  ``channels_last=False``
    runs the concept pass on plain contiguous batches, as Captum runs the model.  ``concept_images`` is
    one set of examples (a tensor, or a dict of tensors for token models) or a list of sets: a list is
    run as if concatenated, in chunks of whole batches whose activations are dropped as they come, so
    the floor of thousands of images needs neither their concatenation nor all their activations at once.
    """
    from pytest_tcav.engine import activations
    from pytest_tcav.engine.layers import resolve_layers

    modules = resolve_layers(model, list(layers))
    saved = activations.CHANNELS_LAST_ON_CPU
    if channels_last is not None:
        activations.CHANNELS_LAST_ON_CPU = channels_last
    chunks = concatenated_chunks(concept_images, batch_size * 8) if isinstance(concept_images, list) \
        else [concept_images]
    try:
        sync()
        start = time.perf_counter()
        for chunk in chunks:
            activations.concept_activations(model, modules, chunk, batch_size=batch_size, device=device,
                                            pooling=pooling)
        activations.target_gradients(model, modules, inputs, target, batch_size=batch_size, device=device,
                                     pooling=pooling)
        sync()
        return time.perf_counter() - start
    finally:
        activations.CHANNELS_LAST_ON_CPU = saved


def concatenated_chunks(sets: Sequence[Any], size: int) -> Iterator[Any]:
    """The sets' examples as if concatenated, ``size`` at a time (the last chunk may be shorter)."""
    from pytest_tcav.engine import batches

    pending: list[Any] = []
    held = 0
    for examples in sets:
        start, n = 0, batches.length(examples)
        while start < n:
            take = min(size - held, n - start)
            pending.append(batches.take(examples, slice(start, start + take)))
            held += take
            start += take
            if held == size:
                yield batches.concat(pending)
                pending, held = [], 0
    if pending:
        yield batches.concat(pending)


def examples_bytes(examples: Any) -> int:
    """Bytes held by a set of examples (a tensor, or a tuple or dict of tensors)."""
    if isinstance(examples, torch.Tensor):
        return examples.element_size() * examples.nelement()
    parts = examples.values() if isinstance(examples, dict) else examples
    return sum(examples_bytes(part) for part in parts)


def current_rss_mb() -> float:
    """This process's resident set size now, in MiB (``/proc/self/status`` on Linux; else the peak so far)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return peak_rss_mb()


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, in MiB (``ru_maxrss``: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def warm_up(model: torch.nn.Module, inputs: torch.Tensor) -> None:
    """First-call allocations and kernel selection, for nobody's benefit: one small forward and backward."""
    x = inputs[:2].clone().requires_grad_(True)
    model(x)[:, TARGET].sum().backward()
    model.zero_grad(set_to_none=True)
    with torch.no_grad():
        model(inputs[:2].contiguous(memory_format=torch.channels_last))


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "captum": captum_version(),
        "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
    }


def best_of(repeat: int, function: Callable[[], float]) -> float:
    """The fastest of ``repeat`` timings (the least disturbed by other work on the machine)."""
    return min(function() for _ in range(max(1, repeat)))


def print_json(record: dict[str, Any]) -> None:
    print(json.dumps(record, sort_keys=True), flush=True)
