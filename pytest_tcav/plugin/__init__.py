"""pytest glue for pytest-tcav, loaded through the ``pytest11`` entry point ``tcav``.

Disable it with ``-p no:tcav``; load it explicitly (when plugin autoloading is
off) with ``-p pytest_tcav.plugin``.  What it adds to a run:

* the ``--tcav-*`` options (group "tcav") and matching ``tcav_*`` ini keys;
* the ``tcav`` marker, set automatically on concept tests (see
  :func:`is_concept_test`) so that ``-m "not tcav"`` skips them;
* the session-scoped fixtures ``tcav`` (a :class:`~pytest_tcav.session.session.TCAVSession`)
  and ``tcav_concepts`` (its concept library);
* ``tcav_*.yaml`` files (ini ``tcav_yaml_pattern``) collected as declarative
  concept tests (:mod:`pytest_tcav.plugin.yaml_items`);
* ``--tcav-update-baselines`` and the baseline account after the summary
  (:mod:`pytest_tcav.plugin.baselines`);
* a terminal summary with one row per concept check, merged from
  pytest-xdist workers, which send their records as JSON
  (:mod:`pytest_tcav.plugin.xdist`) rather than writing shared files;
* the report files, the GitHub job summary, and each test's checks as
  JUnit XML properties (:mod:`pytest_tcav.plugin.reporting`).

pytest imports this module in every run of every project where pytest-tcav is
installed, so it imports none of torch, numpy, scipy, scikit-learn or yaml:
the session, and the engine behind it, are built on the first concept check,
and YAML files are read only once one matches the pattern.
"""

from __future__ import annotations

import inspect
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_tcav.config import OPTIONS, check_device_available, config_from_pytest
from pytest_tcav.errors import ConfigurationError
from pytest_tcav.plugin import reporting, xdist, xdist_threads
from pytest_tcav.plugin.baselines import BaselineTracker
from pytest_tcav.plugin.stash import HANDLE_KEY, REPORTS_KEY
from pytest_tcav.plugin.yaml_items import DEFAULT_PATTERNS, PATTERN_INI
from pytest_tcav.plugin.yaml_items import collect_file as collect_yaml_file
from pytest_tcav.reports.cache_line import cache_line, merge
from pytest_tcav.reports.terminal import error_lines, summary_lines
from pytest_tcav.session.registry import SessionHandle, activate, deactivate

if TYPE_CHECKING:
    from pytest_tcav.checks.records import CheckRecord
    from pytest_tcav.session.library import ConceptLibrary
    from pytest_tcav.session.session import TCAVSession

#: The name of the ``pytest11`` entry point: ``-p no:tcav`` disables the plugin.
ENTRY_POINT_NAME = "tcav"
#: The parts of a pytest-xdist worker's payload with its concept checks and its cache counts.
RECORDS_PART = "records"
CACHE_PART = "cache"

#: A test whose own code names one of these is a concept test.
ASSERTION_NAMES = frozenset({"assert_concept_significant", "assert_concept_insignificant", "assert_concept_stable"})
#: A test that uses one of these fixtures, directly or through other fixtures, is a concept test.
FIXTURE_NAMES = frozenset({"tcav", "tcav_concepts"})

MARKER_HELP = ("tcav: a concept test (TCAV); set automatically on tests that use the tcav fixtures "
               "or call the concept assertions, deselect with -m 'not tcav'")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("tcav", "concept tests (pytest-tcav)")
    for option in OPTIONS:
        group.addoption(option.flag, dest=option.key, metavar=option.metavar, default=None,
                        help=f"{option.help}. ini: {option.key}")
        parser.addini(option.key, help=option.help, type=option.ini_type, default=None)  # type: ignore[arg-type]
    group.addoption("--tcav-clear-cache", dest="tcav_clear_cache", action="store_true", default=False,
                    help="remove every entry of the TCAV disk cache (tcav_cache_dir) before the run")
    reporting.add_options(group, parser)  # --tcav-json, --tcav-html, --tcav-markdown, ini tcav_github_summary
    group.addoption("--tcav-update-baselines", dest="tcav_update_baselines", action="store_true", default=False,
                    help="write the baselines of stability checks (assert_concept_stable, 'stable:' in YAML "
                         "tests): create missing ones and replace moved ones, instead of failing")
    parser.addini(PATTERN_INI, type="args", default=list(DEFAULT_PATTERNS),
                  help="file-name patterns of declarative concept tests, collected as test items "
                       "(default: tcav_*.yaml; empty: none)")


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config, parser: pytest.Parser, args: list[str]) -> None:
    """On a pytest-xdist worker, before any conftest imports torch: its threads (:mod:`.threads`)."""
    xdist_threads.prepare(early_config)


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    """Declarative concept tests: ``tcav_*.yaml`` files (ini ``tcav_yaml_pattern``), see docs/yaml-tests.md."""
    return collect_yaml_file(file_path, parent)


def pytest_plugin_registered(plugin: object, plugin_name: str, manager: pytest.PytestPluginManager) -> None:
    """Loaded by module name (``-p pytest_tcav.plugin``), keep autoloading from loading it twice.

    pytest would otherwise register this module a second time under its entry
    point name and stop with "Plugin already registered under a different name".
    """
    if plugin is sys.modules[__name__] and plugin_name != ENTRY_POINT_NAME:
        if manager.get_plugin(ENTRY_POINT_NAME) is None and not manager.is_blocked(ENTRY_POINT_NAME):
            manager.set_blocked(ENTRY_POINT_NAME)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER_HELP)
    try:
        settings = xdist_threads.with_plan(config, config_from_pytest(config))
        check_device_available(settings)  # imports torch only when tcav_device is set
    except ConfigurationError as exc:
        raise pytest.UsageError(f"pytest-tcav: {exc}") from None
    handle = SessionHandle(settings)
    config.stash[HANDLE_KEY] = handle
    config.pluginmanager.register(xdist.Exchange(), "tcav-xdist")  # the workers' payloads
    config.pluginmanager.register(  # baseline counts and unused baseline files, merged across xdist workers
        BaselineTracker(config, lambda: run_records(config, handle)), "tcav-baselines")
    if config.getoption("tcav_clear_cache", False) and not hasattr(config, "workerinput"):
        clear_cache(settings.cache_dir)  # once, in the controller, before any xdist worker starts
    activate(handle)


def clear_cache(cache_dir: Any) -> int:
    """``--tcav-clear-cache``: remove the disk cache's entries (only files that follow its layout)."""
    if cache_dir is None:
        return 0
    from pytest_tcav.storage.disk import DiskStore

    return DiskStore(cache_dir).clear()


def run_records(config: pytest.Config, handle: SessionHandle) -> list[CheckRecord]:
    """The run's concept checks: this process's, then each pytest-xdist worker's, in the order they finished."""
    from pytest_tcav.checks.records import from_payload

    return handle.records() + [record for part in xdist.parts(config, RECORDS_PART) for record in from_payload(part)]


def pytest_unconfigure(config: pytest.Config) -> None:
    handle = config.stash.get(HANDLE_KEY, None)
    if handle is not None:
        deactivate(handle)


def pytest_report_header(config: pytest.Config) -> str | None:
    """One line of settings, only in projects that configure pytest-tcav."""
    handle = config.stash.get(HANDLE_KEY, None)
    if handle is None or not handle.config.sources:
        return None
    c = handle.config
    null = f", null=pseudo (K={c.pseudo_concepts})" if c.null == "pseudo" else ""
    return (f"tcav: concepts={c.concepts}, inputs={c.inputs}, random_sets={c.random_sets}, "
            f"alpha={c.alpha}, seed={c.seed}, method={c.method}{null}")


# -- marking ------------------------------------------------------------------------------


def _code_names(code: types.CodeType) -> Iterator[str]:
    yield from code.co_names
    for const in code.co_consts:
        if isinstance(const, types.CodeType):  # nested functions, lambdas, comprehensions
            yield from _code_names(const)


def is_concept_test(item: pytest.Item) -> bool:
    """The auto-marking rule: does this test use the tcav fixtures or name an assertion?

    A test is a concept test when it requests ``tcav`` or ``tcav_concepts``
    (directly or through its fixtures), or when its own body (including
    functions nested in it) refers to ``assert_concept_significant`` or
    ``assert_concept_insignificant``, by bare name or as an attribute.  A test
    that calls them only through a helper defined elsewhere is not seen: mark
    it with ``@pytest.mark.tcav``.
    """
    if FIXTURE_NAMES.intersection(getattr(item, "fixturenames", ())):
        return True
    function = getattr(item, "function", None)
    if function is None:
        return False
    code = getattr(inspect.unwrap(function), "__code__", None)
    return code is not None and not ASSERTION_NAMES.isdisjoint(_code_names(code))


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # tryfirst: the marker must be on the items before "-m" deselects by it.
    for item in items:
        if item.get_closest_marker("tcav") is None and is_concept_test(item):
            item.add_marker(pytest.mark.tcav)


# -- the session -------------------------------------------------------------------------


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """Tell the session which test is running, so that its records carry the test id."""
    handle = item.config.stash.get(HANDLE_KEY, None)
    if handle is not None:
        handle.current_nodeid = item.nodeid
        handle.current_path = item.path  # stability checks keep their baselines next to it
    try:
        yield
    finally:
        if handle is not None:
            handle.current_nodeid = None
            handle.current_path = None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Note caught checks and expected failures; put the test's checks on it as JUnit XML properties.

    A check that failed (or raised) in a phase of the test that passed was
    caught by the test itself (``pytest.raises``, a ``try``): it is marked
    so, before its properties are attached, so that the summary, the reports
    and the JUnit XML agree with pytest.  A pytest-xdist worker marks its
    records here too, before it sends them.  The properties must be on the
    item before its report is made (pytest copies them into the report); a
    failed check of an xfail test is marked so that the summary does not
    show it as a surprise.
    """
    handle = item.config.stash.get(HANDLE_KEY, None)
    if handle is not None:
        reporting.mark_caught(item, handle, passed=call.excinfo is None)
        reporting.attach_properties(item, handle)
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if handle is not None and handle.built and hasattr(report, "wasxfail"):
        for record in handle.get().records:
            if record.nodeid == item.nodeid:
                record.xfail = True


@pytest.fixture(scope="session")
def tcav(request: pytest.FixtureRequest) -> TCAVSession:
    """The run's TCAV session: settings, concept and input libraries, shared cache, assertions."""
    handle = request.config.stash.get(HANDLE_KEY, None)
    if handle is None:  # pragma: no cover - pytest_configure always sets it
        raise pytest.UsageError("pytest-tcav was not configured")
    return handle.get()


@pytest.fixture(scope="session")
def tcav_concepts(tcav: TCAVSession) -> ConceptLibrary:
    """The concept library configured by ``tcav_concepts``."""
    return tcav.concepts


# -- reporting ---------------------------------------------------------------------------


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """On a pytest-xdist worker, put the records in the payload for the controller.

    Elsewhere (a serial run, or the controller, which has every worker's
    records by now) write the requested report files, once.
    """
    config = session.config
    handle = config.stash.get(HANDLE_KEY, None)
    if handle is None:
        return
    if xdist.sending(config):
        from pytest_tcav.checks.records import payload

        xdist.put(config, RECORDS_PART, payload(handle.records()))  # plain JSON types, with their version
        if handle.built:
            xdist.put(config, CACHE_PART, handle.get().cache_stats())
        environment = reporting.worker_environment(config, handle)  # only when a report is asked for
        if environment is not None:
            xdist.put(config, reporting.ENV_PART, environment)
    elif not hasattr(config, "workerinput"):
        config.stash[REPORTS_KEY] = reporting.write_reports(config, run_records(config, handle), handle,
                                                            int(exitstatus))


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    handle = config.stash.get(HANDLE_KEY, None)
    if handle is None or hasattr(config, "workerinput"):
        return
    own = [handle.get().cache_stats()] if handle.built else []
    cache = cache_line(merge(own + xdist.parts(config, CACHE_PART)))
    if cache is not None:  # before the checks' table, which runs to the next "=" line
        terminalreporter.write_sep("-", f"tcav cache: {cache}")
    records = run_records(config, handle)
    # the terminal's width, which the table fits; -v: the whole table (lines as long as they are)
    width = None if (config.getoption("verbose", 0) or 0) > 0 else config.get_terminal_writer().fullwidth
    lines = summary_lines(records, width)
    reports = reporting.summary_lines(config.stash.get(REPORTS_KEY, []))
    if not lines and not reports:
        return
    terminalreporter.write_sep("=", "TCAV concept checks")
    errors = set(error_lines(records, width)[1:])
    for number, line in enumerate(lines):
        failed = number >= 2 and number <= len(records) + 1 and line.rstrip().endswith(("FAILED", "ERROR"))
        terminalreporter.write_line(line, red=failed or line in errors, bold=number == 0)
    for text, error in reports:  # the report files written, after the table
        terminalreporter.write_line(text, red=error)
