"""DATABASE_URL through a transaction pooler, as the README promises: a stock PgBouncer (``pool_mode = transaction``,
nothing else changed) serves the health check and the jobs' queries, and every bound the service sets still holds.

A pooler shares one server connection among clients, one transaction at a time, and refuses a startup parameter it
does not track: ``options=-c statement_timeout=…`` made PgBouncer answer "unsupported startup parameter: options" to
every probe and every job. The timeout now travels inside each transaction (``SET LOCAL``), so it must also never
outlive it on the shared server connection. Real PgBouncer, real PostgreSQL, a real TCP proxy for a silent server.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from common.helpers.health import ServiceUnavailable
from common.helpers.health.checks.postgres import PostgresCheck
from tests.support.pgbouncer import PgBouncer, available

pytestmark = pytest.mark.skipif(not available(), reason="pgbouncer (Debian package pgbouncer) is not installed")

NO_SCHEDULER = {"HEALTH_CRITICAL_COMPONENTS": "database"}  # no scheduler runs in-process here
REFUSED = "unsupported startup parameter"


@pytest.fixture
def bouncer(tmp_path: Path) -> Iterator[PgBouncer]:
    """A stock PgBouncer in transaction mode with ONE server connection, so every client shares the same backend."""
    with PgBouncer(tmp_path / "bouncer", pool_mode="transaction", pool_size=1) as bouncer:
        yield bouncer
        assert REFUSED not in bouncer.log(), bouncer.log()[-2000:]


# -- what a user sees -------------------------------------------------------------------------------------------
def test_health_is_available_with_database_url_on_a_stock_pgbouncer(make_app, bouncer):
    app = make_app(DATABASE_URL=bouncer.url(), HEALTH_CACHE_TTL="0", **NO_SCHEDULER)
    client = app.test_client()
    for _ in range(3):  # every probe, on the check's reused connection
        response = client.get("/health")
        assert response.status_code == 200, response.json
        assert response.json["components"]["database"] == "available"


# -- the bounds hold, and stay inside their transaction --------------------------------------------------------
def test_the_check_is_still_cancelled_by_its_statement_timeout_through_the_pooler(bouncer):
    class SlowCheck(PostgresCheck):
        query = "SELECT pg_sleep(30)"

    with pytest.raises(ServiceUnavailable, match="canceling statement due to statement timeout"):
        SlowCheck(bouncer.url(), statement_timeout=0.2).check()


