"""Alerts: tell people when a job, a component or the store changes state, and before a metric hurts.

The leader looks (:mod:`.monitor`), records each change of a subject's alert
state and its notifications in the state store in one fenced write (the
outbox), and one deliverer sends them (:mod:`.deliverer`) to webhooks and
Apprise URLs (:mod:`.channels`), retrying with backoff. README, "Alerts".
"""

from .channels import Channel, SendResult, build_channels
from .settings import AlertSettings

__all__ = ["AlertSettings", "Channel", "SendResult", "build_channels"]
