"""The service on this host: ``check-config`` validates its settings and jobs file, ``serve`` runs it under gunicorn."""

from __future__ import annotations

import sys

import click

from .output import fail

EX_SOFTWARE = 70  # sysexits.h: gunicorn could not be started at all


@click.command("check-config")
@click.option("--at-start", is_flag=True, hidden=True,
              help="As the service's start runs it: a state database that does not answer yet is only a warning.")
def check_config(at_start: bool) -> None:
    """Validate the environment and the jobs file; exit 0 if usable, 78 if not (like `nginx -t`)."""
    from ..gunicorn.hooks import EX_CONFIG, validate_configuration

    warn = (lambda line: click.echo(f"worker-service: {line}", err=True)) if at_start else None
    problem = validate_configuration(warn)
    if problem:
        click.echo(f"worker-service: {problem}", err=True)
        sys.exit(EX_CONFIG)
    click.echo("worker-service: configuration OK")


@click.command(context_settings={"ignore_unknown_options": True})
@click.option("--bind", "-b", multiple=True, metavar="ADDRESS",
              help="Where gunicorn listens (repeatable): host:port, [IPv6]:port or unix:/path; sets GUNICORN_BIND "
                   "(default 127.0.0.1:8000).")
@click.option("--workers", "-w", type=click.IntRange(min=1), default=None,
              help="Worker processes; sets WEB_CONCURRENCY (default 2).")
@click.argument("gunicorn_args", nargs=-1, type=click.UNPROCESSED, metavar="[-- GUNICORN_OPTIONS]")
def serve(bind: tuple[str, ...], workers: int | None, gunicorn_args: tuple[str, ...]) -> None:
    """Run the service: exec gunicorn with the packaged configuration, from any directory.

    Every GUNICORN_* and WEB_CONCURRENCY variable applies as documented; other
    gunicorn options go after `--`. A bad setting or jobs file: one line, exit 78.
    """
    from ..serve import serve as exec_gunicorn

    try:
        exec_gunicorn(bind, workers, gunicorn_args)
    except OSError as error:
        fail(EX_SOFTWARE, f"cannot start gunicorn: {error.strerror or error}")
