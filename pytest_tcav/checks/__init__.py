"""Expectations -> verdicts: the significance and stability checks, baseline files, records, YAML specs.

Free of pytest and of the session at run time (docs/architecture.md)."""
