"""A bad setting or jobs file stops gunicorn at start-up: exit 78, one line naming the problem, no secret."""

from __future__ import annotations

import subprocess

import pytest

from tests.support.runs import jobs_file
from tests.support.servers import BIN, base_env, run_gunicorn_expecting_exit

CANARY = "canary-Pa55word-9"


def our_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("worker-service:")]


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"REDIS_URL": f"http://user:{CANARY}@cache:6379/0"}, "REDIS_URL must be a URL starting with redis://"),
        ({"DATABASE_URL": f"postgresql://app:{CANARY}@db:99999/x"}, "DATABASE_URL is not a valid URL"),
        ({"DATABASE_URL": f"postgresql://app:{CANARY}#x@db:5432/x"}, "DATABASE_URL is not a valid URL"),
        ({"REDIS_URL": f"redis://:{CANARY}/x@cache:6379/0"}, "REDIS_URL is not a valid URL"),
        ({"WORKER_STATE_DIR": "/proc/worker-service-state"}, "WORKER_STATE_DIR='/proc/worker-service-state' cannot be"),
        ({"STATUS_DISK_PATH": "/no/such/disk"}, "STATUS_DISK_PATH='/no/such/disk' does not exist"),
        ({"HEALTH_CHECK_TIMEOUT": "-1"}, "HEALTH_CHECK_TIMEOUT='-1' must be greater than 0"),
        ({"HEALTH_CRITICAL_COMPONENTS": "cache,queue"}, "unknown component 'queue'"),
        ({"SUPABASE_URL": "https://x.supabase.co"}, "SUPABASE_KEY is required"),
        ({"STATUS_TOKEN": "short"}, "STATUS_TOKEN must be at least 8 characters"),
        ({"GUNICORN_THREADS": "0"}, "GUNICORN_THREADS='0' must be a whole number of at least 1"),
    ],
)
def test_bad_setting_stops_gunicorn_with_one_clear_line(tmp_path, state_dir, env, expected):
    done = run_gunicorn_expecting_exit(base_env(state_dir, **env), tmp_path)
    assert done.returncode == 78
    lines = our_lines(done.stderr)
    assert len(lines) == 1 and expected in lines[0], done.stderr
    assert CANARY not in done.stderr + done.stdout
    assert "Traceback" not in done.stderr


BAD_JOBS = {
    "syntax": ('[jobs.a]\nname = \n', "TOML syntax error: Invalid value (at line 2, column 8)"),
    "trigger": ('[jobs.a]\nfunc = "os:getpid"\ntrigger = "weekly"\n', "job 'a': unknown trigger 'weekly'"),
    "cron": ('[jobs.a]\nfunc = "os:getpid"\ntrigger = "cron"\nhour = "25"\n', "job 'a': bad cron field hour='25'"),
    "func": ('[jobs.a]\nfunc = "no_such_pkg.mod:run"\ntrigger = "interval"\nseconds = 1\n',
             "job 'a': cannot import func 'no_such_pkg.mod:run'"),
    "duplicate": ('[jobs.a]\nfunc = "os:getpid"\ntrigger = "interval"\nseconds = 1\n\n'
                  '[jobs.a]\nfunc = "os:getpid"\ntrigger = "interval"\nseconds = 2\n',
                  "job 'a': duplicate job id (lines 1 and 6)"),
    "negative": ('[jobs.a]\nfunc = "os:getpid"\ntrigger = "interval"\nminutes = -5\n', "job 'a': minutes must not be negative"),
    "unknown key": ('[jobs.a]\nfunc = "os:getpid"\ntrigger = "interval"\nseconds = 5\ncolour = "red"\n',
                    "job 'a': unknown key 'colour'"),
    "huge interval": ('[jobs.a]\nfunc = "os:getpid"\ntrigger = "interval"\nweeks = 1e300\n', "job 'a': bad interval trigger"),
}


@pytest.mark.parametrize("case", list(BAD_JOBS))
def test_bad_jobs_file_stops_gunicorn_with_one_line_naming_the_job(tmp_path, state_dir, case):
    text, expected = BAD_JOBS[case]
    path = jobs_file(tmp_path / "jobs.toml", text)
    done = run_gunicorn_expecting_exit(base_env(state_dir, WORKER_JOBS_FILE=str(path)), tmp_path)
    assert done.returncode == 78
    lines = our_lines(done.stderr)
    assert len(lines) == 1 and expected in lines[0] and str(path) in lines[0], done.stderr


def test_check_config_command_validates_without_starting_anything(tmp_path, state_dir):
    good = subprocess.run([str(BIN / "worker-service"), "check-config"], env=base_env(state_dir),
                          capture_output=True, text=True, timeout=30)
    assert good.returncode == 0 and "configuration OK" in good.stdout
    path = jobs_file(tmp_path / "jobs.toml", BAD_JOBS["trigger"][0])
    bad = subprocess.run([str(BIN / "worker-service"), "check-config"],
                         env=base_env(state_dir, WORKER_JOBS_FILE=str(path)), capture_output=True, text=True, timeout=30)
    assert bad.returncode == 78 and "unknown trigger 'weekly'" in bad.stderr


def test_create_app_rejects_a_bad_setting_with_config_error(state_dir):
    from worker_service import create_app
    from worker_service.config import ConfigError

    with pytest.raises(ConfigError, match="HEALTH_CACHE_TTL='-3' must be 0 or more"):
        create_app({"WORKER_STATE_DIR": str(state_dir), "HEALTH_CACHE_TTL": "-3"})
