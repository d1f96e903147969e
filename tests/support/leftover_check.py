"""A pytest plugin: the session fails if a server a test started is still running at its end (tests/support/leftovers.py).

Each process checks the servers it started, names and stops those still
running, and fails the session. Under pytest-xdist each worker does that at its
end and hands the lines to the controller (``workeroutput``, read in
``pytest_testnodedown``), which prints them and fails the session.

Registered in tests/conftest.py.
"""

from __future__ import annotations

import pytest

from tests.support.leftovers import stop_leftovers

_WORKER_OUTPUT_KEY = "worker_service_leftover_processes"


class LeftoverCheck:
    """Stops and names this process's leftovers at the end; on the xdist controller, also every worker's."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.lines: list[str] = []

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: object, error: object) -> None:
        """The xdist controller: a worker finished; its leftovers come with its output."""
        self.lines += getattr(node, "workeroutput", {}).get(_WORKER_OUTPUT_KEY, [])

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        self.lines += stop_leftovers()
        if hasattr(self.config, "workerinput"):  # an xdist worker: the controller reports and fails the session
            self.config.workeroutput[_WORKER_OUTPUT_KEY] = list(self.lines)  # type: ignore[attr-defined]
            return
        if self.lines and exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        for line in self.lines:
            terminalreporter.write_line(line, red=True, bold=True)


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(LeftoverCheck(config), "worker-service-leftover-check")
