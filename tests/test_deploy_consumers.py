"""Every consumer's shipped line of config, run for real: Nagios/Icinga and cron (the `worker-service check`
command lines, against a real gunicorn), Prometheus (promtool, and a scrape with its settings), Kubernetes
(the probe paths and ports against the app and gunicorn.conf.py). HAProxy and nginx: test_load_balancers.py."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess

import pytest
import yaml

from tests.support.runs import jobs_file
from tests.support.servers import BIN, ROOT, Gunicorn, base_env, wait_until

DEPLOY = ROOT / "deploy"
TOKEN = "consumers-test-token-7c1e"
SHIPPED_BIN = "/opt/worker-service/bin/worker-service"
PLUGIN_LINE = re.compile(r"^WORKER-SERVICE (OK|WARNING|CRITICAL|UNKNOWN) - .+$")
JOBS = """
[jobs.sync_accounts]
name = "Sync (every second here)"
func = "tests.support.sample_jobs:noop"
trigger = "interval"
seconds = 1
critical = true
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("consumers")
    (workdir / "state").mkdir()
    path = jobs_file(workdir / "jobs.toml", JOBS)
    env = base_env(workdir / "state", WORKER_JOBS_FILE=str(path), STATUS_TOKEN=TOKEN, SCHEDULER_HEARTBEAT_INTERVAL="1")
    started = Gunicorn(env, workdir).start()

    def ran() -> bool:
        _, _, body = started.get("/status", headers={"Authorization": f"Bearer {TOKEN}"})
        return body["metrics"]["jobs_analysis"]["job_health"]["sync_accounts"]["success_count"] >= 1

    wait_until(ran, timeout=15, what="sync_accounts to run once")
    wait_until(lambda: started.get("/health")[0] == 200, timeout=10, what="/health 200")
    yield started
    started.stop()


def nagios_objects(kind: str) -> list[dict[str, str]]:
    """The ``define <kind> { ... }`` blocks of the shipped Nagios file, as dicts."""
    text = (DEPLOY / "nagios" / "worker-service.cfg").read_text()
    blocks = re.findall(r"define " + kind + r" \{\n(.*?)\n\}", text, re.S)
    return [dict(re.split(r"\s+", line.strip(), maxsplit=1) for line in block.splitlines() if line.strip())
            for block in blocks]


def run_nagios(check_command: str, server: Gunicorn) -> subprocess.CompletedProcess:
    """Expand a service's check_command as Nagios does ($HOSTADDRESS$, $USERn$, $ARGn$) and run it."""
    name, *args = check_command.split("!")
    (command,) = [c["command_line"] for c in nagios_objects("command") if c["command_name"] == name]
    macros = {"$HOSTADDRESS$": f"127.0.0.1:{server.port}", "$USER3$": TOKEN,
              **{f"${'ARG'}{i}$": value for i, value in enumerate(args, start=1)}}
    for macro, value in macros.items():
        command = command.replace(macro, value)
    assert "$" not in command, command
    argv = shlex.split(command)
    assert argv[0] == SHIPPED_BIN
    return subprocess.run([str(BIN / "worker-service"), *argv[1:]], capture_output=True, text=True, timeout=30)


def test_every_nagios_service_is_ok_against_a_healthy_service(server):
    services = nagios_objects("service")
    assert {s["check_command"].split("!")[0] for s in services} == {c["command_name"] for c in nagios_objects("command")}
    for service in services:
        done = run_nagios(service["check_command"], server)
        assert done.returncode == 0, (service["service_description"], done.stdout, done.stderr)
        assert PLUGIN_LINE.match(done.stdout.strip()) and " OK - " in done.stdout


FIRST_RUN_IN_30_MINUTES = """
[jobs.sync_accounts]
name = "Sync (every 30 minutes, as shipped)"
func = "tests.support.sample_jobs:noop"
trigger = "interval"
minutes = 30
critical = true
"""


def test_the_nagios_job_line_does_not_page_before_the_jobs_first_run_is_due(tmp_path):
    """After an install the job has never run; until its first run is due (plus grace) that is no failure."""
    (tmp_path / "state").mkdir()
    path = jobs_file(tmp_path / "jobs.toml", FIRST_RUN_IN_30_MINUTES)
    fresh = Gunicorn(base_env(tmp_path / "state", WORKER_JOBS_FILE=str(path), STATUS_TOKEN=TOKEN,
                              SCHEDULER_HEARTBEAT_INTERVAL="1"), tmp_path).start()
    try:
        def published() -> bool:
            _, _, body = fresh.get("/status", headers={"Authorization": f"Bearer {TOKEN}"})
            return body["metrics"]["jobs_analysis"]["job_health"]["sync_accounts"]["next_execution"] is not None

        wait_until(published, timeout=15, what="the leader to publish sync_accounts")
        (service,) = [s for s in nagios_objects("service") if s["check_command"].startswith("check_worker_service_job!")]
        done = run_nagios(service["check_command"], fresh)
    finally:
        fresh.stop()
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.match(r"^WORKER-SERVICE OK - job sync_accounts is pending, first run due at "
                    r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \(max age 3600 s applies from its first run\) \| ", done.stdout), done.stdout


def cron_line() -> tuple[list[str], str, str]:
    """The shipped cron.d entry: (five time fields, user, command)."""
    lines = [line for line in (DEPLOY / "cron" / "worker-service").read_text().splitlines()
             if line.strip() and not line.startswith("#") and not re.match(r"^[A-Z]+=", line)]
    (line,) = lines
    fields = line.split(None, 6)
    return fields[:5], fields[5], fields[6]


def test_the_cron_line_is_silent_when_ok_and_prints_one_line_when_the_service_is_down(server):
    times, user, command = cron_line()
    assert times == ["*/5", "*", "*", "*", "*"] and user == "worker-service" and "%" not in command
    assert command.count(SHIPPED_BIN) == 1 and command.count("--url http://127.0.0.1 ") == 1
    command = command.replace(SHIPPED_BIN, str(BIN / "worker-service"))
    healthy = subprocess.run(["/bin/sh", "-c", command.replace("--url http://127.0.0.1 ", f"--url {server.url} ")],
                             capture_output=True, text=True, timeout=30)
    assert (healthy.returncode, healthy.stdout, healthy.stderr) == (0, "", "")
    down = subprocess.run(["/bin/sh", "-c", command.replace("--url http://127.0.0.1 ", "--url http://127.0.0.1:1 ")],
                          capture_output=True, text=True, timeout=30)
    assert down.returncode == 0 and PLUGIN_LINE.match(down.stdout.strip()), down.stdout
    assert down.stdout.startswith("WORKER-SERVICE CRITICAL - ") and "connection refused" in down.stdout


def test_the_prometheus_scrape_config_passes_promtool_and_scrapes_the_service(server, tmp_path):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool (Debian package prometheus) is not installed")
    shipped = (DEPLOY / "prometheus" / "scrape.yml").read_text()
    token_file = tmp_path / "worker-service.token"
    token_file.write_text(TOKEN)
    assert shipped.count("/etc/prometheus/worker-service.token") == 1
    config = tmp_path / "prometheus.yml"
    config.write_text(shipped.replace("/etc/prometheus/worker-service.token", str(token_file)))
    checked = subprocess.run([promtool, "check", "config", str(config)], capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stdout + checked.stderr

    (job,) = yaml.safe_load(shipped)["scrape_configs"]
    assert job["authorization"]["type"] == "Bearer"
    status, head, body = server.get(job["metrics_path"], headers={"Authorization": f"Bearer {token_file.read_text()}"})
    assert status == 200 and head["Content-Type"].startswith("text/plain"), (status, body)
    metrics = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, text=True, timeout=30)
    assert metrics.returncode == 0, metrics.stdout + metrics.stderr
    assert server.get(job["metrics_path"])[0] == 401  # the token is what lets Prometheus in


def test_the_kubernetes_probes_name_real_paths_and_the_port_gunicorn_binds(make_app):
    pod = yaml.safe_load((DEPLOY / "kubernetes" / "probes.yaml").read_text())
    (container,) = pod["containers"]
    env = {item["name"]: item["value"] for item in container["env"]}
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert env["GUNICORN_BIND"] == f"0.0.0.0:{ports['http']}"
    client = make_app().test_client()
    readiness, liveness = container["readinessProbe"]["httpGet"], container["livenessProbe"]["httpGet"]
    assert readiness["port"] in ports and liveness["port"] in ports
    assert client.get(liveness["path"]).status_code == 200
    ready = wait_until(lambda: (r := client.get(readiness["path"])).json["status"] != "starting" and r, timeout=5,
                       what="readiness past starting")
    # in-process no scheduler beats, so the answer is /health's verdict (503 unavailable), past `starting`
    assert (ready.status_code, ready.json["status"]) in ((200, "ready"), (503, "unavailable"))
    pause = int(container["lifecycle"]["preStop"]["exec"]["command"][1])
    assert pod["terminationGracePeriodSeconds"] > 30 + pause  # GUNICORN_GRACEFUL_TIMEOUT's default, then the pause
