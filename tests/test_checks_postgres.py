"""The PostgreSQL check names its connection after the service that runs it, not after this library."""

from __future__ import annotations

from common.helpers.health.checks.postgres import PostgresCheck
from tests.conftest import DATABASE_URL


def application_name(check: PostgresCheck) -> str:
    with check.connect() as connection:
        return connection.execute("SHOW application_name").fetchone()[0]


def test_the_check_connects_under_the_application_name_it_is_given():
    assert application_name(PostgresCheck(DATABASE_URL, application_name="billing-health")) == "billing-health"


def test_without_a_name_the_check_says_only_that_it_is_a_health_check():
    assert application_name(PostgresCheck(DATABASE_URL)) == "health-check"


def test_the_service_names_its_check_connection_as_before():
    from worker_service.database import PostgresDatabase

    check = PostgresDatabase(DATABASE_URL, timeout=5.0, check_timeout=1.0).health_check()
    assert application_name(check) == "worker-service-health"
