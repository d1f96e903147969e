"""Where the service keeps its local state when ``WORKER_STATE_DIR`` is unset. Standard library only.

The gunicorn master reads it by path (it never imports the package, so that a
reload brings new code): one definition for the settings and the master.
"""

from __future__ import annotations

import os
from collections.abc import Mapping


def default_state_dir(environ: Mapping[str, str] | None = None) -> str:
    """``WORKER_STATE_DIR`` when it is unset: never "``./var`` wherever the service happens to be started".

    1. ``$STATE_DIRECTORY``, which systemd sets from the unit's ``StateDirectory=``
       (the first one, if it names several, colon-separated);
    2. ``./var`` when the package runs from its source checkout (``make run``,
       the tests: the layout developers know);
    3. otherwise, an installed package: ``$XDG_STATE_HOME/worker-service``, by
       default ``~/.local/state/worker-service`` (the XDG base directory for state).
    """
    environ = os.environ if environ is None else environ
    systemd = environ.get("STATE_DIRECTORY", "").split(":")[0]
    if systemd:
        return systemd
    if _in_source_checkout():
        return "./var"
    home = environ.get("HOME", "") or os.path.expanduser("~")
    state_home = environ.get("XDG_STATE_HOME", "") or os.path.join(home, ".local", "state")
    return os.path.join(state_home, "worker-service")


def _in_source_checkout() -> bool:
    """True when this package is the one in the repository (editable install, tests), not an installed copy."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return all(os.path.isfile(os.path.join(root, name)) for name in ("setup.cfg", "gunicorn.conf.py"))


def resolved_state_dir(environ: Mapping[str, str] | None = None) -> str:
    """``WORKER_STATE_DIR`` as the settings resolve it (empty counts as unset), absolute."""
    environ = os.environ if environ is None else environ
    return os.path.abspath(environ.get("WORKER_STATE_DIR") or default_state_dir(environ))
