"""Tests of pytest_tcav.reports: the JSON and HTML reports."""
