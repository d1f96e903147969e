"""The state store's tables, described once (worker_service/state/tables.py): both backends follow the description.

A new store is made from the description; an older one is migrated to it. So
every described column exists in both backends, with its type, and an
upgraded store looks exactly like a new one: an unversioned SQLite file
(``user_version`` 0, as every release before versions left it) and a
PostgreSQL schema at an older version alike. A PostgreSQL schema already at
the latest version is left as it is.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

from tests.support import pg
from tests.support.old_schemas import postgresql_schema_at
from tests.support.pg import schema  # noqa: F401 - the fixture
from worker_service.state import PostgresStateStore, SqliteStateStore, pg_schema, sqlite_migrations
from worker_service.state.ddl import sql_type
from worker_service.state.records import JobDefinition
from worker_service.state.tables import AUTO_ID, POSTGRESQL, SQLITE, TABLES, Table, tables_of

_POSTGRESQL_TYPES = {"timestamptz": "timestamp with time zone"}  # information_schema's words for the short names


def _definition(job_id: str) -> JobDefinition:
    return JobDefinition(job_id, job_id.title(), "interval[0:01:00]", 1000.0, 30.0, 1, "default", False, True, 60.0)


def sqlite_layout(path: Path) -> dict[str, list[tuple]]:
    """Each table's columns (name, type, not null, default, key) and the indexes of the file."""
    with closing(sqlite3.connect(path)) as db:
        tables = [name for (name,) in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite%' ORDER BY name")]
        layout = {table: [row[1:] for row in db.execute(f"PRAGMA table_info({table})")] for table in tables}
        layout["indexes"] = db.execute("SELECT name, tbl_name FROM sqlite_master WHERE type = 'index'"
                                       " AND name NOT LIKE 'sqlite%' ORDER BY name").fetchall()
    return layout


def postgresql_layout(name: str) -> dict[str, list[tuple]]:
    """Each table's columns (name, type, nullable, default; an identity or a serial both read ``auto``) and indexes."""
    columns = pg.rows(name, "SELECT table_name, column_name, data_type, is_nullable,"
                              " CASE WHEN is_identity = 'YES' OR column_default LIKE 'nextval(%%' THEN 'auto'"
                              " ELSE column_default END FROM information_schema.columns WHERE table_schema = %s"
                              " ORDER BY table_name, ordinal_position", (name,))
    layout: dict[str, list[tuple]] = {}
    for table, *column in columns:
        layout.setdefault(table, []).append(tuple(column))
    layout["indexes"] = pg.rows(name, "SELECT indexname, replace(indexdef, %s, 's.') FROM pg_indexes"
                                      " WHERE schemaname = %s ORDER BY indexname", (f"{name}.", name))
    return layout


def _described(table: Table, backend: str) -> list[tuple[str, str]]:
    """The table's columns as described: (name, type as the backend names it)."""
    names = {AUTO_ID: "INTEGER" if backend == SQLITE else "bigint"}
    return [(column.name, names.get(column.type) or sql_type(column, backend)) for column in table.columns]


# -- every described column, in both backends ------------------------------------------------------------
def test_a_new_sqlite_file_has_every_described_table_and_column_and_nothing_else(tmp_path):
    path = tmp_path / "state.sqlite3"
    SqliteStateStore(str(path)).job_count()
    layout = sqlite_layout(path)
    described = {table.name_in(SQLITE): table for table in tables_of(SQLITE)}
    assert set(layout) - {"indexes", "sqlite_sequence"} == set(described)
    for name, table in described.items():
        assert [(column[0], column[1]) for column in layout[name]] == _described(table, SQLITE), name
    with closing(sqlite3.connect(path)) as db:
        assert sqlite_migrations.version(db) == sqlite_migrations.LATEST


def test_a_new_postgresql_schema_has_every_described_table_and_column_and_nothing_else(schema):  # noqa: F811
    store = PostgresStateStore(pg.FAST_URL, schema, timeout=5.0)
    try:
        assert store.migrate() == pg_schema.LATEST
    finally:
        store.close()
    layout = postgresql_layout(schema)
    described = {table.name: table for table in tables_of(POSTGRESQL)}
    assert set(layout) - {"indexes", "schema_version"} == set(described)
    for name, table in described.items():
        expected = [(column, _POSTGRESQL_TYPES.get(kind, kind)) for column, kind in _described(table, POSTGRESQL)]
        assert [(column[0], column[1]) for column in layout[name]] == expected, name
    assert pg.rows(schema, "SELECT version FROM {s}.schema_version ORDER BY version") == [
        (version,) for version, _, _ in pg_schema.MIGRATIONS]


def test_the_tables_only_postgresql_keeps_are_the_fleets_lease_log_fences_and_hosts():
    assert {table.name for table in TABLES if SQLITE not in table.backends} == {"lease", "leadership_changes", "fences",
                                                                               "hosts"}


# -- an older store is migrated to the description -------------------------------------------------------
def _unversioned_file_of_the_last_release(path: Path) -> None:
    """A file as the last release before versions left it: its layout (version 1's step), ``user_version`` 0."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        sqlite_migrations.MIGRATIONS[0][2](db)
        db.execute("INSERT INTO jobs (id, position, name, trigger, next_run_time, misfire_grace_time, max_instances,"
                   " executor, paused, critical, interval_seconds) VALUES ('a', 0, 'A', 'interval[0:01:00]', 1000.0,"
                   " 30.0, 1, 'default', 0, 1, 60.0)")
        db.execute("INSERT INTO job_stats (job_id, success_count, duration_sum) VALUES ('a', 3, 6.0)")
        db.execute("INSERT INTO job_runs (job_id, at, outcome, duration) VALUES ('a', 10.0, 'success', 2.0)")
        assert sqlite_migrations.version(db) == 0
    finally:
        db.close()


def _unversioned_file_of_an_early_release(path: Path) -> None:
    """A file of a release before most columns and tables: three tables, none of the columns added later."""
    with closing(sqlite3.connect(path)) as db:
        db.executescript("""
            CREATE TABLE jobs (id TEXT PRIMARY KEY, position INTEGER NOT NULL, name TEXT NOT NULL,
                               trigger TEXT NOT NULL, next_run_time REAL, misfire_grace_time REAL, max_instances INTEGER NOT NULL,
                               executor TEXT NOT NULL, paused INTEGER NOT NULL, critical INTEGER NOT NULL,
                               interval_seconds REAL);
            CREATE TABLE job_stats (job_id TEXT PRIMARY KEY, success_count INTEGER NOT NULL DEFAULT 0,
                                    error_count INTEGER NOT NULL DEFAULT 0, missed_count INTEGER NOT NULL DEFAULT 0,
                                    max_instances_count INTEGER NOT NULL DEFAULT 0,
                                    duration_sum REAL NOT NULL DEFAULT 0, duration_min REAL, duration_max REAL,
                                    consecutive_failures INTEGER NOT NULL DEFAULT 0, last_run_at REAL,
                                    last_outcome TEXT, last_success_at REAL, last_error_type TEXT,
                                    last_error_message TEXT, last_error_at REAL, runs_since_problem INTEGER);
            CREATE TABLE job_runs (seq INTEGER PRIMARY KEY AUTOINCREMENT, job_id TEXT NOT NULL, at REAL NOT NULL,
                                   outcome TEXT NOT NULL, duration REAL);
            INSERT INTO jobs VALUES ('a', 0, 'A', 'interval[0:01:00]', 1000.0, 30.0, 1, 'default', 0, 1, 60.0);
            INSERT INTO job_stats (job_id, success_count, duration_sum) VALUES ('a', 3, 6.0);
            INSERT INTO job_runs (job_id, at, outcome, duration) VALUES ('a', 10.0, 'success', 2.0);
        """)


def test_an_unversioned_sqlite_file_is_migrated_to_the_new_files_layout_and_keeps_its_rows(tmp_path):
    new = tmp_path / "new.sqlite3"
    SqliteStateStore(str(new)).job_count()
    for make in (_unversioned_file_of_the_last_release, _unversioned_file_of_an_early_release):
        path = tmp_path / f"{make.__name__}.sqlite3"
        make(path)
        store = SqliteStateStore(str(path), history_size=5)
        (job,) = store.jobs()
        assert (job.id, job.definition.critical, job.success_count, job.duration_sum) == ("a", True, 3, 6.0)
        assert [(run.outcome, run.duration, run.trigger) for run in store.runs("a")] == [("success", 2.0, "scheduled")]
        assert sqlite_layout(path) == sqlite_layout(new), make.__name__
        with closing(sqlite3.connect(path)) as db:
            assert sqlite_migrations.version(db) == sqlite_migrations.LATEST
        store.record_run("a", "success", 20.0, 4.0)
        assert next(iter(store.jobs())).duration_p95 == 4.0


def test_a_postgresql_schema_of_each_older_version_is_migrated_to_the_new_schemas_layout():
    with pg.scratch_schema() as new:
        PostgresStateStore(pg.FAST_URL, new, timeout=5.0).migrate()
        expected = postgresql_layout(new)
    for version in range(1, pg_schema.LATEST):
        with pg.scratch_schema() as older:
            postgresql_schema_at(older, version)
            store = PostgresStateStore(pg.FAST_URL, older, timeout=5.0)
            try:
                assert store.migrate() == pg_schema.LATEST
            finally:
                store.close()
            assert postgresql_layout(older) == expected, version


def test_a_postgresql_schema_at_the_latest_version_is_left_as_it_is_and_served(schema):  # noqa: F811
    postgresql_schema_at(schema, pg_schema.LATEST)  # made by the migrations as shipped, not by the description
    before = postgresql_layout(schema), pg.rows(schema, "SELECT * FROM {s}.schema_version ORDER BY version")
    store = PostgresStateStore(pg.FAST_URL, schema, timeout=5.0)
    try:
        assert store.migrate() == pg_schema.LATEST
        store.publish_jobs([_definition("a")])
        store.record_run("a", "success", 10.0, 2.0)
        assert [(job.id, job.success_count, job.duration_p95) for job in store.jobs()] == [("a", 1, 2.0)]
    finally:
        store.close()
    assert (postgresql_layout(schema), pg.rows(schema, "SELECT * FROM {s}.schema_version ORDER BY version")) == before
