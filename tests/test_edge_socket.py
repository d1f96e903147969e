"""gunicorn's unix socket is open to its owner and group (nginx's) only; its umask never reaches the state files.

gunicorn applies its own ``umask`` setting (default 0, i.e. ``srwxrwxrwx``) when it
binds a unix socket, whatever systemd's ``UMask=`` says; gunicorn.conf.py sets it.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.support.servers import wait_until

SOCKET_MODE = 0o770  # srwxrwx---: the service's user and group; the unit makes the group nginx's
PROCESS_UMASK = 0o077  # what the test gives the master, like systemd's UMask= in the shipped unit
TOKEN = "edge-socket-token-1b2c"

CONNECT = """
import socket, sys
sock = socket.socket(socket.AF_UNIX)
try:
    sock.connect(sys.argv[1])
except PermissionError:
    sys.exit(13)
sock.sendall(b"GET /status HTTP/1.0\\r\\n\\r\\n")
sys.stdout.write(sock.recv(64).decode(errors="replace"))
"""


@pytest.fixture
def run_dir():
    """Short (a socket path has at most 107 bytes) and traversable, like /run/worker-service."""
    path = Path(tempfile.mkdtemp(prefix="ws-edge-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def raw_request(socket_path: Path, request: bytes) -> bytes:
    import socket

    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(5)
        sock.connect(str(socket_path))
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_the_unix_socket_admits_only_its_owner_and_group_and_state_files_keep_the_process_umask(
        gunicorn, run_dir, state_dir):
    socket_path = run_dir / "gunicorn.sock"
    previous = os.umask(PROCESS_UMASK)  # inherited by the gunicorn master only; restored at once
    try:
        server = gunicorn(args=["-b", f"unix:{socket_path}"], wait=False, WEB_CONCURRENCY="1", STATUS_TOKEN=TOKEN)
    finally:
        os.umask(previous)
    wait_until(server._live, timeout=20, what="gunicorn to answer")

    info = os.stat(socket_path)
    assert stat.S_ISSOCK(info.st_mode)
    assert stat.S_IMODE(info.st_mode) == SOCKET_MODE, oct(stat.S_IMODE(info.st_mode))
    assert (info.st_uid, info.st_gid) == (os.geteuid(), os.getegid())

    # The owner is served, and even it learns nothing about /status without the token, whatever the method.
    assert status_of(raw_request(socket_path, b"GET /health/live HTTP/1.0\r\n\r\n")) == 200
    for method in (b"OPTIONS", b"HEAD", b"POST", b"GET"):
        answer = raw_request(socket_path, method + b" /status HTTP/1.0\r\n\r\n")
        assert status_of(answer) == 401, (method, answer[:200])

    # Another local user, for real: its connect() is refused by the socket's mode. (The system Python: the
    # virtualenv's may sit where that user cannot read.)
    system_python = shutil.which("python3", path="/usr/bin:/bin")
    if os.geteuid() == 0 and system_python:
        other = subprocess.run([system_python, "-c", CONNECT, str(socket_path)], user="nobody", group="nogroup",
                               capture_output=True, text=True, timeout=20)
        assert other.returncode == 13, (other.returncode, other.stdout[:200], other.stderr[-500:])

    # gunicorn's umask is applied around its own bind only: what the workers write (the state store, the
    # scheduler lock, the embedded database) follows the process umask, so none of it is group-readable.
    wait_until(lambda: server.get("/health")[2]["components"]["scheduler"] == "available", timeout=15,
               what="the scheduler's first heartbeat (its state files written)")
    written = [path for path in state_dir.rglob("*")]
    assert any(path.suffix == ".sqlite3" for path in written), written
    loose = {str(path.relative_to(state_dir)): oct(stat.S_IMODE(path.stat().st_mode))
             for path in written if stat.S_IMODE(path.stat().st_mode) & 0o077}
    assert not loose, f"files open to group or others: {loose}"
    assert all(path.stat().st_mode & stat.S_IXUSR for path in written if path.is_dir())
