"""The TCAV computation: examples -> activations -> CAVs -> scores and p-values.  Knows nothing of pytest,
YAML or sessions (docs/architecture.md)."""
