"""The ``worker-service`` command."""

from __future__ import annotations

import sys

import click


@click.group()
def main() -> None:
    """worker-service: scheduled jobs with health and status endpoints."""


@main.command("check-config")
def check_config() -> None:
    """Validate the environment and the jobs file; exit 0 if usable, 78 if not (like `nginx -t`)."""
    from .scheduler.gunicorn_hooks import EX_CONFIG, validate_configuration

    problem = validate_configuration()
    if problem:
        click.echo(f"worker-service: {problem}", err=True)
        sys.exit(EX_CONFIG)
    click.echo("worker-service: configuration OK")
