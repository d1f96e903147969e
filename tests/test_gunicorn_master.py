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
                                           ("GUNICORN_GRACEFUL_TIMEOUT", "-1"), ("WEB_CONCURRENCY", "1.5"),
                                           ("GUNICORN_THREADS", " ")])
def test_a_bad_gunicorn_number_is_one_line_and_exit_78(name, value):
    done = read_config(**{name: value})
    assert done.returncode == 78
    assert done.stderr.strip().splitlines() == [
        f"worker-service: configuration error: {name}={value!r} must be a whole number of at least 1"]



def test_an_empty_gunicorn_bind_is_the_loopback_default_never_every_interface():
    """``"".split(",")`` made ``[""]``, which gunicorn binds as 0.0.0.0:8000; empty counts as unset."""
    from gunicorn.util import parse_address

    for env in ({}, {"GUNICORN_BIND": ""}):
        done = subprocess.run([sys.executable, "-c", "import json, runpy, sys; print(json.dumps(runpy.run_path(sys.argv[1])['bind']))",
                               str(ROOT / "gunicorn.conf.py")], env={"PATH": "/usr/bin:/bin", **env},
                              capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        bind = json.loads(done.stdout)
        assert bind == ["127.0.0.1:8000"] and [parse_address(a) for a in bind] == [("127.0.0.1", 8000)], env


@pytest.mark.parametrize(("value", "expected"), [
    ("unix:/run/worker-service/gunicorn.sock", ["unix:/run/worker-service/gunicorn.sock"]),
    ("127.0.0.1:8000, unix:/tmp/ws.sock", ["127.0.0.1:8000", "unix:/tmp/ws.sock"]),
    ("127.0.0.1:8000,", ["127.0.0.1:8000"]),
    ("[::1]:8000", ["[::1]:8000"]),
    ("0.0.0.0:8000", ["0.0.0.0:8000"]),  # every interface, when written out
    ("localhost", ["localhost"]),
])
def test_gunicorn_bind_accepts_addresses_gunicorn_reads(value, expected):
    from worker_service.gunicorn.master import bind_addresses

    assert bind_addresses({"GUNICORN_BIND": value}) == expected


@pytest.mark.parametrize(("value", "expected"), [
    (",", "GUNICORN_BIND=',' names no address"),
    ("  ", "GUNICORN_BIND='  ' names no address"),
    (":8000", "':8000' has no host: gunicorn would listen on every interface"),
    ("127.0.0.1:http", "'127.0.0.1:http' has no valid port"),
    ("127.0.0.1:70000", "'127.0.0.1:70000' has no valid port"),
    ("unix:", "'unix:' has no socket path"),
    ("::1:8000", "'::1:8000' is an IPv6 address without brackets"),
])
def test_a_bad_gunicorn_bind_is_one_line_and_exit_78(value, expected):
    done = read_config(GUNICORN_BIND=value)
    assert done.returncode == 78, done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("worker-service: configuration error: GUNICORN_BIND=") and expected in line, line


@pytest.mark.parametrize("value", ["abc", "1.5"])
def test_gunicorn_itself_run_as_a_module_gets_one_line_and_78_for_a_web_concurrency_it_cannot_read(value):
    """gunicorn reads WEB_CONCURRENCY with int() as it imports its config, before gunicorn.conf.py runs; the guard
    (worker_service_gunicorn_guard.py, imported by its .pth file at start) answers first. The script is tested
    through real gunicorn in tests/test_startup_errors.py."""
    done = subprocess.run([sys.executable, "-m", "gunicorn", "--version"], env={"PATH": "/usr/bin:/bin", "WEB_CONCURRENCY": value},
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 78, done.stderr
    assert done.stderr.splitlines() == [
        f"worker-service: configuration error: WEB_CONCURRENCY={value!r} must be a whole number of at least 1"]


def test_the_guard_leaves_every_other_python_process_alone():
    for value in ("abc", ""):
        done = subprocess.run([sys.executable, "-c", "import os, sys; print(repr(os.environ['WEB_CONCURRENCY']))"],
                              env={"PATH": "/usr/bin:/bin", "WEB_CONCURRENCY": value}, capture_output=True, text=True,
                              timeout=30)
        assert (done.returncode, done.stdout.strip(), done.stderr) == (0, repr(value), "")


def test_the_package_reads_the_names_the_master_writes():
    from worker_service.gunicorn import hooks as gunicorn_hooks
    from worker_service.gunicorn import master as gunicorn_master
    from worker_service.scheduler import UNDER_GUNICORN

    assert UNDER_GUNICORN is gunicorn_master.UNDER_GUNICORN
    assert (gunicorn_hooks.EX_CONFIG, gunicorn_hooks.STARTED_AT) == (gunicorn_master.EX_CONFIG,
                                                                     gunicorn_master.STARTED_AT)


IMPORT_PACKAGED = """
import importlib, json, sys, types
conf = importlib.import_module("worker_service.gunicorn.conf")  # what gunicorn does with -c python:...
loaded = sorted(name for name in sys.modules if name.split(".")[0] in ("worker_service", "common", "flask"))
conf.master.forget_package(types.SimpleNamespace(cfg=types.SimpleNamespace(preload_app=sys.argv[1] == "preload")))
print(json.dumps({"loaded": loaded, "kept": sorted(name for name in sys.modules if name.split(".")[0] == "worker_service")}))
"""


@pytest.mark.parametrize("preload", ["", "preload"])
def test_the_packaged_config_brings_only_the_light_package_into_the_master_and_drops_it_before_forking(preload):
    """``-c python:worker_service.gunicorn.conf`` (``worker-service serve``) must import the package's __init__; no Flask,
    no app module, and the master drops even those before any worker is forked (a reload then brings new code), unless
    --preload put the app itself in the master. The reload itself: tests/test_package.py."""
    done = subprocess.run([sys.executable, "-c", IMPORT_PACKAGED, preload], env={"PATH": "/usr/bin:/bin"}, cwd=ROOT,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["loaded"] == ["worker_service", "worker_service.gunicorn", "worker_service.gunicorn.conf",
                              "worker_service.version"]
    assert seen["kept"] == (seen["loaded"] if preload else [])
