"""Tests of pytest_tcav.session: libraries, the session and the registry."""
