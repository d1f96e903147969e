"""The DDL of each backend, rendered from the one description of the tables (:mod:`.tables`).

``create_statements(SQLITE)`` makes a new SQLite file;
``create_statements(POSTGRESQL)`` a new schema (``{s}`` stands for the quoted schema). :func:`add_column` is the
statement a migration that adds a described column runs.
"""

from __future__ import annotations

from .tables import AUTO_ID, BOOL, COUNT, INT, POSTGRESQL, REAL, SQLITE, TEXT, TIMESTAMP, Column, Table, tables_of

_TYPES = {
    SQLITE: {TEXT: "TEXT", INT: "INTEGER", COUNT: "INTEGER", REAL: "REAL", BOOL: "INTEGER",
             AUTO_ID: "INTEGER PRIMARY KEY AUTOINCREMENT"},
    POSTGRESQL: {TEXT: "text", INT: "integer", COUNT: "bigint", REAL: "double precision", BOOL: "boolean",
                 TIMESTAMP: "timestamptz", AUTO_ID: "bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY"},
}
_CAST = {TEXT: "text", INT: "int", COUNT: "bigint", REAL: "float8", BOOL: "boolean", TIMESTAMP: "timestamptz",
         AUTO_ID: "bigint"}  # PostgreSQL: the type a parameter or a NULL is cast to in a statement


def sql_type(column: Column, backend: str) -> str:
    """The column's type in ``backend``."""
    return _TYPES[backend][column.type]


def cast(type_: str) -> str:
    """The PostgreSQL type a value of described type ``type_`` is cast to (``%(x)s::float8``, ``NULL::text``)."""
    return _CAST[type_]


def literal(value: str | int | bool | None, backend: str) -> str:
    """A default as ``backend`` writes it (SQLite has no boolean: 0 and 1)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return ("true" if value else "false") if backend == POSTGRESQL else str(int(value))
    return str(value)


def column_definition(column: Column, backend: str) -> str:
    """``name type [NOT NULL] [DEFAULT x] [PRIMARY KEY] [CHECK (...)]``."""
    parts = [column.name, sql_type(column, backend)]
    if column.primary_key:
        parts.append("PRIMARY KEY")
    if column.check:
        parts.append(f"CHECK ({column.check})")
    if column.not_null:
        parts.append("NOT NULL")
    if column.default is not None:
        parts.append(f"DEFAULT {literal(column.default, backend)}")
    return " ".join(parts)


def _prefix(backend: str) -> str:
    return "{s}." if backend == POSTGRESQL else ""


def create_table(table: Table, backend: str) -> list[str]:
    """``CREATE TABLE`` and its indexes, as ``backend`` writes them: one statement each."""
    definitions = [column_definition(column, backend) for column in table.columns]
    if table.primary_key:
        definitions.append(f"PRIMARY KEY ({', '.join(table.primary_key)})")
    name = table.name_in(backend)
    statements = [f"CREATE TABLE {_prefix(backend)}{name} (\n    " + ",\n    ".join(definitions) + "\n)"]
    for index in table.indexes:
        unique = "UNIQUE " if index.unique else ""
        where = f" WHERE {index.where}" if index.where else ""
        statements.append(f"CREATE {unique}INDEX {name}_{index.suffix} ON {_prefix(backend)}{name}"
                          f" ({', '.join(index.columns)}){where}")
    return statements


def create_statements(backend: str) -> list[str]:
    """Every table ``backend`` keeps, made new: one statement each."""
    return [statement for table in tables_of(backend) for statement in create_table(table, backend)]


def add_column(table: Table, column_name: str, backend: str) -> str:
    """The ``ALTER TABLE`` that adds a described column to an existing table."""
    column = table.column(column_name)
    return f"ALTER TABLE {_prefix(backend)}{table.name_in(backend)} ADD COLUMN {column_definition(column, backend)}"
