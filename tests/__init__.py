"""The project's own tests, in folders that mirror the packages of pytest_tcav (helpers/ holds shared code)."""
