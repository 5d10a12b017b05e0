"""Shared code of the test suite.

synthetic: generated images and small models of known ground truth; tiny_model: the hand-wired
EdgeNet; plugin_helpers: small pytest projects for pytester runs.
"""
