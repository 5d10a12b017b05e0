"""Records -> text, JSON and HTML; ``text`` is a leaf any layer may use (docs/architecture.md)."""
