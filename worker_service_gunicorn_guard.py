"""Before gunicorn reads its own settings: a WEB_CONCURRENCY it cannot read is one line and exit 78.

gunicorn takes ``int(WEB_CONCURRENCY)`` as its default number of workers when it
imports ``gunicorn.config``, before it reads its configuration: ``abc``, ``1.5`` or
an empty value (which the env example says counts as unset) crashed it with a
traceback and exit 1, so systemd restarted it again and again. No config file
runs early enough, so worker_service_gunicorn_guard.pth imports this module at
interpreter start. In any process but gunicorn it does nothing; in gunicorn an
empty value is removed (unset: the configuration's default applies) and a bad one
gets the line the configuration would print, then exit 78 (EX_CONFIG). Any
gunicorn of the interpreter: ``worker-service serve`` (``python -m gunicorn``), the
venv's ``gunicorn`` script. A wheel puts the .pth file in site-packages (setup.py).

Standard library only, and it never imports the ``worker_service`` package (the
master must not: a reload brings new code); the check is
``worker_service/gunicorn/master.py``'s, loaded by path as the configuration does.
"""

from __future__ import annotations

import os
import sys

NAME = "WEB_CONCURRENCY"


def _is_gunicorn() -> bool:
    """gunicorn's script (``.venv/bin/gunicorn``) or ``python -m gunicorn``."""
    script = (getattr(sys, "argv", None) or [""])[0]
    return os.path.basename(script) == "gunicorn" or getattr(sys, "orig_argv", [])[1:3] == ["-m", "gunicorn"]


def _refuse_unreadable_workers() -> None:
    import importlib.util

    package = importlib.util.find_spec("worker_service")  # finds it without importing it
    if package is None or not package.submodule_search_locations:
        return
    path = os.path.join(list(package.submodule_search_locations)[0], "gunicorn", "master.py")
    spec = importlib.util.spec_from_file_location("_worker_service_gunicorn_master", path)
    if spec is None or spec.loader is None:
        return
    master = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(master)
    try:
        master.whole_number(os.environ, NAME, 1)
    except master.ServerConfigError as error:
        sys.stderr.write(f"worker-service: {error}\n")
        sys.stderr.flush()
        os._exit(master.EX_CONFIG)  # a SystemExit here, inside site's start-up, would be a fatal error instead


def guard() -> None:
    if NAME not in os.environ or not _is_gunicorn():
        return
    if os.environ[NAME] == "":
        del os.environ[NAME]  # empty counts as unset; gunicorn's int("") would crash
        return
    try:
        int(os.environ[NAME])  # what gunicorn does; a number it reads is judged by the configuration (one line, 78)
    except ValueError:
        _refuse_unreadable_workers()


guard()
