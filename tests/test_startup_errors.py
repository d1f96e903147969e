"""A bad setting or jobs file stops gunicorn at start-up: exit 78, one line naming the problem, no secret.

One smoke test per kind of problem goes through real gunicorn (a setting the package checks, a secret that must
not be echoed, a setting gunicorn.conf.py reads, a jobs file); every other bad value is a unit test
(tests/test_config.py, tests/test_jobs_file.py, tests/test_gunicorn_master.py).
"""

from __future__ import annotations

import subprocess

import pytest

from tests.support.runs import jobs_file
from tests.support.servers import BIN, base_env, run_gunicorn_expecting_exit, wait_until

CANARY = "canary-Pa55word-9"


def our_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("worker-service:")]


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        pytest.param({"HEALTH_CHECK_TIMEOUT": "-1"}, "HEALTH_CHECK_TIMEOUT='-1' must be greater than 0",
                     id="a bad setting"),
        pytest.param({"DATABASE_URL": f"postgresql://app:{CANARY}#x@db:5432/x"}, "DATABASE_URL is not a valid URL",
                     id="a bad URL holding a password"),
        pytest.param({"DATABASE_URL": f"postgresql://app:Db@{CANARY}@127.0.0.1:5432/x"},
                     "DATABASE_URL has an unencoded @ in its password", id="a password with an unencoded @"),
        pytest.param({"WEB_CONCURRENCY": "0"}, "WEB_CONCURRENCY='0' must be a whole number of at least 1",
                     id="a bad gunicorn setting"),
        # gunicorn itself reads WEB_CONCURRENCY with int() on import, before gunicorn.conf.py: a traceback, exit 1
        # (worker_service_gunicorn_guard.py)
        pytest.param({"WEB_CONCURRENCY": "abc"}, "WEB_CONCURRENCY='abc' must be a whole number of at least 1",
                     id="a gunicorn setting gunicorn cannot read"),
        pytest.param({"GUNICORN_BIND": ":8000"}, "GUNICORN_BIND=':8000': ':8000' has no host",
                     id="a bind on every interface by mistake"),
        pytest.param({"CLEANUP_DIR": "/nonexistent"}, "CLEANUP_DIR='/nonexistent' does not exist",
                     id="a cleanup directory that is not there"),
    ],
)
def test_bad_setting_stops_gunicorn_with_one_clear_line(tmp_path, state_dir, env, expected):
    done = run_gunicorn_expecting_exit(base_env(state_dir, **env), tmp_path)
    assert done.returncode == 78
    lines = our_lines(done.stderr)
    assert len(lines) == 1 and expected in lines[0], done.stderr
    assert CANARY not in done.stderr + done.stdout
    assert "Traceback" not in done.stderr


def test_bad_jobs_file_stops_gunicorn_with_one_line_naming_the_file_and_the_job(tmp_path, state_dir):
    path = jobs_file(tmp_path / "jobs.toml", '[jobs.a]\nfunc = "no_such_pkg.mod:run"\ntrigger = "interval"\nseconds = 1\n')
    done = run_gunicorn_expecting_exit(base_env(state_dir, WORKER_JOBS_FILE=str(path)), tmp_path)
    assert done.returncode == 78
    lines = our_lines(done.stderr)
    assert len(lines) == 1 and str(path) in lines[0], done.stderr
    assert "job 'a': cannot import func 'no_such_pkg.mod:run'" in lines[0]


def test_check_config_command_validates_without_starting_anything(tmp_path, state_dir):
    good = subprocess.run([str(BIN / "worker-service"), "check-config"], env=base_env(state_dir),
                          capture_output=True, text=True, timeout=30)
    assert good.returncode == 0 and "configuration OK" in good.stdout
    path = jobs_file(tmp_path / "jobs.toml", '[jobs.a]\nfunc = "os:getpid"\ntrigger = "weekly"\n')
    bad = subprocess.run([str(BIN / "worker-service"), "check-config"],
                         env=base_env(state_dir, WORKER_JOBS_FILE=str(path)), capture_output=True, text=True, timeout=30)
    assert bad.returncode == 78 and "unknown trigger 'weekly'" in bad.stderr


@pytest.mark.parametrize("name", ["DATABASE_URL", "STATE_DATABASE_URL"])
def test_check_config_refuses_a_password_with_an_unencoded_at_without_echoing_it(state_dir, name):
    """libpq would resolve "<password tail>@127.0.0.1" and every reason would quote it: refused first, in one line."""
    done = subprocess.run([str(BIN / "worker-service"), "check-config"],
                          env=base_env(state_dir, **{name: f"postgresql://app:Db@{CANARY}@127.0.0.1:5432/test"}),
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 78, done.stdout + done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"worker-service: configuration error: {name} has an unencoded @")
    assert "percent-encode the password" in lines[0]
    assert CANARY not in done.stderr + done.stdout


def test_create_app_rejects_a_bad_setting_with_config_error(state_dir):
    from worker_service import create_app
    from worker_service.config import ConfigError

    with pytest.raises(ConfigError, match="HEALTH_CACHE_TTL='-3' must be 0 or more"):
        create_app({"WORKER_STATE_DIR": str(state_dir), "HEALTH_CACHE_TTL": "-3"})


def test_an_empty_web_concurrency_counts_as_unset(gunicorn):
    """gunicorn's own int("") crashed it with a traceback; empty means the default, 2 workers."""
    server = gunicorn(WEB_CONCURRENCY="")
    wait_until(lambda: len(server.worker_pids()) == 2, timeout=10, what="the default 2 workers")
    assert "Traceback" not in server.stderr()


@pytest.mark.parametrize("value", ["abc", "", "1.5"])
def test_check_config_judges_web_concurrency_as_gunicorn_does(state_dir, value):
    done = subprocess.run([str(BIN / "worker-service"), "check-config"], env=base_env(state_dir, WEB_CONCURRENCY=value),
                          capture_output=True, text=True, timeout=30)
    if value == "":
        assert done.returncode == 0 and "configuration OK" in done.stdout, done.stderr
    else:
        assert done.returncode == 78, done.stdout
        assert done.stderr.splitlines() == [
            f"worker-service: configuration error: WEB_CONCURRENCY={value!r} must be a whole number of at least 1"]
