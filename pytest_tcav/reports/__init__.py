"""Records (:class:`pytest_tcav.checks.records.CheckRecord`) -> terminal text, JSON, HTML, markdown, JUnit
properties; a stored JSON report read back as records (docs/architecture.md)."""
