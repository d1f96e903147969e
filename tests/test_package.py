"""The service as an ops engineer installs it: a wheel built from the sources, in a fresh virtualenv, no checkout.

What is real: ``python -m build`` on a copy of the sources (an sdist, then the wheel built from it), the
wheel installed by pip into a new virtualenv outside the checkout (its files, its ``worker-service`` entry
point and script, the .pth guard, the packaged gunicorn configuration), and ``worker-service serve`` started
from an empty directory, as the shipped unit starts it.

What is shared, to stay fast and offline: the third-party dependencies (Flask, gunicorn, ...) come from this
checkout's .venv, through one path line (a .pth file) in the new virtualenv. pip installs the wheel only
(``--no-deps``), so no worker_service module can come from the checkout: the new virtualenv's own
site-packages comes first on sys.path, and the .venv's editable-install hooks are not run from there.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from tests.support.leftovers import track
from tests.support.servers import ROOT, free_port, http_get, wait_until
from worker_service.config import default_state_dir
from worker_service.version import __version__

# What a copy of the sources leaves out: environments, caches, earlier builds, local state.
NOT_SOURCES = shutil.ignore_patterns(".git", ".venv", ".tools", "var", "build", "dist", "*.egg-info", "__pycache__",
                                     ".pytest_cache", ".ruff_cache")
JOBS = """
[jobs.tick]
func = "worker_service.jobs.cleanup:cleanup_temporary_files"
trigger = "interval"
seconds = 1
"""


@dataclass(frozen=True)
class Installed:
    wheel: Path
    sdist: Path
    venv: Path
    site_packages: Path

    @property
    def command(self) -> Path:
        return self.venv / "bin" / "worker-service"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """Build the sdist and wheel once per module and install the wheel into a fresh virtualenv."""
    base = tmp_path_factory.mktemp("package")
    sources, dist, venv = base / "src", base / "dist", base / "venv"
    shutil.copytree(ROOT, sources, ignore=NOT_SOURCES)  # the build writes egg-info and build/ next to the sources
    done = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(sources)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    [wheel], [sdist] = list(dist.glob("*.whl")), list(dist.glob("*.tar.gz"))

    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    python = venv / "bin" / "python"
    site_packages = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                                        capture_output=True, text=True, check=True, timeout=30).stdout.strip())
    (site_packages / "_shared_dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    done = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps",
                           "--no-index", str(wheel)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return Installed(wheel, sdist, venv, site_packages)


def clean_env(base: Path, **extra: str) -> dict[str, str]:
    """A service environment with nothing of the checkout or of this test run (no PYTHONPATH, no WORKER_*)."""
    home = base / "home"
    home.mkdir(exist_ok=True)
    return {"PATH": "/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8", **extra}


class Served:
    """``worker-service serve`` started from ``cwd``: the process is gunicorn's master (exec, same pid)."""

    def __init__(self, installed: Installed, cwd: Path, env: dict[str, str], *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.err = cwd.parent / f"serve-{self.port}.err"
        self.process = subprocess.Popen([str(installed.command), "serve", "--bind", f"127.0.0.1:{self.port}", *args],
                                        cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=open(self.err, "wb"))
        track(self.process, f"worker-service serve on {self.url}")

    def health(self) -> dict:
        if self.process.poll() is not None:
            raise AssertionError(f"serve exited with {self.process.returncode}: {self.err.read_text()[-2000:]}")
        status, _, body = http_get(self.url + "/health", timeout=2)
        return body if status == 200 else {}

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            for child in psutil.Process(self.process.pid).children(recursive=True):
                child.kill()
            self.process.kill()
            return self.process.wait(timeout=5)


@pytest.fixture
def serve(installed: Installed, tmp_path: Path) -> Iterator:
    started: list[Served] = []

    def start(cwd: Path, env: dict[str, str], *args: str) -> Served:
        started.append(Served(installed, cwd, env, *args))
        return started[-1]

    yield start
    for served in started:
        served.stop()


def test_build_gives_an_sdist_and_a_wheel_with_the_service_and_nothing_of_tests_or_bench(installed):
    assert installed.wheel.name == f"worker_service-{__version__}-py3-none-any.whl"
    assert installed.sdist.name.endswith(f"-{__version__}.tar.gz")
    names = zipfile.ZipFile(installed.wheel).namelist()
    assert not [name for name in names if name.split("/")[0] in ("tests", "bench", "deploy", "scripts")]
    with tarfile.open(installed.sdist) as sdist:  # the sdist: sources and deploy/ files, no tests or benchmarks
        tops = {member.name.split("/")[1] for member in sdist.getmembers() if member.name.count("/")}
    assert {"worker_service", "common", "deploy", "setup.cfg", "worker_service_gunicorn_guard.pth"} <= tops
    assert not tops & {"tests", "bench"}
    for needed in ("worker_service/gunicorn/conf.py", "worker_service/gunicorn/master.py", "worker_service/wsgi.py",
                   "worker_service/templates/status.html", "worker_service/jobs/builtin.toml",
                   "worker_service_gunicorn_guard.pth", "worker_service_gunicorn_guard.py"):
        assert needed in names, needed


def test_the_installed_command_reports_the_package_version(installed, tmp_path):
    done = subprocess.run([str(installed.command), "--version"], cwd=tmp_path, env=clean_env(tmp_path),
                          capture_output=True, text=True, timeout=30)
    assert (done.returncode, done.stdout.strip()) == (0, f"worker-service {__version__}"), done.stderr
    where = subprocess.run([str(installed.venv / "bin" / "python"), "-c", "import worker_service; print(worker_service.__file__)"],
                           cwd=tmp_path, env=clean_env(tmp_path), capture_output=True, text=True, timeout=30)
    assert Path(where.stdout.strip()).is_relative_to(installed.site_packages), where  # the wheel's, not the checkout's


def test_serve_from_an_empty_directory_runs_the_scheduler_and_writes_nothing_there(installed, serve, tmp_path):
    cwd = tmp_path / "empty"
    cwd.mkdir()
    jobs = tmp_path / "jobs.toml"
    jobs.write_text(JOBS)
    # No WORKER_STATE_DIR: the installed package's default, the XDG state directory, never ./var in the cwd.
    env = clean_env(tmp_path, WORKER_JOBS_FILE=str(jobs), XDG_STATE_HOME=str(tmp_path / "xdg"))
    server = serve(cwd, env, "--workers", "2")

    body = wait_until(lambda: (lambda b: b if b.get("components", {}).get("scheduler") == "available" else None)(
        server.health()), timeout=30, what="/health with the scheduler available")
    assert body["status"] == "available"
    master = psutil.Process(server.process.pid)  # exec: the command's own process is gunicorn's master
    assert master.cmdline()[1:6] == ["-m", "gunicorn", "-c", "python:worker_service.gunicorn.conf",
                                     "worker_service.wsgi:app"]
    assert len(master.children()) == 2  # --workers

    def ticked() -> bool:
        status, _, report = http_get(server.url + "/status", timeout=2)
        return status == 200 and report["metrics"]["jobs_analysis"]["job_health"]["tick"]["success_count"] >= 1
    wait_until(ticked, timeout=15, what="the job's first successful run")

    assert server.stop() == 0
    assert list(cwd.iterdir()) == []
    assert (tmp_path / "xdg" / "worker-service" / "worker-state.sqlite3").is_file()


def test_a_reload_of_the_installed_service_brings_new_package_code(installed, serve, tmp_path):
    """``python:worker_service.gunicorn.conf`` imports the package's __init__ and version into the master; the
    master drops them before forking, or the new workers would keep the old ones (here: the version /openapi.json
    reports) after an upgrade."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    env = clean_env(tmp_path, WORKER_STATE_DIR=str(tmp_path / "state"))
    server = serve(cwd, env, "--workers", "1")
    wait_until(server.health, timeout=30, what="/health")
    version_file = installed.site_packages / "worker_service" / "version.py"
    original = version_file.read_text()
    try:
        version_file.write_text(original.replace(f'"{__version__}"', '"99.0.0-upgraded"'))
        server.process.send_signal(signal.SIGHUP)
        wait_until(lambda: http_get(server.url + "/openapi.json", timeout=2)[2]["info"]["version"] == "99.0.0-upgraded",
                   timeout=30, what="the new version after SIGHUP")
    finally:
        version_file.write_text(original)
    assert server.stop() == 0


@pytest.mark.parametrize(("args", "env", "line"), [
    ((), {"WEB_CONCURRENCY": "abc"}, "WEB_CONCURRENCY='abc' must be a whole number of at least 1"),  # the .pth guard
    (("--bind", ":8000"), {}, "':8000' has no host: gunicorn would listen on every interface"),
])
def test_serve_refuses_a_bad_setting_with_one_line_and_exit_78(installed, tmp_path, args, env, line):
    done = subprocess.run([str(installed.command), "serve", *args], cwd=tmp_path,
                          env=clean_env(tmp_path, WORKER_STATE_DIR=str(tmp_path / "state"), **env),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 78, done.stderr
    [printed] = done.stderr.strip().splitlines()
    assert printed.startswith("worker-service: configuration error:") and line in printed, printed


@pytest.mark.parametrize(("environ", "expected"), [
    ({"STATE_DIRECTORY": "/var/lib/worker-service"}, "/var/lib/worker-service"),
    ({"STATE_DIRECTORY": "/var/lib/a:/var/lib/b"}, "/var/lib/a"),  # StateDirectory= naming several
])
def test_the_state_directory_defaults_to_systemds(environ, expected):
    assert default_state_dir(environ) == expected


def test_without_systemd_the_checkout_keeps_var_and_an_installed_package_uses_the_xdg_state_directory(installed, tmp_path):
    assert default_state_dir({}) == "./var"  # this checkout: make run, the tests
    code = ("from worker_service.config import default_state_dir as d; "
            "print(d({'HOME': '/home/ops'})); print(d({'HOME': '/home/ops', 'XDG_STATE_HOME': '/srv/state'}))")
    done = subprocess.run([str(installed.venv / "bin" / "python"), "-c", code], cwd=tmp_path, env=clean_env(tmp_path),
                          capture_output=True, text=True, timeout=30)
    assert done.stdout.split() == ["/home/ops/.local/state/worker-service", "/srv/state/worker-service"], done.stderr
