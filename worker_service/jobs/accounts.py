"""Account jobs: copy account rows into the cache, and drop cache entries whose rows are gone."""

from __future__ import annotations

import json
import logging

from .. import runtime

log = logging.getLogger(__name__)
MAX_ROWS = 10_000


def _prefix() -> str:
    return f"{runtime.settings()['SERVICE_NAME']}:account:"


def sync_accounts() -> int:
    """Copy up to 10,000 rows of ``ACCOUNTS_TABLE`` into the cache, one key per id; return how many."""
    rows = runtime.database().select(runtime.settings()["ACCOUNTS_TABLE"], limit=MAX_ROWS)
    cache, prefix = runtime.cache(), _prefix()
    for row in rows:
        cache.set(f"{prefix}{row['id']}", json.dumps(row, default=str))
    log.info("sync_accounts: cached %d accounts", len(rows))
    return len(rows)


def reconcile_database() -> int:
    """Delete cached accounts whose row no longer exists; return how many were deleted."""
    rows = runtime.database().select(runtime.settings()["ACCOUNTS_TABLE"], limit=MAX_ROWS)
    live = {str(row["id"]) for row in rows}
    cache, prefix = runtime.cache(), _prefix()
    stale = [key for key in cache.keys(prefix) if key[len(prefix):] not in live]
    deleted = cache.delete(*stale)
    log.info("reconcile_database: removed %d stale cache entries", deleted)
    return deleted
