"""The ``worker-service`` command: a monitoring plugin, a status table and job control, a config check and serve.

One module per tool, each registering its commands on :data:`main` here:

* :mod:`.nagios`: ``check``, the Nagios/Icinga plugin;
* :mod:`.status`: ``status`` (a table of /status), and :mod:`.alerts`: ``alerts`` (and ``alerts test``);
* :mod:`.jobs`: ``jobs``, ``history``, ``run``, ``pause``, ``resume`` (job control);
* :mod:`.server`: ``check-config`` and ``serve``, the service on this host;

and what they share: :mod:`.http` (the options that name the service, and
:func:`~.http.fetch`), :mod:`.output` (exit codes, and what may be printed),
:mod:`.tables` and :mod:`.status_table` (the tables for people).

Every command takes ``--url`` as ``http(s)://host[:port]`` or gunicorn's
socket, ``unix:/run/worker-service/gunicorn.sock`` (see
:mod:`worker_service.service_client`, which sends the requests).

The job-control commands (``jobs``, ``history``, ``run``, ``pause``,
``resume``) exit with the plugin's codes: 0 done, 1 WARNING (still pending, or
already running), 2 CRITICAL (the run failed, no scheduler leads), 3 UNKNOWN
(unreachable, 401/403, unknown job, an answer that makes no sense). A
success prints one line on stdout; anything else one line on stderr; never a
traceback.

Nothing printed carries a secret or a terminal's control sequence: a URL is
shown without its user name, password and query (``--url`` may hold Basic
credentials, sent as such), and text from the service (a job's error) has
its control characters replaced.
"""

from __future__ import annotations

import click

from ..service_client import Unknown, Unreachable, shown_url
from ..version import __version__
from . import alerts, jobs, nagios, server, status
from .http import fetch

__all__ = ["Unknown", "Unreachable", "fetch", "main", "shown_url"]


@click.group()
@click.version_option(__version__, "--version", prog_name="worker-service", message="%(prog)s %(version)s")
def main() -> None:
    """worker-service: scheduled jobs with health and status endpoints."""


for command in (nagios.check, status.status, server.check_config, server.serve, *jobs.COMMANDS, alerts.alerts):
    main.add_command(command)
