"""Timestamp and uptime formats shared by the health payloads."""

from __future__ import annotations

import datetime as dt


def utc_now() -> dt.datetime:
    """Return the current time as an aware UTC datetime."""
    return dt.datetime.now(dt.UTC)


def format_timestamp(moment: dt.datetime | float | None) -> str | None:
    """Format a datetime or epoch seconds as ``2023-06-15T10:30:45.123456Z``.

    Naive datetimes are taken as UTC. ``None`` stays ``None``.
    """
    if moment is None:
        return None
    if isinstance(moment, (int, float)):
        moment = dt.datetime.fromtimestamp(moment, dt.UTC)
    elif moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    # isoformat is C all the way (strftime costs several times as much on a probe's path); same text, "Z" for "+00:00".
    return moment.astimezone(dt.UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def format_uptime(seconds: float) -> str:
    """Format a duration as days, hours and minutes: ``86420`` gives ``1d 0h 0m``."""
    minutes_total = max(int(seconds), 0) // 60
    days, rest = divmod(minutes_total, 24 * 60)
    hours, minutes = divmod(rest, 60)
    return f"{days}d {hours}h {minutes}m"
