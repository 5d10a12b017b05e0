"""Hand-made check records for the report tests, and a checker of reports against docs/report.schema.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pytest_tcav.checks.records import CheckRecord
from pytest_tcav.reports import json as report_json

try:  # loaded up front, or in-process pytester runs would import it again each time
    import matplotlib.backends.backend_agg  # noqa: F401
    import matplotlib.figure  # noqa: F401

    PLOTS = True
except ImportError:  # the report extra is not installed: pages have tables only
    PLOTS = False

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_FILE = ROOT / "docs" / "report.schema.json"
ENV = report_json.environment("cpu")

# -- a small JSON Schema checker (the subset docs/report.schema.json uses) ---------------

_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}


def _is_type(value: Any, name: str) -> bool:
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, _TYPES[name])


def schema_errors(value: Any, schema: dict[str, Any], root: dict[str, Any], where: str = "$") -> list[str]:
    """Violations of ``schema`` by ``value``: type, const, enum, required, properties, items, minimum, $ref."""
    if "$ref" in schema:
        target: Any = root
        for part in schema["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        return schema_errors(value, target, root, where)
    errors = []
    types = schema.get("type")
    if types is not None:
        names = [types] if isinstance(types, str) else types
        if not any(_is_type(value, name) for name in names):
            return [f"{where}: {value!r:.60} is not of type {types}"]
    if "const" in schema and value != schema["const"]:
        errors.append(f"{where}: {value!r} != {schema['const']!r}")
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{where}: {value!r} not in {schema['enum']}")
    if "minimum" in schema and _is_type(value, "number") and value < schema["minimum"]:
        errors.append(f"{where}: {value} < {schema['minimum']}")
    if isinstance(value, dict):
        errors += [f"{where}: missing {key!r}" for key in schema.get("required", []) if key not in value]
        properties = schema.get("properties", {})
        for key, item in value.items():
            if key in properties:
                errors += schema_errors(item, properties[key], root, f"{where}.{key}")
            elif isinstance(schema.get("additionalProperties"), dict):
                errors += schema_errors(item, schema["additionalProperties"], root, f"{where}.{key}")
    if isinstance(value, list) and "items" in schema:
        for k, item in enumerate(value):
            errors += schema_errors(item, schema["items"], root, f"{where}[{k}]")
    return errors


def validate(report: dict[str, Any]) -> None:
    schema = json.loads(SCHEMA_FILE.read_text())
    errors = schema_errors(report, schema, schema)
    assert not errors, "\n".join(errors[:20])
    try:
        import jsonschema
    except ImportError:
        return
    jsonschema.validate(report, schema)  # the full validator too, where it is installed


# -- report pieces ---------------------------------------------------------------------


def layer(name: str, significant: bool = True, **overrides: Any) -> dict[str, Any]:
    values = {"layer": name, "score": 0.9, "magnitude": 0.1, "statistic": 0.2, "null_mean": 0.0, "null_sd": 0.02,
              "t_statistic": 9.0, "p_value": 1e-5, "p_value_rank": 0.09, "p_corrected": 2e-5, "cav_accuracy": 0.95,
              "significant": significant, "concept_scores": [0.8, 0.9, 1.0], "concept_statistics": [0.1, 0.2, 0.3],
              "concept_magnitudes": [0.1, 0.1, 0.1], "cav_accuracies": [0.9, 0.95, 1.0],
              "null_statistics": [-0.01, 0.0, 0.01], "null_scores": [0.4, 0.5, 0.6]}
    values.update(overrides)
    return values


def record(**overrides: Any) -> CheckRecord:
    values = {"nodeid": "t.py::test_x", "seq": 3, "concept": "striped", "target": "zebra (0)",
              "layers": ["a", "b"], "expectation": "significant", "direction": "positive", "require": "all",
              "score_range": None, "alpha": 0.05, "results": [layer("a"), layer("b", False)],
              "model_fingerprint": "ab" * 32, "concept_fingerprint": "cd" * 32,
              "settings": {"method": "gradient", "seed": 0, "n_random": 3}, "outcome": "failed",
              "message": "Why: it is not."}
    values.update(overrides)
    return CheckRecord.from_dict(values)


def stability_record() -> CheckRecord:
    """A stability check's record as pytest_tcav.checks.stability writes it: layer -> numbers, before and after."""
    side = {"a": {"score": 1.0, "statistic": 0.3, "p_value": 1e-4, "p_corrected": 2e-4, "cav_accuracy": 0.9,
                  "significant": True, "concept_scores": [1.0, 1.0, 0.9], "concept_statistics": [0.3, 0.31, 0.29]}}
    after = {"a": {**side["a"], "score": 0.4, "statistic": 0.05, "significant": False,
                   "concept_scores": [0.5, 0.4, 0.3], "concept_statistics": [0.04, 0.05, 0.06]}}
    return record(nodeid="t.py::test_stable", expectation="stable", layers=["a"], results=[layer("a")],
                  before=side, after=after,
                  stability={"baseline": "zebra-striped", "path": "baselines/zebra-striped.tcav.yaml",
                             "action": "checked", "tolerance": 0.1, "model_changed": True, "moved": ["a"],
                             "layers": [{"layer": "a", "score_before": 1.0, "score_after": 0.4, "p_value": 3e-4,
                                         "p_corrected": 3e-4, "moved": True}]},
                  custom={"anything": [1, 2]})
