"""Whether a scheduler leads now, by the rule of /health's scheduler component."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from common.helpers.health import ServiceDegraded, ServiceUnavailable

from ..scheduler.component_check import SchedulerCheck
from ..state import StateReader


def leader_problem(store: StateReader, settings: Mapping[str, Any]) -> str | None:
    """Why no scheduler leads (the component's ``unavailable`` reason), or None when one beats.

    A degraded scheduler (an unhealthy critical job, a re-planning after a
    clock jump) still leads and applies commands.
    """
    try:
        SchedulerCheck(store, settings).check()
    except ServiceUnavailable as problem:
        return problem.reason
    except ServiceDegraded:
        return None
    return None
