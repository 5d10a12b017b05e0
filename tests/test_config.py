"""Settings of a run: defaults, validation that names the setting, class names, the lazily imported
transform (ini files and --tcav-* options in real runs are in tests/plugin/test_plugin_config.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_tcav.config import CORRECTIONS, METHODS, TCAVConfig, build_config, import_callable, parse_classes
from pytest_tcav.errors import ConfigurationError


def test_engine_constants_match_the_engine() -> None:
    from pytest_tcav.config import NULLS
    from pytest_tcav.engine.activations import METHODS as ENGINE_METHODS
    from pytest_tcav.engine.conditional_null import NULLS as ENGINE_NULLS
    from pytest_tcav.engine.statistics import CORRECTIONS as ENGINE_CORRECTIONS

    assert METHODS == ENGINE_METHODS
    assert CORRECTIONS == ENGINE_CORRECTIONS
    assert NULLS == ENGINE_NULLS  # config's copy keeps `import pytest_tcav.config` light


def test_defaults() -> None:
    config = build_config({}, root=Path("/project"))
    assert (config.concepts, config.inputs, dict(config.classes), config.transform) == (None, None, {}, None)
    assert (config.random_sets, config.alpha, config.seed, config.device) == (10, 0.05, 0, None)
    assert (config.batch_size, config.method, config.n_steps, config.correction) == (64, "gradient", 5, "holm")
    assert config == TCAVConfig(root=Path("/project"))


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("tcav_random_sets", "ten", "must be an integer"),
        ("tcav_random_sets", "0", "at least 1"),
        ("tcav_alpha", "0", "strictly between 0 and 1"),
        ("tcav_alpha", "1.5", "strictly between 0 and 1"),
        ("tcav_alpha", "nan", "strictly between 0 and 1"),
        ("tcav_alpha", "five percent", "must be a number"),
        ("tcav_seed", "-1", "at least 0"),
        ("tcav_batch_size", "0", "at least 1"),
        ("tcav_n_steps", "0", "at least 1"),
        ("tcav_method", "saliency", "gradient, integrated_gradients"),
        ("tcav_correction", "fdr", "holm, bonferroni, none"),
        ("tcav_device", "GPU 0", "not a device; use cpu, cuda, cuda:N"),
        ("tcav_device", "gpu", "'gpu' is not a device; use cpu, cuda, cuda:N .* mps"),
        ("tcav_device", "cuda:x", "not a device"),
        ("tcav_transform", "mymodule.transform", "package.module:callable"),
        ("tcav_classes", ["zebra"], "name=index"),
        ("tcav_classes", ["zebra=x"], "must be an integer"),
        ("tcav_classes", ["zebra=-3"], ">= 0"),
        ("tcav_classes", ["zebra=1", "zebra=2"], "given twice"),
    ],
)
def test_invalid_values_name_the_setting(key: str, value: object, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as info:
        build_config({key: (value, f"{key} in pytest.ini")}, root=Path("/p"))
    assert f"{key} in pytest.ini" in str(info.value)


def test_classes_accept_lines_and_commas() -> None:
    assert parse_classes(["zebra=340", "leopard = 288, tiger=292", ""], "x") == {
        "zebra": 340, "leopard": 288, "tiger": 292}
    assert parse_classes("zebra=340,leopard=288", "x") == {"zebra": 340, "leopard": 288}


def test_class_index_suggests_close_names() -> None:
    config = build_config({"tcav_classes": (["zebra=340", "zebu=3"], "x")}, root=Path("/p"))
    assert config.class_index("zebra") == 340
    with pytest.raises(ConfigurationError, match="did you mean 'zebra'"):
        config.class_index("zebr")
    with pytest.raises(ConfigurationError, match="no class names are configured"):
        TCAVConfig().class_index("zebra")


def test_transform_is_imported_lazily_with_clear_errors() -> None:
    assert import_callable("os.path:join") is __import__("os").path.join
    with pytest.raises(ConfigurationError, match="cannot import module 'no_such_module_xyz'.*pythonpath"):
        import_callable("no_such_module_xyz:f", "tcav_transform in pytest.ini")
    with pytest.raises(ConfigurationError, match="has no attribute 'nope'"):
        import_callable("os.path:nope")
    with pytest.raises(ConfigurationError, match="not a callable"):
        import_callable("os:sep")
    # A missing module is no error until the transform is needed.
    config = build_config({"tcav_transform": ("no_such_module_xyz:f", "--tcav-transform")}, root=Path("/p"))
    with pytest.raises(ConfigurationError, match="--tcav-transform"):
        config.load_transform()
