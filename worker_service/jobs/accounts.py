"""Account jobs: copy account rows into the cache, and drop cache entries whose rows are gone.

They are also the example of a fenced job (README, "Several hosts"). In a
fleet, a leader that was cut off or frozen may wake after another host took
over; its job must then write nothing. So each job's writes go to the cache
in ONE atomic step that carries the job's fencing token
(:func:`worker_service.runtime.fencing_token`, the lease epoch) and is refused
if a newer epoch has already written there: Redis keeps the highest epoch
that wrote (``<service>:fence:accounts``) and a Lua script compares, writes
and moves it up in one go. The check happens at the resource, not in the
job, so no pause between a check and a write can let a stale write in. It is
the rule :mod:`worker_service.fencing` applies in PostgreSQL (highest epoch
wins at the data), and like it never touches the lease: no cache call can
delay a renewal or block a takeover. A leader past its self-fence deadline
gets no token (``None``) and writes nothing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping

from .. import runtime
from ..cache import Cache
from ..state.faults import FencedOut

log = logging.getLogger(__name__)
MAX_ROWS = 10_000

# KEYS[1] the fence, KEYS[2..n+1] the keys to set (values ARGV[3..]), the rest the keys to delete; ARGV[1] the
# epoch, ARGV[2] n. Returns the number of keys deleted, or -1 (nothing written) if a newer epoch wrote before.
_FENCED_WRITE = """
local fence = tonumber(redis.call('GET', KEYS[1]) or '0')
local epoch = tonumber(ARGV[1])
if fence > epoch then return -1 end
if fence < epoch then redis.call('SET', KEYS[1], ARGV[1]) end
local n = tonumber(ARGV[2])
for i = 1, n do redis.call('SET', KEYS[1 + i], ARGV[2 + i]) end
local deleted = 0
for i = n + 2, #KEYS do deleted = deleted + redis.call('DEL', KEYS[i]) end
return deleted
"""


def _prefix() -> str:
    return f"{runtime.settings()['SERVICE_NAME']}:account:"


def fence_key() -> str:
    """The cache key holding the highest epoch that wrote the account keys (outside their prefix)."""
    return f"{runtime.settings()['SERVICE_NAME']}:fence:accounts"


def sync_accounts() -> int:
    """Copy up to 10,000 rows of ``ACCOUNTS_TABLE`` into the cache, one key per id; return how many."""
    rows = runtime.database().select(runtime.settings()["ACCOUNTS_TABLE"], limit=MAX_ROWS)
    prefix = _prefix()
    _write(runtime.cache(), {f"{prefix}{row['id']}": json.dumps(row, default=str) for row in rows}, ())
    log.info("sync_accounts: cached %d accounts", len(rows))
    return len(rows)


def reconcile_database() -> int:
    """Delete cached accounts whose row no longer exists; return how many were deleted."""
    rows = runtime.database().select(runtime.settings()["ACCOUNTS_TABLE"], limit=MAX_ROWS)
    live = {str(row["id"]) for row in rows}
    cache, prefix = runtime.cache(), _prefix()
    stale = [key for key in cache.keys(prefix) if key[len(prefix):] not in live]
    deleted = _write(cache, {}, stale)
    log.info("reconcile_database: removed %d stale cache entries", deleted)
    return deleted


def _write(cache: Cache, sets: Mapping[str, str], deletes: Iterable[str]) -> int:
    """Set and delete keys, fenced in a fleet; return how many keys were deleted. Raises FencedOut if refused."""
    deletes = list(deletes)
    if not runtime.settings()["STATE_DATABASE_URL"] or cache.backend != "redis":
        # One host: its lock is the whole election. An in-process cache belongs to this process alone.
        for key, value in sets.items():
            cache.set(key, value)
        return cache.delete(*deletes)
    epoch = runtime.fencing_token()
    if epoch is None:
        raise FencedOut("this process does not lead the fleet's scheduler: the job writes nothing")
    keys = [fence_key(), *sets, *deletes]
    result = int(cache.client.eval(_FENCED_WRITE, len(keys), *keys, epoch, len(sets), *sets.values()))  # type: ignore[attr-defined]
    if result < 0:
        raise FencedOut(f"fenced out: a newer scheduler lease than epoch {epoch} already wrote the account cache")
    return result
