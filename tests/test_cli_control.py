"""`worker-service jobs|history|run|pause|resume` against a real gunicorn: the lines, the JSON and the exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.runs import jobs_file
from tests.support.servers import BIN, Gunicorn, base_env, free_port, wait_until

ADMIN = "cli-admin-token-0123456789"
READER = "cli-status-token-42"
JOBS = """
[jobs.good]
name = "Good"
func = "tests.support.sample_jobs:noop"
trigger = "interval"
hours = 1

[jobs.bad]
name = "Bad"
func = "tests.support.sample_jobs:always_fail"
trigger = "interval"
hours = 1

[jobs.slow]
name = "Slow"
func = "tests.support.sample_jobs:slow"
trigger = "interval"
hours = 1
kwargs = { seconds = 6 }
"""
# `slow` runs long enough that a second `run slow` (a new CLI process: about 0.2 s idle, several times that on a
# loaded machine) reaches the leader while the first one is still running; the server's stop waits out what is left.


def cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    """Run the installed command with no token in its environment unless given."""
    return subprocess.run([str(BIN / "worker-service"), *args], capture_output=True, text=True, timeout=60,
                          env=base_env(Path("/tmp"), **env))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("cli-control")
    path = jobs_file(workdir / "jobs.toml", JOBS)
    gunicorn = Gunicorn(base_env(workdir / "state", WORKER_JOBS_FILE=str(path), WEB_CONCURRENCY="2",
                                 ADMIN_TOKEN=ADMIN, STATUS_TOKEN=READER, SCHEDULER_HEARTBEAT_INTERVAL="1",
                                 HEALTH_CACHE_TTL="0", STATUS_CACHE_TTL="0"), workdir).start()
    wait_until(lambda: gunicorn.get("/health/scheduler")[0] == 200, timeout=15, what="a leader")
    yield gunicorn
    gunicorn.stop()


def test_jobs_lists_every_job_as_a_table_or_json_with_the_status_token_from_the_environment(server):
    table = cli("jobs", "--url", server.url, STATUS_TOKEN=READER)
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[0].split() == ["JOB", "HEALTH", "PAUSED", "NEXT", "RUN", "LAST", "RUN", "REASON"]
    assert {line.split()[0] for line in table.stdout.splitlines()[1:]} == {"good", "bad", "slow"}
    raw = cli("jobs", "--url", server.url, "--json", ADMIN_TOKEN=ADMIN)  # the admin token reads too
    assert raw.returncode == 0 and [job["id"] for job in json.loads(raw.stdout)["jobs"]] == ["good", "bad", "slow"]


def test_run_wait_exits_0_when_the_run_succeeds_and_2_with_its_redacted_error_when_it_fails(server):
    good = cli("run", "good", "--wait", "--url", server.url, "--as", "alice", ADMIN_TOKEN=ADMIN)
    assert good.returncode == 0 and good.stdout.startswith("good: run succeeded in "), good.stdout + good.stderr
    bad = cli("run", "bad", "--wait", "--url", server.url, "--token", ADMIN)
    assert bad.returncode == 2, bad.stdout + bad.stderr
    assert len(bad.stderr.splitlines()) == 1 and "bad: run error in " in bad.stderr
    assert "RuntimeError: upstream refused" in bad.stderr and "canary-job-secret" not in bad.stderr
    both = cli("run", "bad", "--wait", "--json", "--url", server.url, ADMIN_TOKEN=ADMIN)
    answer = json.loads(both.stdout)
    assert both.returncode == 2 and answer["run"]["outcome"] == "error"
    assert answer["run"]["command_id"] == answer["command"]["command_id"] and answer["run"]["trigger"] == "manual"


def test_history_shows_manual_runs_with_who_asked_newest_first(server):
    cli("run", "good", "--wait", "--url", server.url, "--as", "bob", ADMIN_TOKEN=ADMIN)
    table = cli("history", "good", "--url", server.url, STATUS_TOKEN=READER)
    assert table.returncode == 0 and table.stdout.startswith("good (Good): ")
    assert "manual (bob)" in table.stdout.splitlines()[2]  # head, column names, then the newest run
    raw = json.loads(cli("history", "good", "--json", "--url", server.url, STATUS_TOKEN=READER).stdout)
    assert raw["history"][0]["requested_by"] == "bob" and raw["history"][0]["outcome"] == "success"


def test_a_second_run_while_the_first_runs_exits_1_and_says_max_instances(server):
    """The first run of `slow` lasts 6 s: the second command is applied while it still runs, however slow the CLI."""
    first = cli("run", "slow", "--url", server.url, ADMIN_TOKEN=ADMIN)
    assert first.returncode == 0 and "run: started" in first.stdout, first.stdout + first.stderr
    second = cli("run", "slow", "--url", server.url, ADMIN_TOKEN=ADMIN)
    assert second.returncode == 1 and "already running at max_instances (1)" in second.stderr, second.stderr
    assert second.stdout == ""


def test_pause_and_resume_exit_0_and_the_pause_names_who_asked(server):
    paused = cli("pause", "good", "--url", server.url, "--as", "carol", ADMIN_TOKEN=ADMIN)
    assert paused.returncode == 0 and paused.stdout.startswith("good: pause: paused (command "), paused.stdout
    listing = json.loads(cli("jobs", "--json", "--url", server.url, STATUS_TOKEN=READER).stdout)["jobs"]
    good = next(job for job in listing if job["id"] == "good")
    assert good["paused"] and good["paused_by"]["by"] == "carol"
    assert "yes (carol)" in cli("jobs", "--url", server.url, STATUS_TOKEN=READER).stdout
    resumed = cli("resume", "good", "--url", server.url, ADMIN_TOKEN=ADMIN)
    assert resumed.returncode == 0 and "resume: resumed" in resumed.stdout, resumed.stdout + resumed.stderr


@pytest.mark.parametrize(("args", "env", "needle"), [
    (["run", "nope"], {"ADMIN_TOKEN": ADMIN}, "unknown job: 'nope'"),
    (["run", "good"], {}, "answered 401: a valid --token (ADMIN_TOKEN) is required"),
    (["pause", "good"], {"ADMIN_TOKEN": READER}, "HTTP 403: the status token only reads"),
    (["jobs"], {}, "answered 401"),
    (["history", "nope"], {"STATUS_TOKEN": READER}, "HTTP 404: unknown job: 'nope'"),
])
def test_refusals_exit_3_with_one_line_and_no_traceback(server, args, env, needle):
    done = cli(*args, "--url", server.url, **env)
    assert done.returncode == 3, done.stdout + done.stderr
    assert done.stdout == "" and len(done.stderr.splitlines()) == 1 and needle in done.stderr, done.stderr
    assert ADMIN not in done.stderr and READER not in done.stderr


@pytest.mark.parametrize("command", [["jobs"], ["run", "x", "--wait"], ["pause", "x"], ["history", "x"]])
def test_an_unreachable_service_exits_3(command):
    done = cli(*command, "--url", f"http://127.0.0.1:{free_port()}", "--timeout", "2", ADMIN_TOKEN=ADMIN)
    assert done.returncode == 3 and "cannot reach" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize(("status", "body", "code", "needle"), [
    (200, {"command_id": 4, "outcome": "started (run 9)", "run_id": 9}, 0, "x: run: started (run 9) (command 4)"),
    (202, {"command_id": 4, "poll": "/jobs/x/commands/4"}, 1, "not applied yet"),
    (409, {"command_id": 4, "message": "already running at max_instances (1)"}, 1, "refused: already running"),
    (503, {"message": "no scheduler leads: no scheduler heartbeat for 40 s"}, 2, "not applied: no scheduler leads"),
    (404, {"message": "unknown job: 'x'"}, 3, "unknown job"),
    (500, {"error": "Internal Server Error"}, 3, "answered HTTP 500"),
])
def test_each_answer_to_a_command_maps_to_the_check_commands_exit_codes(status, body, code, needle):
    from worker_service.cli.jobs import _command_verdict

    verdict, line = _command_verdict("x", "run", status, body)
    assert verdict == code and needle in line


def test_the_cli_imports_no_flask_for_its_commands():
    done = subprocess.run([sys.executable, "-c", "import sys, worker_service.cli;"
                                                 "print(sorted(m for m in sys.modules if m.split('.')[0] in "
                                                 "('flask', 'werkzeug', 'marshmallow', 'apscheduler')))"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr


def test_the_tables_print_no_control_character_from_the_service():
    from worker_service.cli.tables import render_history, render_jobs

    evil = "boom\x1b[2J\x1b[31m\nforged line\x9b0m\u202e"
    run = {"started_at": None, "finished_at": None, "duration_seconds": 0.5, "outcome": "error", "trigger": "manual",
           "requested_by": "ops", "error": {"type": "RuntimeError", "message": evil}}
    history = render_history({"id": "x", "name": "X\x1b[8m", "health": "warning", "health_reason": evil,
                              "history": [run]}, colour=False)
    jobs = {"jobs": [{"id": "x", "health": "warning", "health_reason": evil}]}
    for table in (history, render_jobs(jobs, colour=False)):
        assert not any(char in table for char in "\x1b\x9b\u202e"), repr(table)
    assert len(history.splitlines()) == 3 and "RuntimeError: boom?[2J?[31m forged line?0m?" in history
    coloured = render_jobs(jobs, colour=True)  # the only escapes are the table's own colour
    assert coloured.replace("\x1b[33m", "").replace("\x1b[0m", "") == render_jobs(jobs, colour=False)
