"""gunicorn.conf.py leaves the package alone in the master: a reload (SIGHUP) then brings new code."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support.servers import ROOT

READ_CONFIG = """
import json, os, runpy, sys
settings = runpy.run_path(sys.argv[1])
print(json.dumps({
    "imported": sorted(name for name in sys.modules if name.split(".")[0] in ("worker_service", "common", "flask")),
    "marked": os.environ.get("WORKER_SERVICE_UNDER_GUNICORN"),
    "hooks": sorted(name for name in ("on_starting", "on_reload", "post_fork", "post_worker_init",
                                      "worker_abort", "worker_exit") if callable(settings.get(name))),
}))
"""


def read_config(**env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", READ_CONFIG, str(ROOT / "gunicorn.conf.py")],
                          env={"PATH": "/usr/bin:/bin", **env}, capture_output=True, text=True, timeout=30)


def test_reading_the_config_file_imports_nothing_of_the_package_and_marks_gunicorn():
    done = read_config()
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["imported"] == []
    assert seen["marked"] == "1"  # before --preload can load the app in the master
    assert len(seen["hooks"]) == 6


@pytest.mark.parametrize(("name", "value"), [("GUNICORN_TIMEOUT", "soon"), ("GUNICORN_THREADS", "0"),
                                           ("GUNICORN_GRACEFUL_TIMEOUT", "-1"), ("WEB_CONCURRENCY", "1.5")])
def test_a_bad_gunicorn_number_is_one_line_and_exit_78(name, value):
    done = read_config(**{name: value})
    assert done.returncode == 78
    assert done.stderr.strip().splitlines() == [
        f"worker-service: configuration error: {name}={value!r} must be a whole number of at least 1"]



def test_the_package_reads_the_names_the_master_writes():
    from worker_service import gunicorn_master
    from worker_service.scheduler import UNDER_GUNICORN, gunicorn_hooks

    assert UNDER_GUNICORN is gunicorn_master.UNDER_GUNICORN
    assert (gunicorn_hooks.EX_CONFIG, gunicorn_hooks.STARTED_AT) == (gunicorn_master.EX_CONFIG,
                                                                     gunicorn_master.STARTED_AT)
