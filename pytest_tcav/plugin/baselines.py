"""The baseline account of a run: which baselines were checked, created, moved or left unused.

pytest glue: a :class:`BaselineTracker` notes the ``tcav_baselines`` folders
next to the collected tests, merges what pytest-xdist workers saw, and prints
the account after the concept-check table.  The checks themselves live in
:mod:`pytest_tcav.checks.stability`; this module needs only the names and
paths of baseline files (:mod:`pytest_tcav.checks.baseline_names`, free of
PyYAML), since the plugin loads it in every pytest run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_tcav.checks.baseline_names import BASELINE_DIR, UPDATE_FLAG, is_baseline_file
from pytest_tcav.plugin import xdist

if TYPE_CHECKING:
    from pytest_tcav.checks.records import CheckRecord, StabilityAccount

# -- the run's account: counts and unused files --------------------------------------------


def stability_records(records: Iterable[CheckRecord]) -> list[tuple[CheckRecord, StabilityAccount]]:
    """The stability checks of a run, each with its baseline's account."""
    return [(r, r.stability) for r in records if r.expectation == "stable" and r.stability is not None]


def unused_baselines(records: Iterable[CheckRecord], directories: Iterable[Path]) -> list[Path]:
    """Baseline files in ``directories`` that no check of the run used."""
    used = {Path(info.path) for _r, info in stability_records(records) if info.path}
    folders = set(directories) | {path.parent for path in used}
    unused: list[Path] = []
    for folder in sorted(folders):
        if not folder.is_dir():
            continue
        unused.extend(p for p in sorted(folder.iterdir()) if p.is_file() and is_baseline_file(p) and p not in used)
    return unused


def summary_lines(records: Iterable[CheckRecord], directories: Iterable[Path] = (), *,
                  partial: str | None = None, root: Path | None = None) -> list[str]:
    """The baseline account of a run: counts, moved and missing baselines, and files no test used.

    ``partial`` says why the run did not run every test (then unused files are
    not listed: the tests that use them may simply not have run).
    """
    records = list(records)
    stable = stability_records(records)

    def shown(path: str | Path) -> str:
        p = Path(path)
        if root is not None:
            try:
                return str(p.relative_to(root))
            except ValueError:
                pass
        return str(p)

    unused = [] if partial else unused_baselines(records, directories)
    if not stable and not unused:
        return []
    actions = [info.action for _r, info in stable]
    checked = [(r, info) for r, info in stable if info.action in ("checked", "unchanged")]
    moved = [info for r, info in checked if r.outcome == "failed"]
    counts = [f"{len(checked)} checked" + (f" ({len(moved)} moved)" if moved else ""),
              f"{actions.count('created')} created", f"{actions.count('updated')} updated"]
    if actions.count("missing"):
        counts.append(f"{actions.count('missing')} missing")
    if actions.count("error"):
        counts.append(f"{actions.count('error')} error(s)")
    lines = [f"baselines: {', '.join(counts)}"]
    for info in sorted(moved, key=lambda info: str(info.path)):
        lines.append(f"  moved: {shown(str(info.path))} on {', '.join(info.moved or [])} "
                     f"(this run's values: {shown(info.obtained or '')})")
    for _record, info in stable:
        if info.action == "missing":
            lines.append(f"  missing: {shown(str(info.path))} (run pytest {UPDATE_FLAG} to record it)")
    for label in ("created", "updated"):
        for _record, info in stable:
            if info.action == label:
                lines.append(f"  {label}: {shown(str(info.path))}")
    by_path: dict[str, set[str]] = {}
    for record, info in stable:
        if info.path:
            by_path.setdefault(info.path, set()).add(record.nodeid or "(outside a test)")
    for path, tests in sorted(by_path.items()):
        if len(tests) > 1:
            lines.append(f"  CONFLICT: {shown(path)} is used by {len(tests)} tests ({', '.join(sorted(tests))}); "
                         "give each check its own baseline name")
    if unused:
        lines.append(f"  not used by any test of this run ({len(unused)}): "
                     + ", ".join(shown(p) for p in unused))
    elif partial and stable:
        lines.append(f"  unused baselines are not listed: {partial}")
    return lines


class BaselineTracker:
    """pytest hooks that know which baseline folders a run could use, merged across xdist workers.

    Registered by the plugin at configure time.  Each process notes the
    ``tcav_baselines`` folders next to its collected tests and how many tests
    it deselected; workers send that in their payload (:mod:`pytest_tcav.plugin.xdist`;
    the baseline files themselves are written by the worker running the test).
    The controller prints the account after the concept-check table.
    """

    #: The part of a pytest-xdist worker's payload with what this tracker saw there.
    PART = "baselines"

    def __init__(self, config: pytest.Config, records: Callable[[], list[CheckRecord]]) -> None:
        self.config = config
        self.records = records
        self.directories: set[Path] = set()
        self.deselected = 0
        self.interrupted = False

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        for item in session.items:
            path = getattr(item, "path", None)
            if path is not None:
                self.directories.add(Path(path).parent / BASELINE_DIR)

    def pytest_deselected(self, items: Sequence[Any]) -> None:
        self.deselected += len(items)

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if session.shouldstop or session.shouldfail or int(exitstatus) == 2:  # -x, --maxfail, interrupted
            self.interrupted = True
        if xdist.sending(session.config):
            xdist.put(session.config, self.PART, {
                "directories": sorted(str(d) for d in self.directories),
                "deselected": self.deselected, "interrupted": self.interrupted,
            })

    def partial(self) -> str | None:
        """Why this run may not have run every test that uses a baseline (None: it ran them all)."""
        workers = xdist.parts(self.config, self.PART)
        deselected = self.deselected + sum(int(info["deselected"]) for info in workers)
        interrupted = self.interrupted or any(bool(info["interrupted"]) for info in workers)
        option = self.config.option
        reasons = []
        if getattr(option, "keyword", "") or getattr(option, "markexpr", ""):
            reasons.append("-k/-m")
        if any("::" in str(arg) for arg in self.config.args):
            reasons.append("test ids on the command line")
        if getattr(option, "lf", False):
            reasons.append("--lf")
        if deselected:
            reasons.append(f"{deselected} test(s) deselected")
        if interrupted:
            reasons.append("the run stopped early")
        return f"partial run ({', '.join(reasons)})" if reasons else None

    def lines(self) -> list[str]:
        directories = self.directories | {Path(d) for info in xdist.parts(self.config, self.PART)
                                          for d in info["directories"]}
        return summary_lines(self.records(), directories, partial=self.partial(),
                             root=Path(self.config.rootpath))

    @pytest.hookimpl(trylast=True)
    def pytest_terminal_summary(self, terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
        """After the concept-check table (trylast), on the controller only."""
        if hasattr(config, "workerinput"):
            return
        lines = self.lines()
        if not lines:
            return
        terminalreporter.write_sep("=", "TCAV baselines")
        for line in lines:
            bad = line.lstrip().startswith(("moved:", "missing:", "CONFLICT:"))
            terminalreporter.write_line(line, red=bad, yellow=line.lstrip().startswith("not used"))
