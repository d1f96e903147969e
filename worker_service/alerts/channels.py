"""Where notifications go: our own JSON webhook (signed), and Apprise for every other service.

A channel sends one payload (the JSON text of :mod:`.payload`) and says how it
went: accepted, refused for good (a 4xx other than 408 and 429: retrying
would not help), or failed for now (retried). Nothing here retries or waits
longer than ``ALERT_TIMEOUT``: the deliverer decides.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import logging
from typing import Protocol

import httpx

from common.helpers.health import redact

from ..channel_urls import channel_id, mask_channel_url
from ..version import __version__
from .settings import AlertSettings

log = logging.getLogger(__name__)
SIGNATURE_HEADER = "X-Worker-Service-Signature-256"
RETRIED_4XX = frozenset({408, 429})


@dataclasses.dataclass(frozen=True)
class SendResult:
    """How one try went: ``accepted``; if not, whether it is ``permanent``; ``detail`` (redacted) for people."""

    accepted: bool
    permanent: bool = False
    detail: str = ""


class Channel(Protocol):
    """One configured destination."""

    id: str  # stable, shows nothing of the URL: the outbox's channel column
    label: str  # the URL, masked

    def send(self, payload: str) -> SendResult: ...


def signature(secret: str, body: bytes) -> str:
    """The signature header's value: ``sha256=`` and the hex HMAC-SHA256 of the body with the secret (as GitHub's)."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookChannel:
    """POST the payload as JSON; with a secret, signed in :data:`SIGNATURE_HEADER`."""

    def __init__(self, url: str, secret: str | None, timeout: float) -> None:
        self.url, self._secret, self._timeout = url, secret, timeout
        self.id = channel_id("webhook", url)
        self.label = mask_channel_url(url)

    def send(self, payload: str) -> SendResult:
        body = payload.encode()
        event = json.loads(payload)
        headers = {"Content-Type": "application/json", "User-Agent": f"worker-service/{__version__}",
                   "X-Worker-Service-Event": "alert", "X-Worker-Service-Delivery": str(event.get("id", ""))}
        if self._secret:
            headers[SIGNATURE_HEADER] = signature(self._secret, body)
        try:
            response = httpx.post(self.url, content=body, headers=headers, timeout=self._timeout)
        except httpx.HTTPError as error:
            return SendResult(False, False, redact(f"{type(error).__name__}: {error}"))
        code = response.status_code
        if 200 <= code < 300:
            return SendResult(True, False, f"HTTP {code}")
        permanent = 400 <= code < 500 and code not in RETRIED_4XX
        return SendResult(False, permanent, f"HTTP {code}" + (" (not retried)" if permanent else ""))


class AppriseChannel:
    """Any Apprise URL: the payload becomes a title and a body in that service's own format."""

    def __init__(self, url: str, timeout: float) -> None:
        self.url, self._timeout = url, timeout
        self.id = channel_id("apprise", url)
        self.label = mask_channel_url(url)

    def send(self, payload: str) -> SendResult:
        import apprise  # only when an Apprise channel is used: it imports a lot

        event = json.loads(payload)
        title, body = message(event)
        notifier = apprise.Apprise()
        try:
            if not notifier.add(self.url):
                return SendResult(False, True, "Apprise does not understand this URL")
            kind = apprise.NotifyType.FAILURE if event.get("status") == "firing" else apprise.NotifyType.SUCCESS
            if event.get("test"):
                kind = apprise.NotifyType.INFO
            accepted = notifier.notify(title=title, body=body, notify_type=kind)
        except Exception as error:  # noqa: BLE001 - a plugin may raise anything; it is a failed try
            return SendResult(False, False, redact(f"{type(error).__name__}: {error}"))
        return SendResult(True, False, "accepted") if accepted else SendResult(False, False, "not accepted (see the log)")


def message(event: dict) -> tuple[str, str]:
    """A notification's title and body for people (chat, e-mail, pager)."""
    status = str(event.get("status", "")).upper()
    what = f"{event['rule']} of {event.get('subject')}" if event.get("rule") else f"{event.get('kind')} {event.get('subject')}"
    title = f"[{status}] {event.get('service')}: {what} is {event.get('state')}"
    lines = [str(event.get("reason") or ""), f"was: {event.get('previous_state')}", f"host: {event.get('host')}",
             f"at: {event.get('at')}"]
    if event.get("url"):
        lines.append(str(event["url"]))
    return title, "\n".join(line for line in lines if line)


def build_channels(settings: AlertSettings) -> list[Channel]:
    """Every configured channel, webhooks first, in the order of the settings."""
    channels: list[Channel] = [WebhookChannel(url, settings.webhook_secret, settings.timeout)
                               for url in settings.webhook_urls]
    channels += [AppriseChannel(url, settings.timeout) for url in settings.apprise_urls]
    return channels
