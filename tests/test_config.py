"""Settings: a bad value is one line naming the variable, never echoing a secret; the state directory is
checked where exit 78 is right (check-config, the start), never where it would kill a running worker."""

from __future__ import annotations

import subprocess

import pytest

from tests.support.servers import BIN, base_env
from worker_service.config import ConfigError, load_settings
from worker_service.state.setup import check_state_store

CANARY = "c4n4ry"  # short enough to be refused as a STATUS_TOKEN, and never to be echoed


def settings_error(state_dir, **env: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings({"WORKER_STATE_DIR": str(state_dir), **env})
    message = str(caught.value)
    assert "\n" not in message and message.startswith("configuration error: ")
    return message


@pytest.mark.parametrize("value", [",", " , ,", ",,,", " ,"])
def test_critical_components_naming_nothing_are_refused(state_dir, value):
    message = settings_error(state_dir, HEALTH_CRITICAL_COMPONENTS=value)
    assert f"HEALTH_CRITICAL_COMPONENTS={value!r} must name at least one component (known: cache, database, scheduler)" \
        in message


def test_critical_components_still_accept_a_list_with_stray_commas(state_dir):
    assert load_settings({"WORKER_STATE_DIR": str(state_dir), "HEALTH_CRITICAL_COMPONENTS": "database, ,scheduler,"})[
        "HEALTH_CRITICAL_COMPONENTS"] == ["database", "scheduler"]


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"REDIS_URL": f"http://user:{CANARY}@cache:6379/0"}, "REDIS_URL must be a URL starting with redis://"),
        ({"DATABASE_URL": f"postgresql://app:{CANARY}@db:99999/x"}, "DATABASE_URL is not a valid URL"),
        ({"SUPABASE_URL": f"ftp://{CANARY}.supabase.co", "SUPABASE_KEY": CANARY}, "SUPABASE_URL must be a URL"),
        ({"SUPABASE_KEY": CANARY}, "SUPABASE_URL is required"),
        ({"STATUS_TOKEN": CANARY}, "STATUS_TOKEN must be at least 8 characters"),
        ({"HEALTH_CHECK_TIMEOUT": "31"}, "HEALTH_CHECK_TIMEOUT='31' must be 30 or less"),
        ({"HEALTH_CRITICAL_COMPONENTS": "cache,queue"}, "unknown component 'queue'"),
        ({"JOB_FAILURE_THRESHOLD": "zero"}, "JOB_FAILURE_THRESHOLD='zero' "),
        ({"SCHEDULER_TIMEZONE": "Mars/Olympus"}, "is not a known time zone"),
        ({"DATABASE_URL": f"postgresql://app:{CANARY}#x@db:5432/x"}, "DATABASE_URL is not a valid URL"),
        ({"REDIS_URL": f"redis://:{CANARY}/x@cache:6379/0"}, "REDIS_URL is not a valid URL"),
        ({"SUPABASE_URL": "https://x.supabase.co"}, "SUPABASE_KEY is required"),
        ({"HEALTH_CHECK_TIMEOUT": "-1"}, "HEALTH_CHECK_TIMEOUT='-1' must be greater than 0"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_variable_and_no_secret(state_dir, env, expected):
    message = settings_error(state_dir, **env)
    assert expected in message and CANARY not in message


@pytest.mark.parametrize("name", ["DATABASE_URL", "STATE_DATABASE_URL"])
@pytest.mark.parametrize(
    ("url", "expected"),
    [
        # libpq ends the user part at the first "@" and would resolve "c4n4ry@db" as the host, echoing it.
        (f"postgresql://app:Db@{CANARY}@db:5432/x", "has an unencoded @ in its password"),
        (f"postgres://app:Db@{CANARY}@db/x?sslmode=require", "has an unencoded @ in its password"),
        (f"postgresql://app@{CANARY}:Db@db/x", "has an unencoded @ in its user name"),
        # and at the first "/": the password's tail would be the database name
        (f"postgresql://app:12/{CANARY}@db/x", "has an unencoded / or @ in its password"),
    ],
)
def test_a_postgres_url_libpq_reads_otherwise_is_refused_with_percent_encode_the_password(state_dir, name, url,
                                                                                           expected):
    message = settings_error(state_dir, **{name: url})
    assert f"{name} {expected}" in message and "percent-encode the password" in message
    assert CANARY not in message


@pytest.mark.parametrize("name", ["DATABASE_URL", "STATE_DATABASE_URL"])
def test_a_percent_encoded_password_is_accepted_and_masked_as_libpq_sends_it(state_dir, name):
    from common.helpers.health import redact

    settings = load_settings({"WORKER_STATE_DIR": str(state_dir), name: "postgresql://app:Db%40Pa55-c4n4ry@db:5432/x"})
    assert settings[name].endswith("@db:5432/x")
    assert redact("auth failed for Db@Pa55-c4n4ry and Db%40Pa55-c4n4ry") == "auth failed for *** and ***"


def test_the_password_libpq_sends_is_masked_where_a_url_parser_finds_none(state_dir):
    """"12#w" is no password to urlsplit (it reads host "app", port 12) but is the one libpq sends."""
    from common.helpers.health import redact

    load_settings({"WORKER_STATE_DIR": str(state_dir), "DATABASE_URL": "postgresql://app:1234#Pa55c4n4ry@db/x"})
    assert "Pa55c4n4ry" not in redact("psql: password 1234#Pa55c4n4ry rejected")


def test_a_read_only_state_dir_never_fails_loading_the_settings_but_fails_the_check(state_dir, tmp_path):
    done = subprocess.run(["chattr", "+i", str(state_dir)], capture_output=True)
    if done.returncode != 0:
        pytest.skip("chattr +i not possible here")
    try:
        settings = load_settings({"WORKER_STATE_DIR": str(state_dir)})  # what every (replacement) worker does
        problem = check_state_store(settings)
    finally:
        subprocess.run(["chattr", "-i", str(state_dir)], check=False)
    assert problem == (f"configuration error: WORKER_STATE_DIR={str(state_dir)!r} is not usable: "
                       "cannot write a file in it (Operation not permitted)")


def test_a_missing_disk_path_fails_the_check_but_never_a_running_worker(state_dir):
    """A disk unmounted later must not stop the next worker (its settings would fail in post_fork)."""
    settings = load_settings({"WORKER_STATE_DIR": str(state_dir), "STATUS_DISK_PATH": "/no/such/disk"})
    assert check_state_store(settings) == "configuration error: STATUS_DISK_PATH='/no/such/disk' does not exist"


@pytest.mark.parametrize("cleanup", ["{state}", "{state}/..", "/"])
def test_a_cleanup_dir_holding_the_state_dir_is_refused(state_dir, cleanup):
    """The cleanup job would delete the scheduler lock after a day: two leaders."""
    message = settings_error(state_dir, CLEANUP_DIR=cleanup.format(state=state_dir))
    assert "CLEANUP_DIR" in message and "must not be the state directory or contain it" in message


def test_a_state_dir_that_cannot_be_created_fails_the_check_with_one_line():
    settings = load_settings({"WORKER_STATE_DIR": "/proc/worker-service-state"})
    assert check_state_store(settings) == ("configuration error: WORKER_STATE_DIR='/proc/worker-service-state' "
                                           "cannot be created: No such file or directory")


def check_config(state_dir, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "worker-service"), "check-config"], env=base_env(state_dir, **env),
                          capture_output=True, text=True, timeout=30)


def test_check_config_refuses_empty_critical_components_with_one_line_and_78(state_dir):
    done = check_config(state_dir, HEALTH_CRITICAL_COMPONENTS=",")
    assert done.returncode == 78 and "Traceback" not in done.stderr
    [line] = done.stderr.splitlines()
    assert "HEALTH_CRITICAL_COMPONENTS=',' must name at least one component" in line


def test_check_config_refuses_proc_as_state_dir_even_as_root_with_one_line_and_78(state_dir):
    """os.access says root may write /proc; only really writing a file there tells the truth."""
    done = check_config(state_dir, WORKER_STATE_DIR="/proc")
    assert done.returncode == 78 and "Traceback" not in done.stderr, done.stderr
    [line] = done.stderr.splitlines()
    assert "WORKER_STATE_DIR='/proc' is not usable: cannot write a file in it" in line


@pytest.mark.parametrize("kind", ["missing", "a file"])
def test_check_config_refuses_a_cleanup_dir_that_is_not_a_directory(state_dir, tmp_path, kind):
    """The README says CLEANUP_DIR must exist if set; it was accepted, and the cleanup job failed every hour."""
    path = tmp_path / "cleanup"
    if kind == "a file":
        path.write_text("")
    done = check_config(state_dir, CLEANUP_DIR=str(path))
    assert done.returncode == 78 and "Traceback" not in done.stderr, done.stderr
    [line] = done.stderr.splitlines()
    expected = "is not a directory" if kind == "a file" else "does not exist"
    assert line.startswith(f"worker-service: configuration error: CLEANUP_DIR={str(path)!r} {expected}"), line


def test_an_existing_cleanup_dir_and_the_default_one_pass_the_check(state_dir, tmp_path):
    (tmp_path / "cleanup").mkdir()
    assert check_config(state_dir, CLEANUP_DIR=str(tmp_path / "cleanup")).returncode == 0
    assert check_config(state_dir).returncode == 0  # <state dir>/tmp need not exist: the job creates it
    assert not (state_dir / "tmp").exists()


@pytest.mark.parametrize(("env", "expected"), [
    ({"GUNICORN_BIND": ":8000"}, "GUNICORN_BIND=':8000': ':8000' has no host"),
    ({"GUNICORN_THREADS": "many"}, "GUNICORN_THREADS='many' must be a whole number of at least 1"),
    ({"GUNICORN_TIMEOUT": "0"}, "GUNICORN_TIMEOUT='0' must be a whole number of at least 1"),
])
def test_check_config_refuses_what_gunicorn_conf_refuses(state_dir, env, expected):
    done = check_config(state_dir, **env)
    assert done.returncode == 78, done.stdout
    [line] = done.stderr.splitlines()
    assert expected in line, line


def test_empty_gunicorn_variables_count_as_unset_for_check_config(state_dir):
    done = check_config(state_dir, GUNICORN_BIND="", WEB_CONCURRENCY="", GUNICORN_THREADS="", GUNICORN_TIMEOUT="",
                        GUNICORN_GRACEFUL_TIMEOUT="", CLEANUP_DIR="")
    assert done.returncode == 0 and "configuration OK" in done.stdout, done.stderr


@pytest.mark.parametrize(("value", "expected"), [("0", "must be between 1 and 500"), ("many", "must be a whole number")])
def test_job_executor_threads_out_of_range_is_refused_in_one_line(state_dir, value, expected):
    message = settings_error(state_dir, JOB_EXECUTOR_THREADS=value)
    assert "JOB_EXECUTOR_THREADS" in message and expected in message and "\n" not in message.strip()


def test_job_executor_threads_defaults_to_ten(state_dir):
    assert load_settings({"WORKER_STATE_DIR": str(state_dir)})["JOB_EXECUTOR_THREADS"] == 10
