"""The suite fails when a collected test never ran (tests/support/run_accounting.py) or a server a test started is
still running at the end (tests/support/leftover_check.py), under xdist as `make test` runs it, and without.

Each case runs pytest in a subprocess on a scratch directory, with only the plugins it needs.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from tests.support.servers import ROOT

# A collector that yields three tests under one node id: what schemathesis did under pytest 9.2 to the OpenAPI
# contract tests (a parametrize with duplicate ids no longer does it: pytest makes them unique).
TWINS_CONFTEST = """
import pytest


class Twin(pytest.Item):
    def runtest(self):
        pass


class Twins(pytest.File):
    def collect(self):
        for _ in range(3):
            yield Twin.from_parent(self, name="twin")  # three tests, one node id


def pytest_collect_file(file_path, parent):
    if file_path.name == "twins.check":
        return Twins.from_parent(parent, path=file_path)
"""

PLAIN_TESTS = """
import pytest


def test_passes():
    pass


@pytest.mark.skip(reason="skipped on purpose")
def test_skipped():
    pass


@pytest.mark.xfail(reason="fails on purpose", strict=True)
def test_xfails():
    assert False


@pytest.mark.parametrize("n", [1, 2, 3])
def test_parametrized(n):
    pass
"""


def run_pytest(directory: Path, *args: str, plugin: str = "tests.support.run_accounting") -> subprocess.CompletedProcess[str]:
    # Only the plugins needed (xdist, this one): the installed ones (schemathesis, hypothesis ...) would slow each run.
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    env.pop("PYTEST_ADDOPTS", None)
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "xdist", "-p", plugin,
                           "-p", "no:cacheprovider",
                           "--rootdir", str(directory), *args, str(directory)],
                          cwd=directory, env=env, capture_output=True, text=True, timeout=60)


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    (tmp_path / "test_plain.py").write_text(PLAIN_TESTS)
    return tmp_path


@pytest.mark.parametrize("workers", [["-n", "2", "--dist", "loadfile"], ["-n", "0"]], ids=["xdist", "no-xdist"])
def test_a_session_where_every_collected_test_ran_passes(scratch, workers):
    done = run_pytest(scratch, *workers)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "worker-service tests:" not in done.stdout


@pytest.mark.parametrize("workers", [["-n", "2", "--dist", "loadfile"], ["-n", "0"]], ids=["xdist", "no-xdist"])
def test_tests_sharing_a_node_id_fail_the_session_with_one_line(scratch, workers):
    (scratch / "conftest.py").write_text(TWINS_CONFTEST)
    (scratch / "twins.check").write_text("")
    done = run_pytest(scratch, *workers)
    assert done.returncode == 1, done.stdout + done.stderr
    [line] = [line for line in done.stdout.splitlines() if line.startswith("worker-service tests:")]
    ran = "7 of 9" if workers[1] == "2" else "9 of 9"  # xdist runs one of the three twins
    assert line == (f"worker-service tests: {ran} collected tests ran; node ids shared by several tests "
                    "(each must have its own): twins.check::twin (x3)"), line


def test_a_run_stopped_by_maxfail_is_not_also_blamed_for_the_tests_it_skipped(scratch):
    (scratch / "test_fails.py").write_text("def test_a():\n    assert False\n\n\ndef test_b():\n    pass\n")
    done = run_pytest(scratch, "-n", "0", "-x")
    assert done.returncode == 1 and "worker-service tests:" not in done.stdout, done.stdout


def test_the_openapi_contract_tests_each_have_their_own_node_id():
    done = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                           "tests/test_openapi_contract.py"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    ids = [line for line in done.stdout.splitlines() if "::test_every_operation_conforms_to_the_openapi_document" in line]
    assert len(ids) >= 12 and len(set(ids)) == len(ids), done.stdout
    assert "tests/test_openapi_contract.py::test_every_operation_conforms_to_the_openapi_document[GET /health]" in ids


# --- servers left running ---------------------------------------------------------------------------

LEAKY_TESTS = """
import subprocess
import sys

import psutil
import pytest

from tests.support.leftovers import track


def start_server():
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    track(process, "a pretend server")
    return process


@pytest.fixture
def stopped_server():
    process = start_server()
    yield process
    process.terminate()
    process.wait()


def test_with_a_fixture_that_stops_its_server(stopped_server):
    pass


def test_that_leaves_its_server_running():
    start_server().pid
"""


@pytest.mark.parametrize("workers", [["-n", "2"], ["-n", "0"]], ids=["xdist", "no-xdist"])
def test_a_server_left_running_fails_the_session_naming_the_test_and_is_stopped(tmp_path, workers):
    (tmp_path / "test_leaky.py").write_text(LEAKY_TESTS)
    done = run_pytest(tmp_path, *workers, plugin="tests.support.leftover_check")
    assert done.returncode == 1, done.stdout + done.stderr
    [line] = [line for line in done.stdout.splitlines() if line.startswith("worker-service tests:")]
    match = re.fullmatch(r"worker-service tests: a pretend server \(pid (\d+)\) started by "
                         r"test_leaky.py::test_that_leaves_its_server_running was still running at the end of the "
                         r"session \(stopped now\); stop it in the test or its fixture", line)
    assert match, line
    assert not psutil.pid_exists(int(match[1])) or psutil.Process(int(match[1])).status() == psutil.STATUS_ZOMBIE


def test_servers_that_were_stopped_pass(tmp_path):
    (tmp_path / "test_leaky.py").write_text(LEAKY_TESTS)
    done = run_pytest(tmp_path, "-n", "2", "-k", "fixture_that_stops", plugin="tests.support.leftover_check")
    assert done.returncode == 0 and "worker-service tests:" not in done.stdout, done.stdout + done.stderr
