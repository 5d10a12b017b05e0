"""Settings of a pytest-tcav run: ini keys, ``--tcav-*`` overrides, validation.

A :class:`TCAVConfig` is built once per pytest run from the ini file
(``pytest.ini``, ``pyproject.toml``, ``tox.ini``, ``setup.cfg``) and the command
line, the command line winning.  It is frozen so that every test of the run
sees the same settings, and it stays free of torch so that the plugin costs
nothing to load in a run that never tests a concept.

Path rules: a path from the ini file is relative to the ini file's directory
(the project root when there is no ini file); a path from the command line is
relative to the directory pytest was started from, as a shell user expects.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from pytest_tcav.errors import ConfigurationError

#: Default bound on the disk cache's total size.
DEFAULT_MAX_BYTES = 8 * 1024**3
DEFAULT_MEMORY_BYTES = 256 * 1024**2

# Kept in step with the engine (tests/plugin/test_plugin_config.py checks it); repeated
# here so that reading the configuration does not import torch.
METHODS = ("gradient", "integrated_gradients")
CORRECTIONS = ("holm", "bonferroni", "none")
NULLS = ("random", "pseudo")  # pytest_tcav.engine.conditional_null.NULLS
#: K behind ``tcav_null = pseudo`` (docs/statistics.md, "The conditional null": the measurements behind it).
DEFAULT_PSEUDO_CONCEPTS = 60
CACHE_MODES = ("off", "read", "write", "readwrite")  # pytest_tcav.storage.disk.MODES
BAD_IMAGE_POLICIES = ("warn", "error")  # pytest_tcav.engine.examples.BAD_IMAGE_POLICIES
REQUIRE_CALIBRATION = ("off", "warn", "fail")  # pytest_tcav.checks.calibration.REQUIRE_MODES
LAYER_POINTS = ("output", "input")  # pytest_tcav.engine.layers.LayerPoint
POOLINGS = ("flatten", "mean", "first", "last")  # pytest_tcav.engine.pooling.POOLINGS
CACHE_LOCKS = ("fcntl", "soft")  # pytest_tcav.storage.locks.LOCK_KINDS

_DEVICE_PATTERN = re.compile(r"^[a-z][a-z0-9_]*(:\d+)?$")
#: The device types a concept test runs on (torch's names), as the error for any other names them.
DEVICE_TYPES = ("cpu", "cuda", "mps", "xpu")
_DEVICES_HELP = "cpu, cuda, cuda:N (NVIDIA/ROCm GPU N), mps (Apple silicon) or xpu, xpu:N (Intel GPU)"
_TRANSFORM_PATTERN = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


@dataclass(frozen=True)
class Option:
    """One setting: its ini key, its ``--tcav-*`` flag, its help text, and its place in ``pytest-tcav score``.

    The plugin and the command line both build their options from this table,
    so a setting is declared once.  The command line's help is shorter (its
    ``--help`` names the ini key instead of repeating the plugin's text).
    ``cli_help=None`` keeps a setting off the command's flags (it still reads
    it from ``--inifile``): the disk cache's, ``tcav_on_bad_image``, and
    ``tcav_inputs``, which the command's own ``--inputs`` covers with more meanings.
    """

    key: str
    help: str
    metavar: str
    ini_type: str = "string"
    #: Help of ``pytest-tcav score``'s flag, before ``(key)``; None: not a flag of the command.
    cli_help: str | None = None
    #: The command's default when it differs from the plugin's, added after the key in the help.
    cli_default: str | None = None
    #: The command's argument group: ``"what"`` (what to score) or ``"settings"``.
    cli_group: str = "settings"

    @property
    def flag(self) -> str:
        return "--" + self.key.replace("_", "-")

    @property
    def cli_dest(self) -> str:
        """The command's attribute name: the key without ``tcav_`` (``random_sets``)."""
        return self.key.removeprefix("tcav_")

    @property
    def cli_flag(self) -> str:
        """The command's flag: ``--random-sets`` for ``tcav_random_sets``."""
        return "--" + self.cli_dest.replace("_", "-")


OPTIONS: tuple[Option, ...] = (
    Option("tcav_concepts", "concept library folder: one sub-folder of images per concept, plus "
           "random_* folders or one 'random' pool folder", "DIR",
           cli_help="concept library folder", cli_group="what"),
    Option("tcav_inputs", "input library folder: one sub-folder of images per target, named by "
           "class index or class name", "DIR"),
    Option("tcav_classes", "class names for targets and input folders, as name=index pairs "
           "(comma-separated on the command line, one per line in the ini file)", "NAME=INDEX,...",
           ini_type="linelist", cli_help="class names for --target"),
    Option("tcav_transform", "image preprocessing, as 'package.module:callable' taking a PIL image "
           "and returning a tensor (imported on first use)", "MODULE:CALLABLE",
           cli_help="PIL image -> input tensor"),
    Option("tcav_tokenizer", "text preprocessing, as 'package.module:callable' taking a list of strings and "
           "returning a mapping of tensors, e.g. a Hugging Face tokenizer called with padding=True, "
           "return_tensors='pt' (imported on first use)", "MODULE:CALLABLE",
           cli_help="list of strings -> mapping of tensors"),
    Option("tcav_random_sets", "number of random counterparts per concept (default: 10)", "N",
           cli_help="random counterparts per concept"),
    Option("tcav_alpha", "family-wise significance level over the layers of one assertion "
           "(default: 0.05)", "ALPHA", cli_help="significance level over the layers"),
    Option("tcav_seed", "seed of random-set sampling and CAV training (default: 0)", "SEED",
           cli_help="seed of random sets and CAV training"),
    Option("tcav_device", "device to test on, e.g. cuda:0; model fixtures put the model there with "
           "model.to(tcav.device) (default: the model's own device)", "DEVICE",
           cli_help="cpu, cuda, cuda:1...", cli_default="CUDA when present, else the CPU"),
    Option("tcav_batch_size", "examples per forward/backward pass (default: 64)", "N",
           cli_help="examples per pass"),
    Option("tcav_method", "attribution method: gradient or integrated_gradients (default: gradient)",
           "METHOD", cli_help="gradient or integrated_gradients"),
    Option("tcav_n_steps", "integration steps for method integrated_gradients (default: 5)", "N",
           cli_help="integrated-gradients steps"),
    Option("tcav_layer_point", "what a layer name studies: the layer's output or its input (the first "
           "argument of its forward) (default: output)", "output|input", cli_help="output or input"),
    Option("tcav_layer_call", "which call of a layer's module that runs more than once per forward pass is "
           "studied, counted from 0 (e.g. 1 for the second use of a ReLU shared within a ResNet block); none: such "
           "a layer is refused (default: none)", "N", cli_help="which call of a module run more than once"),
    Option("tcav_pooling", "what a CAV sees of a layer with a sequence axis (batch, tokens, features) or a "
           "convolution's (batch, channels, *spatial): flatten (every position a feature), mean (over real "
           "positions, by the attention_mask; over every spatial position of a convolution), first or last "
           "(the last real position; token layers only) (default: flatten)", "NAME",
           cli_help="flatten, mean, first or last"),
    Option("tcav_correction", "multiple-layer correction: holm, bonferroni or none (default: holm)",
           "NAME", cli_help="holm, bonferroni or none"),
    Option("tcav_cache_dir", "disk cache folder for activations, gradients and CAVs (default: "
           "d/tcav in pytest's cache_dir, .pytest_cache/d/tcav)", "DIR"),
    Option("tcav_cache", "disk cache mode: off, read, write or readwrite (default: readwrite)", "MODE"),
    Option("tcav_cache_size", "disk cache size bound, e.g. 500MB, 2GiB or none; least recently used "
           "entries are evicted (default: 8GiB)", "SIZE"),
    Option("tcav_memory_cache", "memory for values the disk cache also holds (activations, CAVs), e.g. 1GB "
           "or none; least recently used ones are dropped and read again when needed (default: 256MB)", "SIZE"),
    Option("tcav_cache_lock", "how workers lock disk-cache entries: fcntl (the operating system's locks) or "
           "soft (lock files that hold where fcntl locks do not, e.g. on NFS or other network file systems shared "
           "by several machines) (default: fcntl)", "fcntl|soft"),
    Option("tcav_threads", "torch intra-op threads: auto (under pytest-xdist, cores / workers unless "
           "OMP_NUM_THREADS, MKL_NUM_THREADS or torch.set_num_threads says otherwise; else torch's own default) "
           "or a number (default: auto)", "auto|N"),
    Option("tcav_require_calibration", "what a concept check does when the measured false-positive rate of "
           "the random library (pytest-tcav calibrate) is missing, stale, or above alpha: off, warn or fail "
           "(default: off)", "off|warn|fail"),
    Option("tcav_calibrate", "measure the random library's false-positive rate during the run: the first "
           "concept check whose calibration is missing or stale tests K pseudo-concepts (as pytest-tcav "
           "calibrate does) and stores the result (default: 0, off)", "K"),
    Option("tcav_null", "what a concept is judged against: random (the spread of the random sets themselves) "
           "or pseudo (K pseudo-concepts, random data the tests do not use, tested against the same random "
           "sets: calibrated for this library, measured once and stored) (default: random)", "random|pseudo",
           cli_help="what a concept is judged against: random or pseudo"),
    Option("tcav_pseudo_concepts", "pseudo-concepts K behind tcav_null = pseudo; a check whose exact rank test "
           "needs more (over more than 3 layers, or direction either) measures as many as it needs "
           "(default: 60)", "K"),
    Option("tcav_margin", "equivalence margin of assert_concept_insignificant, in units of the random sets' "
           "spread: the check then passes only if the data show the concept's effect below it (default: none, "
           "the plain not-significant check)", "M"),
    Option("tcav_max_detectable_effect", "an insignificance check without a margin warns (TCAVPowerWarning) when "
           "its detectable effect (80 percent power, in units of the random sets' spread) exceeds this; none: never "
           "(default: 4)", "EFFECT"),
    Option("tcav_min_cav_accuracy", "a layer whose concept CAVs score below this mean held-out accuracy is "
           "inconclusive, besides the test that they beat chance (default: none)", "ACC"),
    Option("tcav_on_bad_image", "an image file that cannot be decoded: warn (skip it with a warning) "
           "or error (fail the test) (default: warn)", "warn|error"),
)


@dataclass(frozen=True)
class TCAVConfig:
    """Validated settings of one run; defaults are those of a bare ``pytest``.

    ``sources`` says where each non-default value came from (for error messages
    that point at the line to fix).
    """

    concepts: Path | None = None
    inputs: Path | None = None
    classes: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    transform: str | None = None
    #: ``tcav_tokenizer``: text -> model inputs, as 'module:callable' (imported on first use).
    tokenizer: str | None = None
    random_sets: int = 10
    alpha: float = 0.05
    seed: int = 0
    device: str | None = None
    batch_size: int = 64
    method: str = "gradient"
    n_steps: int = 5
    #: ``tcav_layer_point``: a layer's "output" or its "input".
    layer_point: str = "output"
    #: ``tcav_layer_call``: which call of a module run several times per pass is studied (None: refused).
    layer_call: int | None = None
    #: ``tcav_pooling``: what a CAV sees of a token or convolution layer (engine/pooling.py).
    pooling: str = "flatten"
    correction: str = "holm"
    #: None: no disk cache (outside pytest); a pytest run defaults to ``.pytest_cache/d/tcav``.
    cache_dir: Path | None = None
    cache: str = "readwrite"
    cache_size: int | None = DEFAULT_MAX_BYTES
    memory_cache: int | None = DEFAULT_MEMORY_BYTES
    #: ``tcav_cache_lock``: the disk cache's entry locks, ``fcntl`` or ``soft`` (``CACHE_LOCKS``).
    cache_lock: str = "fcntl"
    #: ``tcav_threads``: torch intra-op threads the session sets when it is built; None: auto.
    threads: int | None = None
    #: auto's choice on a pytest-xdist worker whose torch was loaded before the plugin could set
    #: ``OMP_NUM_THREADS``: (threads, torch's count then); the session sets it unless the count changed since.
    worker_threads: tuple[int, int] | None = None
    #: What loading a folder does with an undecodable image file (``concepts.BAD_IMAGE_POLICIES``).
    on_bad_image: str = "warn"
    #: ``tcav_require_calibration``: what a check does without a current calibration within alpha.
    require_calibration: str = "off"
    #: ``tcav_calibrate``: pseudo-concepts a check tests when its calibration is missing or stale (0: never).
    calibrate: int = 0
    #: ``tcav_null``: "random" (the random sets' spread) or "pseudo" (pseudo-concepts on the same library).
    null: str = "random"
    #: ``tcav_pseudo_concepts``: K, the pseudo-concepts behind ``null = pseudo``.
    pseudo_concepts: int = DEFAULT_PSEUDO_CONCEPTS
    #: ``tcav_margin``: the equivalence margin of insignificance checks (None: the plain check).
    margin: float | None = None
    #: ``tcav_max_detectable_effect``: above it, an insignificance check without a margin warns (None: never).
    max_detectable_effect: float | None = 4.0
    #: ``tcav_min_cav_accuracy``: a layer whose mean CAV accuracy is below it is inconclusive (None: no floor).
    min_cav_accuracy: float | None = None
    #: ``--tcav-update-baselines``: write baselines instead of failing on a missing or moved one.
    update_baselines: bool = False
    root: Path = field(default_factory=Path.cwd)
    sources: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def source(self, key: str) -> str:
        """Where a setting came from, e.g. ``--tcav-concepts`` or ``tcav_concepts in pytest.ini``."""
        return self.sources.get(key, f"default of {key}")

    def load_transform(self) -> Callable[[Any], Any] | None:
        """Import the configured transform; errors name the setting to fix."""
        if self.transform is None:
            return None
        return import_callable(self.transform, self.source("tcav_transform"))

    def load_tokenizer(self) -> Callable[[Any], Any] | None:
        """Import the configured tokenizer; errors name the setting to fix."""
        if self.tokenizer is None:
            return None
        return import_callable(self.tokenizer, self.source("tcav_tokenizer"))

    def class_index(self, name: str) -> int:
        """The index of a class name from ``tcav_classes``, or a clear error."""
        if name in self.classes:
            return self.classes[name]
        if not self.classes:
            raise ConfigurationError(
                f"target {name!r} is a class name, but no class names are configured; set "
                "tcav_classes (e.g. 'zebra=340') or pass the class index"
            )
        from difflib import get_close_matches

        close = get_close_matches(name, list(self.classes), n=3)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ConfigurationError(
            f"unknown class name {name!r}{hint} (tcav_classes has: {', '.join(sorted(self.classes))})"
        )


def import_callable(spec: str, origin: str = "tcav_transform") -> Callable[[Any], Any]:
    """Import ``package.module:attribute`` and check that it is callable."""
    if not _TRANSFORM_PATTERN.match(spec):
        raise ConfigurationError(f"{origin}: {spec!r} is not of the form 'package.module:callable'")
    module_name, _, attribute = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(
            f"{origin}: cannot import module {module_name!r} for {spec!r} ({type(exc).__name__}: {exc}); "
            "is it installed, or does the ini file need 'pythonpath = .'?"
        ) from exc
    value: Any = module
    for part in attribute.split("."):
        if not hasattr(value, part):
            raise ConfigurationError(f"{origin}: module {module_name!r} has no attribute {attribute!r}")
        value = getattr(value, part)
    if not callable(value):
        raise ConfigurationError(f"{origin}: {spec!r} is a {type(value).__name__}, not a callable")
    return value


def parse_classes(lines: list[str] | str, origin: str) -> dict[str, int]:
    """``name=index`` pairs, separated by commas or line breaks, into a mapping."""
    items = lines.replace("\n", ",").split(",") if isinstance(lines, str) else [
        part for line in lines for part in str(line).split(",")
    ]
    classes: dict[str, int] = {}
    for item in (i.strip() for i in items):
        if not item:
            continue
        name, sep, index = (s.strip() for s in item.partition("="))
        if not sep or not name:
            raise ConfigurationError(f"{origin}: {item!r} is not of the form name=index")
        try:
            value = int(index)
        except ValueError:
            raise ConfigurationError(f"{origin}: class index of {name!r} must be an integer, got {index!r}") from None
        if value < 0:
            raise ConfigurationError(f"{origin}: class index of {name!r} must be >= 0, got {value}")
        if name in classes and classes[name] != value:
            raise ConfigurationError(f"{origin}: class {name!r} is given twice ({classes[name]} and {value})")
        classes[name] = value
    return classes


def _int(text: str, origin: str, minimum: int) -> int:
    try:
        value = int(str(text).strip())
    except ValueError:
        raise ConfigurationError(f"{origin} must be an integer, got {text!r}") from None
    if value < minimum:
        raise ConfigurationError(f"{origin} must be at least {minimum}, got {value}")
    return value


def _choice(text: str, origin: str, choices: tuple[str, ...]) -> str:
    value = str(text).strip()
    if value not in choices:
        raise ConfigurationError(f"{origin} must be one of {', '.join(choices)}, got {value!r}")
    return value


def _positive_or_none(text: Any, origin: str) -> float | None:
    """A positive number, or None for ``none``/``off`` (the setting switched off)."""
    word = str(text).strip().lower()
    if word in ("none", "off", ""):
        return None
    try:
        value = float(word)
    except ValueError:
        raise ConfigurationError(f"{origin} must be a positive number or none, got {text!r}") from None
    if not math.isfinite(value) or value <= 0.0:
        raise ConfigurationError(f"{origin} must be a positive number or none, got {text!r}")
    return value


def build_config(raw: Mapping[str, tuple[Any, str]], *, root: Path) -> TCAVConfig:
    """A validated config from raw values: key -> (value, origin), unset keys absent.

    ``origin`` names where the value came from; relative paths in ``raw`` must
    already be resolved by the caller, which knows the file or directory they
    are relative to.
    """
    get = raw.get
    values: dict[str, Any] = {}
    if (item := get("tcav_concepts")) is not None:
        values["concepts"] = Path(item[0])
    if (item := get("tcav_inputs")) is not None:
        values["inputs"] = Path(item[0])
    if (item := get("tcav_classes")) is not None:
        values["classes"] = MappingProxyType(parse_classes(item[0], item[1]))
    if (item := get("tcav_transform")) is not None:
        spec = str(item[0]).strip()
        if not _TRANSFORM_PATTERN.match(spec):
            raise ConfigurationError(f"{item[1]}: {spec!r} is not of the form 'package.module:callable'")
        values["transform"] = spec
    if (item := get("tcav_tokenizer")) is not None:
        spec = str(item[0]).strip()
        if not _TRANSFORM_PATTERN.match(spec):
            raise ConfigurationError(f"{item[1]}: {spec!r} is not of the form 'package.module:callable'")
        values["tokenizer"] = spec
    if (item := get("tcav_random_sets")) is not None:
        values["random_sets"] = _int(item[0], item[1], 1)
    if (item := get("tcav_alpha")) is not None:
        try:
            alpha = float(str(item[0]).strip())
        except ValueError:
            raise ConfigurationError(f"{item[1]} must be a number, got {item[0]!r}") from None
        if not (0.0 < alpha < 1.0) or math.isnan(alpha):
            raise ConfigurationError(f"{item[1]} must lie strictly between 0 and 1, got {alpha}")
        values["alpha"] = alpha
    if (item := get("tcav_seed")) is not None:
        values["seed"] = _int(item[0], item[1], 0)
    if (item := get("tcav_device")) is not None:
        device = str(item[0]).strip()
        if not _DEVICE_PATTERN.match(device) or device.split(":")[0] not in DEVICE_TYPES:
            raise ConfigurationError(f"{item[1]}: {device!r} is not a device; use {_DEVICES_HELP}")
        values["device"] = device
    if (item := get("tcav_batch_size")) is not None:
        values["batch_size"] = _int(item[0], item[1], 1)
    if (item := get("tcav_method")) is not None:
        values["method"] = _choice(item[0], item[1], METHODS)
    if (item := get("tcav_n_steps")) is not None:
        values["n_steps"] = _int(item[0], item[1], 1)
    if (item := get("tcav_layer_point")) is not None:
        values["layer_point"] = _choice(item[0], item[1], LAYER_POINTS)
    if (item := get("tcav_layer_call")) is not None:
        word = str(item[0]).strip().lower()
        values["layer_call"] = None if word in ("none", "off") else _int(item[0], item[1], 0)
    if (item := get("tcav_pooling")) is not None:
        values["pooling"] = _choice(item[0], item[1], POOLINGS)
    if (item := get("tcav_correction")) is not None:
        values["correction"] = _choice(item[0], item[1], CORRECTIONS)
    if (item := get("tcav_cache_dir")) is not None:
        values["cache_dir"] = Path(item[0])
    if (item := get("tcav_cache")) is not None:
        values["cache"] = _choice(item[0], item[1], CACHE_MODES)
    for key, name in (("tcav_cache_size", "cache_size"), ("tcav_memory_cache", "memory_cache")):
        if (item := get(key)) is not None:
            try:
                values[name] = parse_size(str(item[0]))
            except ConfigurationError as exc:
                raise ConfigurationError(f"{item[1]}: {exc}") from None
    if (item := get("tcav_cache_lock")) is not None:
        values["cache_lock"] = _choice(item[0], item[1], CACHE_LOCKS)
    if (item := get("tcav_threads")) is not None:
        values["threads"] = parse_threads(item[0], item[1])
    if (item := get("tcav_on_bad_image")) is not None:
        values["on_bad_image"] = _choice(item[0], item[1], BAD_IMAGE_POLICIES)
    if (item := get("tcav_require_calibration")) is not None:
        values["require_calibration"] = _choice(item[0], item[1], REQUIRE_CALIBRATION)
    if (item := get("tcav_calibrate")) is not None:
        values["calibrate"] = _int(item[0], item[1], 0)
    if (item := get("tcav_null")) is not None:
        values["null"] = _choice(item[0], item[1], NULLS)
    if (item := get("tcav_pseudo_concepts")) is not None:
        values["pseudo_concepts"] = _int(item[0], item[1], 3)
    if (item := get("tcav_margin")) is not None:
        values["margin"] = _positive_or_none(item[0], item[1])
    if (item := get("tcav_max_detectable_effect")) is not None:
        values["max_detectable_effect"] = _positive_or_none(item[0], item[1])
    if (item := get("tcav_min_cav_accuracy")) is not None:
        accuracy = _positive_or_none(item[0], item[1])
        if accuracy is not None and accuracy > 1.0:
            raise ConfigurationError(f"{item[1]} must lie in [0, 1] (a held-out accuracy), got {accuracy}")
        values["min_cav_accuracy"] = accuracy
    sources = MappingProxyType({key: origin for key, (_value, origin) in raw.items()})
    return TCAVConfig(root=root, sources=sources, **values)


def config_from_pytest(config: Any) -> TCAVConfig:
    """Read every ``tcav_*`` ini key and ``--tcav-*`` option of a ``pytest.Config``.

    Empty values count as unset, so ``--tcav-device=`` falls back to the ini file.
    """
    inipath: Path | None = getattr(config, "inipath", None)
    root = inipath.parent if inipath is not None else Path(config.rootpath)
    invocation_dir = Path(config.invocation_params.dir)
    ini_name = inipath.name if inipath is not None else "the ini file"
    raw: dict[str, tuple[Any, str]] = {}
    for option in OPTIONS:
        cli = config.getoption(option.key, None)
        if cli is not None and str(cli).strip() != "":
            value: Any = cli
            if option.key in _PATH_KEYS:
                value = (invocation_dir / os.path.expanduser(str(cli))).resolve()
            raw[option.key] = (value, option.flag)
            continue
        ini = config.getini(option.key)
        if ini is None or ini == "" or ini == []:
            continue
        if option.key in _PATH_KEYS:
            ini = (root / os.path.expanduser(str(ini).strip())).resolve()
        raw[option.key] = (ini, f"{option.key} in {ini_name}")
    settings = build_config(raw, root=root)
    if settings.cache_dir is None:
        settings = dataclasses.replace(settings, cache_dir=default_cache_dir(config))
    if config.getoption("tcav_update_baselines", False):  # a command-line flag only, never an ini key
        settings = dataclasses.replace(settings, update_baselines=True)
    return settings


_PATH_KEYS = ("tcav_concepts", "tcav_inputs", "tcav_cache_dir")


def check_device_available(config: TCAVConfig) -> None:
    """``tcav_device`` names a device this machine has: said at startup, not by torch in every test."""
    check_device(config.device, config.source("tcav_device"))


# -- values people type: cache sizes, thread counts, devices ------------------------------------
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?)b?\s*$", re.IGNORECASE)


def parse_size(text: str | int | None) -> int | None:
    """Bytes from ``"2GiB"``, ``"500MB"``, ``"1.5g"``, ``"1048576"``; ``None``/``"none"``/``"0"`` mean unbounded.

    Binary and decimal prefixes are both accepted (``GiB`` = 1024**3,
    ``GB`` = 1000**3; a bare ``G`` is binary), so a command-line option can
    take whatever people type.
    """
    if text is None:
        return None
    if isinstance(text, int):
        return None if text <= 0 else text
    if text.strip().lower() in ("none", "unlimited", "0", ""):
        return None
    match = _SIZE_RE.match(text)
    if not match:
        raise ConfigurationError(f"cannot read cache size {text!r}; write e.g. 2GiB, 500MB or a number of bytes")
    number, prefix, binary = match.groups()
    power = "kmgt".find(prefix.lower()) + 1 if prefix else 0
    base = 1024 if (binary or (prefix and not text.strip().lower().endswith("b"))) else 1000
    size = int(float(number) * base**power)
    return None if size <= 0 else size


def parse_threads(text: Any, origin: str) -> int | None:
    """``tcav_threads``: ``auto`` (None) or a number of threads (at least 1)."""
    value = str(text).strip()
    if value.lower() == "auto":
        return None
    if not value.isdigit() or int(value) < 1:
        raise ConfigurationError(f"{origin} must be auto or a number of threads (at least 1), got {text!r}")
    return int(value)


def check_device(device: str | None, origin: str) -> None:
    """``tcav_device`` names a device this machine has: said at startup, not by torch in every test.

    Imports torch, so it is called only when the setting is given.
    """
    if device is None or device == "cpu":
        return
    import torch

    kind, _, index = device.partition(":")
    backend = {"cuda": torch.cuda, "xpu": getattr(torch, "xpu", None), "mps": torch.backends.mps}[kind]
    count = 0
    if backend is not None and backend.is_available():
        count = int(backend.device_count()) if hasattr(backend, "device_count") else 1
    if count > int(index or 0):
        return
    have = "none" if count == 0 else f"{kind}:0" + (f" to {kind}:{count - 1}" if count > 1 else "")
    raise ConfigurationError(
        f"{origin}: {device!r} is not available on this machine ({kind} devices: "
        f"{have}; torch {torch.__version__}); use {'one of those' if count else 'cpu'}, or leave tcav_device "
        "unset to test on CUDA when present, else the CPU"
    )


def default_cache_dir(config: Any) -> Path:
    """``d/tcav`` under pytest's cache directory (its ``cache_dir`` ini option, ``.pytest_cache``)."""
    try:
        cache_dir = str(config.getini("cache_dir") or ".pytest_cache")
    except ValueError:  # the cacheprovider plugin is disabled (-p no:cacheprovider)
        cache_dir = ".pytest_cache"
    return Path(config.rootpath) / os.path.expanduser(os.path.expandvars(cache_dir)) / "d" / "tcav"
