"""``worker-service alerts``: the recent alert deliveries (from /status); ``alerts test`` sends a test notification."""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from typing import Any

import click

from ..service_client import Service, Unknown
from .http import json_option, read_token_option, status_body, timeout_option, url_option
from .jobs import default_requester
from .output import CRITICAL, OK, UNKNOWN, fail, print_json, safe
from .tables import printable


@click.group(invoke_without_command=True)
@url_option
@timeout_option
@read_token_option
@json_option
@click.pass_context
def alerts(ctx: click.Context, url: str, timeout: float, token: str | None, as_json: bool) -> None:
    """List the recent alert deliveries (from /status); `alerts test` sends a test notification."""
    if ctx.invoked_subcommand is not None:
        return
    try:
        body = status_body(Service.parse(url), timeout, token)
    except Unknown as error:
        fail(UNKNOWN, str(error))
    block = (body.get("metrics") or {}).get("alerts")
    if not isinstance(block, dict):
        fail(UNKNOWN, "this service reports no alerts (an older version?)")
    if as_json:
        print_json(block)
        return
    for line in _alerts_text(block):
        click.echo(safe(line))


def _alerts_text(block: Mapping[str, Any]) -> list[str]:
    """The alerts block as a few lines for people."""
    if not block.get("enabled"):
        return ["no alert channel is configured (ALERT_WEBHOOK_URLS, ALERT_APPRISE_URLS)"]
    lines = ["channels: " + ", ".join(f"{c['id']} {c['url']}" for c in block.get("channels", [])),
             f"pending: {block.get('pending')}, sent: {block.get('sent')}, failed: {block.get('failed')}"]
    if block.get("error"):
        lines.append(f"outbox not readable: {block['error']}")
    for alert in block.get("firing", []):
        lines.append(f"firing since {alert['since']}: {alert['kind']} {alert['subject']} is {alert['state']}"
                     f" ({alert.get('reason') or 'no reason'})")
    lines.append(f"{'created':<24} {'status':<9} {'subject':<28} {'channel':<18} {'outcome':<8} tries  last error")
    for row in block.get("recent", []):
        subject = f"{row.get('kind')} {row.get('subject')}"
        lines.append(f"{str(row.get('created_at')):<24} {row['status']:<9} {printable(subject)[:28]:<28} "
                     f"{row['channel']:<18} {row['outcome']:<8} {row['attempts']:<6} {row.get('last_error') or ''}")
    return lines


@alerts.command("test")
def alerts_test() -> None:
    """Send a test notification through every configured channel; print each result. Exit 0 if all accepted, 2 if not.

    Reads the service's settings from the environment, as the service does
    (run it with the service's environment file), and sends from here: it
    checks the channels themselves, whether or not the service runs.
    """
    from ..alerts import AlertSettings, build_channels
    from ..alerts import payload as payloads
    from ..config import ConfigError, load_settings
    from ..host_identity import host_id, host_label

    try:
        settings = AlertSettings.from_settings(load_settings())
    except ConfigError as error:
        fail(UNKNOWN, str(error))
    channels = build_channels(settings)
    if not channels:
        fail(UNKNOWN, "no alert channel is configured (ALERT_WEBHOOK_URLS, ALERT_APPRISE_URLS)")
    now = time.time()
    body = payloads.build(settings, key="test", kind="test", subject="alerts test", firing=True, state="test",
                          previous_state=None, reason=f"a test notification sent by {default_requester()}",
                          host=host_label(host_id()) or "", at=now, since=now, test=True)
    failed = 0
    for channel in channels:
        result = channel.send(payloads.encode(body))
        failed += not result.accepted
        verdict = "accepted" if result.accepted else "FAILED"
        click.echo(safe(f"{channel.id} {channel.label}: {verdict} ({result.detail})"))
    sys.exit(CRITICAL if failed else OK)
