"""Job control through a real gunicorn with 4 workers: tokens, run-now through the leader, pause, 202 and poll.

Which worker took a POST is read from its DEBUG line (``job control: ... requested by <name> ... pid=<pid>``; the
server logs at DEBUG): the kernel picks the worker, so a test that needs a worker that does not lead asks again until
one took it. The one INFO line of a command is the leader's.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import signal
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.support.runs import jobs_file, read_runs
from tests.support.servers import Gunicorn, base_env, wait_until

ADMIN = "admin-token-control-test-71c9"
READER = "status-token-control-test-5e"
JOBS = """
[jobs.once]
name = "Once on request"
func = "tests.support.sample_jobs:append_pid"
trigger = "interval"
hours = 1
kwargs = {{ path = "{once}" }}

[jobs.pair]
name = "Slow, two at most"
func = "tests.support.sample_jobs:slow"
trigger = "interval"
hours = 1
max_instances = 2
kwargs = {{ seconds = 0.8, path = "{pair}" }}

[jobs.tick]
name = "Every second"
func = "tests.support.sample_jobs:append_pid"
trigger = "interval"
seconds = 1
kwargs = {{ path = "{tick}" }}

[jobs.broken]
name = "Always fails"
func = "tests.support.sample_jobs:always_fail"
trigger = "interval"
hours = 1
"""
LEADER_SETTINGS = {"SCHEDULER_HEARTBEAT_INTERVAL": "0.5", "HEALTH_CACHE_TTL": "0", "STATUS_CACHE_TTL": "0"}


class Answer:
    """A response with every header line kept (two WWW-Authenticate lines must both be seen)."""

    def __init__(self, status: int, headers: http.client.HTTPMessage, raw: bytes) -> None:
        self.status, self.headers, self.raw = status, headers, raw
        self.body: Any = json.loads(raw) if raw and headers.get_content_type() == "application/json" else raw

    def __repr__(self) -> str:
        return f"<{self.status} {self.raw[:300]!r}>"


def call(server: Gunicorn, method: str, path: str, token: str | None = None, basic: tuple[str, str] | None = None,
         headers: dict[str, str] | None = None, timeout: float = 40) -> Answer:
    """One request on a new connection (so the kernel picks the worker afresh)."""
    sent = {"Connection": "close", **(headers or {})}
    if token:
        sent["Authorization"] = f"Bearer {token}"
    if basic:
        sent["Authorization"] = "Basic " + base64.b64encode(f"{basic[0]}:{basic[1]}".encode()).decode()
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
    try:
        connection.request(method, path, headers=sent)
        response = connection.getresponse()
        return Answer(response.status, response.headers, response.read())
    finally:
        connection.close()


def leader_pid(server: Gunicorn) -> int:
    scheduler = call(server, "GET", "/status", READER).body["metrics"]["scheduler_status"]
    assert scheduler["running"], scheduler
    return scheduler["pid"]


def taken_by(server: Gunicorn, requested_by: str) -> int:
    """The pid of the worker that queued the command ``requested_by`` asked for (from its log line)."""
    pattern = re.compile(rf'pid=(\d+) logger=worker_service\.control\.submission msg="job control: \w+ of \w+ '
                         rf'requested by {re.escape(requested_by)} ')
    return int(wait_until(lambda: pattern.search(server.stderr()), timeout=5, what="the command's log line").group(1))


def settled(server: Gunicorn, answer: Answer) -> tuple[int, dict]:
    """A command's final (status, body): a 202 (its worker had no thread free to wait) is polled until applied."""
    if answer.status != 202:
        return answer.status, answer.body
    polled = wait_until(lambda: (body := call(server, "GET", answer.body["poll"], READER).body)["state"] != "pending"
                        and body, timeout=10, what="the leader to apply the command")
    return polled["status"], polled


def runs_of(server: Gunicorn, job_id: str) -> list[dict]:
    return call(server, "GET", f"/jobs/{job_id}", READER).body["history"]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    workdir = tmp_path_factory.mktemp("job-control")
    return {"workdir": workdir, "once": workdir / "once.txt", "pair": workdir / "pair.txt", "tick": workdir / "tick.txt"}


@pytest.fixture(scope="module")
def server(files):
    """4 workers, both tokens, the jobs above; the scheduler beats every 0.5 s."""
    path = jobs_file(files["workdir"] / "jobs.toml",
                     JOBS.format(once=files["once"], pair=files["pair"], tick=files["tick"]))
    env = base_env(files["workdir"] / "state", WORKER_JOBS_FILE=str(path), WEB_CONCURRENCY="4",
                   ADMIN_TOKEN=ADMIN, STATUS_TOKEN=READER, LOG_LEVEL="DEBUG", **LEADER_SETTINGS)
    gunicorn = Gunicorn(env, files["workdir"]).start()
    wait_until(lambda: len(gunicorn.worker_pids()) == 4 and leader_pid(gunicorn), timeout=15, what="a leader")
    yield gunicorn
    gunicorn.stop()


def test_control_is_off_without_admin_token_and_the_answer_names_it(tmp_path):
    path = jobs_file(tmp_path / "jobs.toml", "[jobs.once]\nfunc = \"tests.support.sample_jobs:noop\"\n"
                                             "trigger = \"interval\"\nhours = 1\n")
    open_server = Gunicorn(base_env(tmp_path / "state", WORKER_JOBS_FILE=str(path), WEB_CONCURRENCY="2",
                                    **LEADER_SETTINGS), tmp_path).start()
    try:
        refused = call(open_server, "POST", "/jobs/once/run", headers={"Authorization": f"Bearer {ADMIN}"})
        assert refused.status == 403 and "ADMIN_TOKEN" in refused.body["message"], refused
        assert call(open_server, "POST", "/jobs/once/pause").status == 403
        assert call(open_server, "GET", "/jobs").status == 200  # reads stay open, as /status is without STATUS_TOKEN
    finally:
        open_server.stop()


def test_no_valid_token_gets_401_with_a_bearer_and_a_basic_challenge_and_the_status_token_403(server):
    for method, path in (("POST", "/jobs/once/run"), ("GET", "/jobs"), ("GET", "/jobs/once"), ("GET", "/status")):
        for token in (None, "wrong-token-1234567890"):
            answer = call(server, method, path, token)
            assert answer.status == 401, (method, path, answer)
            challenges = answer.headers.get_all("WWW-Authenticate")
            assert challenges[0].startswith("Bearer realm=") and challenges[1].startswith('Basic realm="worker-service"')
    reader = call(server, "POST", "/jobs/once/run", READER)
    assert reader.status == 403 and "ADMIN_TOKEN" in reader.body["message"], reader
    assert READER.encode() not in reader.raw
    assert call(server, "GET", "/jobs/once/run", ADMIN).status == 405  # the admin token learns the methods


def test_basic_credentials_read_every_guarded_endpoint_and_control_with_the_user_name_as_who_asked(server):
    for path in ("/status", "/metrics", "/jobs", "/jobs/once"):
        assert call(server, "GET", path, basic=("anyone", READER)).status == 200, path
        assert call(server, "GET", path, basic=("anyone", ADMIN)).status == 200, path
    assert call(server, "POST", "/jobs/once/resume", basic=("bob", READER)).status == 403
    answer = call(server, "POST", "/jobs/once/resume?wait=10", basic=("bob", ADMIN))
    assert answer.status == 200 and answer.body["state"] == "done", answer
    assert answer.body["requested_by"] == "bob" and ADMIN not in json.dumps(answer.body)
    commands = call(server, "GET", "/jobs/once", READER).body["commands"]
    assert commands[0]["id"] == answer.body["command_id"] and commands[0]["requested_by"] == "bob"
    cross_site = call(server, "POST", "/jobs/once/resume", basic=("bob", ADMIN),
                      headers={"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"})
    assert cross_site.status == 403 and "another site" in cross_site.body["message"]


def test_an_unknown_job_is_404_and_nothing_is_queued(server):
    answer = call(server, "POST", "/jobs/nope/run", ADMIN)
    assert answer.status == 404 and answer.body == {"error": "Not Found", "message": "unknown job: 'nope'"}
    assert call(server, "GET", "/jobs/nope", READER).status == 404
    assert call(server, "GET", "/jobs/once/commands/999999", READER).status == 404


def test_run_now_from_a_worker_that_does_not_lead_runs_once_through_the_leader_marked_manual(server, files):
    leader = leader_pid(server)
    for _ in range(12):  # the kernel picks the worker: ask until one that does not lead took the request
        who = f"alice-{uuid.uuid4().hex[:8]}"
        before = len(read_runs(files["once"]))
        answer = call(server, "POST", "/jobs/once/run?wait=10", ADMIN, headers={"X-Requested-By": who})
        assert answer.status == 200 and answer.body["outcome"], answer
        if taken_by(server, who) != leader:
            break
        wait_until(lambda count=before + 1: len(read_runs(files["once"])) == count, timeout=5, what="the run")
    else:
        pytest.fail("every request landed on the leader")
    assert answer.body["requested_by"] == who and answer.body["run_id"] is not None
    wait_until(lambda: any(run["command_id"] == answer.body["command_id"] for run in runs_of(server, "once")),
               timeout=5, what="the run in the history")
    runs = read_runs(files["once"])
    assert len(runs) == before + 1 and runs[-1][0] == leader  # once, by the leader
    entry = next(run for run in runs_of(server, "once") if run["command_id"] == answer.body["command_id"])
    assert entry["trigger"] == "manual" and entry["requested_by"] == who and entry["outcome"] == "success"
    assert set(entry) == {"started_at", "finished_at", "duration_seconds", "outcome", "error", "trigger",
                          "requested_by", "command_id"}


def _pair_runs(path: Path) -> list[tuple[int, float, float]]:
    """(pid, start, end) of each finished run of the slow job."""
    open_runs: dict[int, list[float]] = {}
    runs = []
    for line in path.read_text().splitlines() if path.exists() else []:
        kind, pid, at = line.split()
        if kind == "start":
            open_runs.setdefault(int(pid), []).append(float(at))
        else:
            runs.append((int(pid), open_runs[int(pid)].pop(0), float(at)))
    return runs


def test_concurrent_run_now_from_every_worker_never_runs_beyond_max_instances(server, files):
    barrier = threading.Barrier(4)
    answers: list[Answer] = []

    def ask(index: int) -> None:
        barrier.wait()
        answers.append(call(server, "POST", "/jobs/pair/run?wait=10", ADMIN, headers={"X-Requested-By": f"op{index}"}))

    threads = [threading.Thread(target=ask, args=(index,)) for index in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    outcomes = [settled(server, answer) for answer in answers]
    assert sorted(status for status, _ in outcomes) in ([200, 200, 409, 409], [200, 200, 200, 409],
                                                        [200, 200, 200, 200]), answers
    started = [body for status, body in outcomes if status == 200]
    for refused in (body for status, body in outcomes if status == 409):
        assert "max_instances" in refused["outcome"] and refused["run_id"] is None
    wait_until(lambda: len(_pair_runs(files["pair"])) == len(started), timeout=10, what="every started run to end")
    runs = _pair_runs(files["pair"])
    assert len({pid for pid, _, _ in runs}) == 1 and runs[0][0] == leader_pid(server)
    edges = sorted([(start, 1) for _, start, _ in runs] + [(end, -1) for _, _, end in runs])
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    assert peak <= 2  # max_instances
    history = [run for run in runs_of(server, "pair") if run["trigger"] == "manual"]
    command_ids = [run["command_id"] for run in history]
    assert sorted(command_ids) == sorted(body["command_id"] for body in started)  # each at most once


def test_a_command_not_waited_for_answers_202_with_a_location_to_poll(server):
    answer = call(server, "POST", "/jobs/once/run?wait=0", ADMIN)
    assert answer.status == 202 and answer.body["state"] == "pending", answer
    location = answer.headers["Location"]
    assert location == answer.body["poll"] == f"/jobs/once/commands/{answer.body['command_id']}"
    polled = wait_until(lambda: (body := call(server, "GET", location, READER).body)["state"] != "pending" and body,
                        timeout=5, what="the leader to apply it")
    assert polled["state"] == "done" and polled["status"] == 200 and polled["run_id"] is not None
    # Logged once at INFO, by the leader: who asked (no name given: the token and the client's address), what, how
    command_id = answer.body["command_id"]
    lines = [line for line in server.stderr().splitlines() if f"(command {command_id})" in line]
    info = [line for line in lines if "level=INFO" in line or "level=WARNING" in line]
    assert len(info) == 1 and "logger=worker_service.scheduler.commands" in info[0], lines
    assert f"job once: run now asked by token@127.0.0.1 (command {command_id}): 200 started" in info[0], info
    assert call(server, "GET", location, ADMIN).status == 200
    assert call(server, "GET", "/jobs/once/run?wait=31", ADMIN).status == 405
    assert call(server, "POST", "/jobs/once/run?wait=31", ADMIN).status == 400


def test_a_failed_run_shows_in_the_history_with_its_error_redacted(server):
    answer = call(server, "POST", "/jobs/broken/run?wait=10", ADMIN, headers={"X-Requested-By": "carol"})
    assert answer.status == 200, answer
    entry = wait_until(lambda: next((run for run in runs_of(server, "broken")
                                     if run["command_id"] == answer.body["command_id"]), None),
                       timeout=5, what="the failed run")
    assert entry["outcome"] == "error" and entry["error"]["type"] == "RuntimeError"
    assert "canary-job-secret" not in entry["error"]["message"] and "upstream refused" in entry["error"]["message"]
    detail = call(server, "GET", "/jobs/broken", READER).body
    assert list(detail) == ["id", "name", "trigger", "next_run", "paused", "paused_by", "max_instances", "critical",
                            "health", "health_reason", "stats", "history", "commands"]
    status = call(server, "GET", "/status", READER).body
    assert detail["stats"]["error_count"] == status["metrics"]["jobs_analysis"]["job_health"]["broken"]["error_count"]
    assert detail["health"] == "warning" and detail["commands"][0]["requested_by"] == "carol"


def test_pause_survives_a_sighup_reload_and_resume_starts_the_job_again(server, files):
    wait_until(lambda: len(read_runs(files["tick"])) >= 1, timeout=5, what="tick to run")
    answer = call(server, "POST", "/jobs/tick/pause?wait=10", ADMIN, headers={"X-Requested-By": "dave"})
    assert answer.status == 200, answer
    paused_at, count = time.time(), len(read_runs(files["tick"]))
    old_workers = set(server.worker_pids())
    server.signal(signal.SIGHUP)
    wait_until(lambda: not old_workers & set(server.worker_pids()) and len(server.worker_pids()) == 4
               and leader_pid(server) in server.worker_pids(), timeout=20, what="a new leader after the reload")
    led_since = time.monotonic()
    detail = wait_until(lambda: (body := call(server, "GET", "/jobs/tick", READER).body)["paused"] and body,
                        timeout=5, what="tick published paused by the new leader")
    assert detail["paused_by"]["by"] == "dave" and detail["health"] == "paused"
    wait_until(lambda: time.monotonic() - led_since > 2.5, timeout=5, interval=0.1, what="2.5 s of the new leader")
    runs = read_runs(files["tick"])
    assert len(runs) <= count + 1 and all(at < paused_at + 1 for _, at in runs), "tick ran while paused"
    resumed = call(server, "POST", "/jobs/tick/resume?wait=10", ADMIN)
    assert resumed.status == 200, resumed
    wait_until(lambda: len(read_runs(files["tick"])) > len(runs), timeout=5, what="tick to run again")
    assert call(server, "GET", "/jobs/tick", READER).body["paused_by"] is None


def test_with_no_scheduler_leading_a_command_is_503_and_not_queued(server):
    leader = leader_pid(server)
    os.kill(leader, signal.SIGSTOP)  # a hung leader: it holds the lock and stops beating
    try:
        wait_until(lambda: call(server, "GET", "/health/scheduler", timeout=5).status == 503, timeout=10,
                   what="the heartbeat to go stale")
        commands_before = call(server, "GET", "/jobs/once", READER).body["commands"]
        answer = call(server, "POST", "/jobs/once/run?wait=0", ADMIN)
        assert answer.status == 503, answer
        assert answer.body["message"].startswith("no scheduler leads: no scheduler heartbeat for ")
        assert "not queued" in answer.body["message"]
        assert call(server, "GET", "/jobs/once", READER).body["commands"] == commands_before
    finally:
        os.kill(leader, signal.SIGCONT)
    wait_until(lambda: call(server, "POST", "/jobs/once/resume?wait=10", ADMIN).status == 200, timeout=10,
               what="the leader back")


def test_no_token_ever_reaches_a_log_line(server):
    logs = server.stdout() + server.stderr()
    assert "job control: " in logs
    for token in (ADMIN, READER, base64.b64encode(f"bob:{ADMIN}".encode()).decode()):
        assert token not in logs


def test_the_location_to_poll_keeps_the_apps_path_prefix(make_app):
    """Behind a proxy that mounts the app under a prefix (SCRIPT_NAME), the poll path and Location keep it."""
    from worker_service.control.payloads import command_answer, command_path
    from worker_service.state.records import Command

    app = make_app(ADMIN_TOKEN=ADMIN)
    command = Command(id=7, job_id="nightly report", action="run", requested_by="ops", requested_at=time.time())
    with app.test_request_context("/jobs/nightly%20report/run", method="POST", base_url="http://localhost/worker"):
        assert command_path(command) == "/worker/jobs/nightly%20report/commands/7"
        assert command_answer(command)["poll"] == command_path(command)
    with app.test_request_context("/jobs/x/run", method="POST"):
        assert command_path(command) == "/jobs/nightly%20report/commands/7"
