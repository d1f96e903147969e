"""``worker-service status``: the service's components, scheduler and jobs as a table (colour on a terminal)."""

from __future__ import annotations

import sys

import click

from ..service_client import Service, Unknown
from .http import read_token_option, status_body, timeout_option, url_option
from .output import UNKNOWN, fail, print_json
from .status_table import render


@click.command()
@url_option
@timeout_option
@read_token_option
@click.option("--json", "as_json", is_flag=True, help="Print the raw /status JSON.")
def status(url: str, timeout: float, token: str | None, as_json: bool) -> None:
    """Print components and jobs as a table (colour on a terminal). Exit 3 if the service cannot be read."""
    try:
        body = status_body(Service.parse(url), timeout, token)
    except Unknown as error:
        fail(UNKNOWN, str(error))
    if as_json:
        print_json(body)
        return
    click.echo(render(body, colour=sys.stdout.isatty()))
