"""What a new leader does with a job whose worker died under it: hold it back, then quarantine it.

A job that kills its own process (``os._exit``, a segfault in a C extension,
memory exhaustion, a freeze that gets the worker killed at its timeout) takes
the leader with it. Without a rule, each new leader would run it again at
once, and the whole host would crash-loop. So, from the runs the dead leaders
left unfinished (see ``StateStore.settle_orphans``):

* after a crash, the job's next run is held back by ``JOB_CRASH_BACKOFF``
  seconds, doubling with each crash in a row (at most ``MAX_HOLD``);
* after ``JOB_CRASH_LIMIT`` crashes in a row the job is quarantined: it is
  not scheduled, and it shows as ``unhealthy`` ("quarantined") in ``/status``
  and degrades the scheduler in ``/health``, until its definition changes in
  the jobs file (then the next leader releases it) — the rest of the service
  keeps working meanwhile;
* a run that finishes (success or error) ends the streak;
* a run ``lost`` with its leader (in a fleet, a new leader took over from a
  host that may still be alive: cut off from the database, or frozen) is no
  crash, and it neither adds to the streak nor ends it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from ..config import CRASH_BACKOFF_DEFAULT, CRASH_LIMIT_DEFAULT

MAX_HOLD = 900.0  # seconds: the longest a crashing job is held back before its next try


@dataclasses.dataclass(frozen=True)
class CrashPolicy:
    """``limit`` crashes in a row before quarantine; ``backoff`` seconds of hold after the first."""

    limit: int = CRASH_LIMIT_DEFAULT
    backoff: float = CRASH_BACKOFF_DEFAULT

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> CrashPolicy:
        """The policy from ``JOB_CRASH_LIMIT`` and ``JOB_CRASH_BACKOFF``."""
        return cls(limit=settings.get("JOB_CRASH_LIMIT", CRASH_LIMIT_DEFAULT),
                   backoff=settings.get("JOB_CRASH_BACKOFF", CRASH_BACKOFF_DEFAULT))

    def hold_for(self, consecutive_crashes: int) -> float:
        """Seconds to hold a job back after its ``consecutive_crashes``-th crash in a row."""
        return min(self.backoff * 2 ** max(consecutive_crashes - 1, 0), MAX_HOLD)

    def quarantines(self, consecutive_crashes: int) -> bool:
        """Whether that many crashes in a row put the job in quarantine."""
        return consecutive_crashes >= self.limit
