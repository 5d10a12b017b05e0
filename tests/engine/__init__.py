"""Tests of pytest_tcav.engine: activations, CAVs, statistics, and verdicts on models of known ground truth."""
