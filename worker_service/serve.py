"""``worker-service serve``: exec gunicorn with the packaged configuration, from any working directory.

The command becomes gunicorn (:func:`os.execve`, same process id), so under
systemd the unit's main process is gunicorn's master: signals, ``sd_notify``
(``Type=notify``) and the exit-78 rule work as with gunicorn started directly.
gunicorn runs as ``python -m gunicorn`` with this interpreter, so it finds the
same installed packages whatever the virtualenv (``python -m venv``, pipx).

``--bind`` and ``--workers`` are passed as ``GUNICORN_BIND`` and
``WEB_CONCURRENCY``, never as gunicorn flags: the configuration validates them
as it validates the variables (an address without a host, which gunicorn would
bind on every interface, is refused with one line and exit 78).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from typing import NoReturn

CONFIG = "python:worker_service.gunicorn.conf"
APP = "worker_service.wsgi:app"


def gunicorn_command(bind: Sequence[str] = (), workers: int | None = None, extra: Sequence[str] = (),
                     environ: Mapping[str, str] | None = None) -> tuple[list[str], dict[str, str]]:
    """The argv and environment :func:`serve` execs: ``python -m gunicorn -c <packaged config> [extra] <app>``."""
    env = dict(os.environ if environ is None else environ)
    if bind:
        env["GUNICORN_BIND"] = ",".join(bind)
    if workers is not None:
        env["WEB_CONCURRENCY"] = str(workers)
    return [sys.executable, "-m", "gunicorn", "-c", CONFIG, *extra, APP], env


def serve(bind: Sequence[str] = (), workers: int | None = None, extra: Sequence[str] = ()) -> NoReturn:
    """Replace this process with gunicorn; returns only by raising :class:`OSError` if the exec fails."""
    argv, env = gunicorn_command(bind, workers, extra)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(argv[0], argv, env)
