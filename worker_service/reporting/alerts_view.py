"""The alerts as /status, /metrics and the page show them: channels masked, the outbox summed up, recent deliveries."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Mapping
from typing import Any

from common.helpers.health import format_timestamp, redact

from ..alerts import AlertSettings, build_channels
from ..state import StateReader
from ..state.alert_records import AlertState, AlertSummary, Delivery

log = logging.getLogger(__name__)
RECENT = 10  # deliveries shown in /status and on the page


def channels(settings: Mapping[str, Any]) -> list[dict[str, str]]:
    """Each configured channel: its id (the outbox's), its type and its URL masked."""
    return [{"id": channel.id, "type": channel.id.split("-")[0], "url": channel.label}
            for channel in build_channels(AlertSettings.from_settings(settings))]


def delivery_view(delivery: Delivery) -> dict[str, Any]:
    """One delivery for people: what it said, where to, how it went."""
    try:
        payload = json.loads(delivery.payload)
    except ValueError:
        payload = {}
    return {
        "id": delivery.id,
        "created_at": format_timestamp(delivery.created_at),
        "status": delivery.status,
        "kind": payload.get("kind"),
        "subject": payload.get("subject"),
        "state": payload.get("state"),
        "reason": payload.get("reason"),
        "channel": delivery.channel,
        "outcome": delivery.outcome,
        "attempts": delivery.attempts,
        "last_error": None if delivery.last_error is None else redact(delivery.last_error),
        "finished_at": format_timestamp(delivery.finished_at),
    }


@dataclasses.dataclass(frozen=True)
class AlertsRead:
    """The outbox as read once for /status and /metrics; nothing read when no channel is configured."""

    channels: list[dict[str, str]]
    summary: AlertSummary | None = None
    states: dict[str, AlertState] = dataclasses.field(default_factory=dict)
    recent: list[Delivery] = dataclasses.field(default_factory=list)
    error: str | None = None  # why the outbox could not be read

def read_alerts(store: StateReader, shown: list[dict[str, str]], recent: int = RECENT) -> AlertsRead:
    """The outbox's summary, states and ``recent`` deliveries (none read for 0), when ``shown`` (the channels) is not empty."""
    if not shown:
        return AlertsRead(shown)
    try:
        return AlertsRead(shown, store.alert_summary(), store.alert_states(),
                          store.deliveries(recent) if recent else [])
    except Exception as error:  # noqa: BLE001 - StoreUnavailable or a driver's error; the rest of the report stands
        return AlertsRead(shown, error=redact(getattr(error, "reason", None) or str(error)))


def alerts_block(alerts: AlertsRead) -> dict[str, Any]:
    """The ``metrics.alerts`` block of /status."""
    block: dict[str, Any] = {"enabled": bool(alerts.channels), "channels": alerts.channels, "pending": None,
                             "oldest_pending_age_seconds": None, "last_failure": None, "sent": None, "failed": None,
                             "firing": [], "recent": [], "error": alerts.error}
    summary, states = alerts.summary, alerts.states
    if summary is None:
        return block
    block.update(
        pending=summary.pending,
        oldest_pending_age_seconds=None if summary.oldest_pending_age is None else round(summary.oldest_pending_age, 3),
        last_failure=None if summary.last_failure is None else delivery_view(summary.last_failure),
        sent=sum(n for (_, outcome), n in summary.counts.items() if outcome == "sent"),
        failed=sum(n for (_, outcome), n in summary.counts.items() if outcome == "failed"),
        firing=[{"key": s.key, "kind": s.kind, "subject": s.subject, "state": s.state, "since": format_timestamp(s.since),
                 "reason": s.reason} for s in sorted(states.values(), key=lambda s: s.since) if s.firing],
        recent=[delivery_view(d) for d in alerts.recent],
    )
    return block
