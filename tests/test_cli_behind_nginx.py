"""`worker-service check` on a VM as shipped: real gunicorn on its unix socket, real nginx with the shipped site.

The check is OK through nginx (base URL or the /health URL itself) and straight
through the socket; once gunicorn is stopped it is CRITICAL both ways, through
nginx with nginx's own message. nginx runs as in test_deploy_nginx.py (see
tests/support/nginx.py for what of the site file is replaced).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.support.nginx import Nginx, nginx_binary, require, socket_group_args
from tests.support.servers import BIN, base_env, wait_until


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "worker-service"), *args], capture_output=True, text=True, timeout=30,
                          env=base_env(Path("/tmp")))


@pytest.fixture
def run_dir():
    """Like /run/worker-service: short (a socket path has at most 107 bytes) and reachable by nginx's workers."""
    path = Path(tempfile.mkdtemp(prefix="ws-cli-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def vm(run_dir, gunicorn):
    """(gunicorn on run_dir/gunicorn.sock, the shipped nginx in front of it). run_dir first: it is removed last."""
    binary = nginx_binary()
    require(binary is not None, "nginx is not installed (Debian: apt-get install nginx-light)")
    socket_path = run_dir / "gunicorn.sock"
    # gunicorn appends binds: the fixture's TCP port (its readiness check) and the socket, as on a VM
    app = gunicorn(args=["-b", f"unix:{socket_path}", *socket_group_args()], WEB_CONCURRENCY="1")
    nginx = Nginx(binary, run_dir / "nginx", socket_path, hosts=("127.0.0.1",)).start()
    try:
        wait_until(lambda: nginx.request("/health").status == 200, timeout=15, what="/health 200 through nginx")
        yield app, nginx, socket_path
    finally:
        nginx.stop()


def test_check_through_nginx_and_the_socket_and_critical_with_nginxs_message_once_gunicorn_stops(vm):
    app, nginx, socket_path = vm
    front = f"http://127.0.0.1:{nginx.ports['127.0.0.1']}"
    for url in (front, front + "/health", f"unix:{socket_path}"):
        done = run_cli("check", "--url", url, "--timeout", "5")
        assert done.returncode == 0 and done.stdout.startswith("WORKER-SERVICE OK - worker-service is available"), \
            (url, done.stdout)
    wrong = run_cli("check", "--url", front + "/worker-service", "--timeout", "5")
    assert wrong.returncode == 3, wrong.stdout
    assert "/worker-service/health answered HTTP 404 Not Found (no such endpoint): is --url the service's" \
           in wrong.stdout

    app.stop()
    wait_until(lambda: not socket_path.exists(), timeout=10, what="gunicorn to remove its socket")
    through_nginx = run_cli("check", "--url", front, "--timeout", "5")
    assert through_nginx.returncode == 2, through_nginx.stdout
    assert through_nginx.stdout.startswith(f"WORKER-SERVICE CRITICAL - {front}/health answered HTTP 502 Bad Gateway: "
                                           "worker-service is not answering; is it running? | time="), through_nginx.stdout
    direct = run_cli("check", "--url", f"unix:{socket_path}", "--timeout", "5")
    assert direct.returncode == 2 and "no such socket; is the service running?" in direct.stdout, direct.stdout
