"""A pytest plugin: the session fails unless every test it collected ran, each under its own node id.

pytest-xdist schedules and reports tests by node id. Two tests that share one
(schemathesis under pytest 9.2 gave all twelve OpenAPI contract tests the same)
are one test to it: eleven of them never ran, the summary said "691 passed", the
progress stopped at 98 % and the exit status was 0. So at the end of the session
this compares the tests collected with the tests that reported a result
(passed, failed, skipped, xfailed, errors: every test that ran has a teardown
report), names the duplicated ids, prints one line and makes the exit status 1.

Under xdist the controller does the check: it hears each worker's collection
(``pytest_xdist_node_collection_finished``) and every report; the workers, each
running a share of the tests, never check. A session stopped early (``-x``,
``--maxfail``, Ctrl-C, a collection error) is not checked: tests are missing
there by design, and the exit status already says the run failed.

Registered in tests/conftest.py; ``-p tests.support.run_accounting`` loads it elsewhere.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import pytest

PREFIX = "worker-service tests"


class RunAccounting:
    """The tests this session collected and how many of them reported a result."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.collected: list[str] = []
        self.ran = 0  # teardown reports: one per test that ran, whatever its outcome
        self.problem: str | None = None

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        """Without xdist (or with ``-n0``): this process collected the tests and runs them all."""
        if not self.config.pluginmanager.hasplugin("dsession"):
            self.collected = [item.nodeid for item in session.items]

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: object, ids: Sequence[str]) -> None:
        """The xdist controller: every worker collects every test (xdist checks that they agree)."""
        self.collected = list(ids)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        # "???": xdist's report for a test whose worker died under it (it has no teardown report).
        if report.when in ("teardown", "???"):
            self.ran += 1

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if self.config.option.collectonly:
            return
        if exitstatus not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
            return  # interrupted, a collection or usage error, no tests: nothing to compare
        if session.shouldstop or session.shouldfail or (self.config.option.maxfail and exitstatus != pytest.ExitCode.OK):
            return  # -x / --maxfail stopped the run on purpose
        self.problem = problem(self.collected, self.ran)
        if self.problem:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if self.problem:
            terminalreporter.write_line(self.problem, red=True, bold=True)


def problem(collected: Sequence[str], ran: int) -> str | None:
    """One line saying that not every collected test ran, and which node ids are shared; ``None`` if all ran."""
    counts = Counter(collected)
    duplicated = sorted(nodeid for nodeid, count in counts.items() if count > 1)
    if not duplicated and ran == len(collected):
        return None
    text = f"{PREFIX}: {ran} of {len(collected)} collected tests ran"
    if duplicated:
        shown = ", ".join(f"{nodeid} (x{counts[nodeid]})" for nodeid in duplicated[:3])
        more = f" and {len(duplicated) - 3} more" if len(duplicated) > 3 else ""
        text += f"; node ids shared by several tests (each must have its own): {shown}{more}"
    return text


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput"):  # an xdist worker runs a share of the tests: the controller checks
        config.pluginmanager.register(RunAccounting(config), "worker-service-run-accounting")
