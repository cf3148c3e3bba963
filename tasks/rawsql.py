"""Plain SQL for the per-task hot path (claim, finish, unlock, dispatch).

Every finished no-op task used to cost about 20 ORM statements, and most of their time
went to compiling the query in Python, not to the database (docs/performance.md). The
helpers here keep the SQL text per shape and convert values with each field's own
database preparation and converters, so rows written and read here are exactly what
the ORM writes and reads, on SQLite and PostgreSQL alike. Statements go through
Django's cursor, so they are counted and logged like the ORM's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from functools import cache, lru_cache
from typing import Any

from django.conf import settings
from django.db import connection, models
from django.db.models.expressions import Col

# A database converter, as Django calls it: (value, expression, connection) -> value.
Converter = Callable[[Any, Any, Any], Any]

# The `# type: ignore[arg-type]` below: the cached helpers take a model class, which is
# hashable, but mypy does not count `type[X]` as Hashable (python/mypy#17730).


@cache
def table(model: type[models.Model]) -> str:
    quoted: str = connection.ops.quote_name(model._meta.db_table)
    return quoted


@cache
def col(model: type[models.Model], name: str) -> str:
    quoted: str = connection.ops.quote_name(model._meta.get_field(name).column)
    return quoted


@cache
def writer(model: type[models.Model], name: str) -> Callable[[Any, Any], Any] | None:
    """How to prepare a value of `model.name` for the driver, given the connection's
    `ops`; None when the driver takes it as it is."""
    field = model._meta.get_field(name)
    if isinstance(field, models.JSONField):
        encoder = field.encoder
        return lambda ops, value: ops.adapt_json_value(value, encoder)
    if isinstance(field, models.DateTimeField):
        return lambda ops, value: ops.adapt_datetimefield_value(value)
    if isinstance(
        field, (models.CharField, models.TextField, models.IntegerField, models.ForeignKey)
    ):
        return None
    return lambda ops, value: field.get_db_prep_save(value, ops.connection)


def to_db(model: type[models.Model], name: str, value: Any) -> Any:
    """A Python value as the ORM would send it for `model.name`."""
    convert = writer(model, name)  # type: ignore[arg-type]
    return value if convert is None or value is None else convert(connection.ops, value)


@cache
def _readers(
    model: type[models.Model], names: tuple[str, ...]
) -> list[tuple[int, list[tuple[Converter, Any]]]]:
    # Kept per process: the converters depend on settings (time zone, JSON decoder),
    # not on which thread's connection handed them out.
    out: list[tuple[int, list[tuple[Converter, Any]]]] = []
    for i, name in enumerate(names):
        field = model._meta.get_field(name)
        expression = Col(model._meta.db_table, field)
        converters = connection.ops.get_db_converters(expression) + field.get_db_converters(
            connection
        )
        if converters and isinstance(field, models.JSONField):
            out.append((i, [(_json_reader(converters), expression)]))
        elif converters:
            out.append((i, [(c, expression) for c in converters]))
    return out


def _json_reader(converters: list[Converter]) -> Converter:
    """Most JSON cells on the hot path are empty (outputs, event data, needs of roots):
    those skip the decoder; the rest go through the field's own converters."""

    def convert(value: Any, expression: Any, conn: Any) -> Any:
        if value == "{}":
            return {}
        if value == "[]":
            return []
        for converter in converters:
            value = converter(value, expression, conn)
        return value

    return convert


def from_db(
    model: type[models.Model], names: tuple[str, ...], rows: Iterable[Sequence[Any]]
) -> list[list[Any]]:
    """Rows of `names` columns as the ORM would return them (JSON decoded, datetimes
    aware), as lists."""
    readers = _readers(model, names)  # type: ignore[arg-type]
    out = []
    for row in rows:
        values = list(row)
        for i, converters in readers:
            for convert, expression in converters:
                values[i] = convert(values[i], expression, connection)
        out.append(values)
    return out


# Through Django's cursor wrapper, not the driver's cursor: the statements pass the
# connection's execute wrappers (so `assertNumQueries`, django-debug-toolbar and APM
# hooks see them), its broken-transaction check and its error translation.

PREPARE_AFTER = 1  # runs of a statement text in a connection before it is prepared


def _cursor(params: Sequence[Any] = (), *, prepare: bool = True) -> Any:
    """Django's cursor for this connection; on PostgreSQL, one that binds parameters on
    the server, so that psycopg prepares a statement text on its second run in a
    connection. Django's own cursors put the values into the text (client-side
    binding, which cannot be prepared), so the server parsed and planned the hot
    path's few dozen statements thousands of times: about a third of its CPU on the
    scaled 400-step benchmark (docs/performance.md). psycopg keeps the last 100 per
    connection and forgets them all on a rollback. Django's cursor is kept:
    - with `BUILDSITE_PG_PREPARE=0`, for poolers that cannot keep prepared statements
      (Django turns preparing off by default for them; docs/deployment.md);
    - while the connection logs its queries (DEBUG, `assertNumQueries`): a prepared
      run leaves no SQL text for the log;
    - for a statement with an array parameter (`one_of`: a rebuild's thousands of
      cache keys or ids), which runs a few times per build and is better planned for
      its values: prepared, the cached 10,000-task rebuild took 3-7% longer;
    - without `prepare`: a text of which there are many variants (a multi-row INSERT
      of any number of rows), which would push the hot path's own statements out of
      psycopg's 100."""
    if (
        not prepare
        or connection.vendor != "postgresql"
        or not settings.BUILDSITE.get("PG_PREPARE", True)
        or connection.queries_logged
        or any(isinstance(p, list) for p in params)
    ):
        return connection.cursor()
    from django.db.backends.postgresql.base import ServerBindingCursor

    # What `connection.cursor()` does (Django 5.2's BaseDatabaseWrapper._cursor), with
    # the other cursor class; the connection's adapters (time zone) are the same.
    connection.close_if_health_check_failed()
    connection.ensure_connection()
    with connection.wrap_database_errors:
        raw = connection.connection
        raw.prepare_threshold = PREPARE_AFTER  # the ORM's client-binding cursors never prepare
        return connection._prepare_cursor(ServerBindingCursor(raw))


def fetch(sql: str, params: Sequence[Any] = (), *, prepare: bool = True) -> list[tuple[Any, ...]]:
    with _cursor(params, prepare=prepare) as cursor:
        cursor.execute(sql, params)
        rows: list[tuple[Any, ...]] = cursor.fetchall()
        return rows


def execute(sql: str, params: Sequence[Any] = ()) -> int:
    """Run one statement; returns the number of rows it changed."""
    with _cursor(params) as cursor:
        cursor.execute(sql, params)
        count: int = cursor.rowcount
        return count


def executemany(sql: str, rows: Sequence[Sequence[Any]]) -> None:
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)


def insert_many(sql: str, rows: Sequence[Sequence[Any]]) -> None:
    """Store `rows` with `sql`, an `INSERT INTO t (columns) VALUES (%s, ...)` for one
    row. On SQLite that is `executemany` (the driver re-binds one prepared statement,
    in C). On PostgreSQL psycopg's `executemany` runs one statement per row, and a
    10,000-task build took seconds of per-statement work on the server, so the rows go
    in with COPY, still through the connection's execute wrappers; up to FEW_ROWS as
    one multi-row INSERT."""
    if not rows:
        return
    if connection.vendor != "postgresql":
        executemany(sql, rows)
        return
    if len(rows) <= FEW_ROWS:
        # COPY is two round trips (the command, then the data); a settling batch most
        # often stores a job or two.
        execute(_values_sql(sql, len(rows)), [value for row in rows for value in row])
        return
    with connection.cursor() as cursor:
        cursor._execute_with_wrappers(_copy_sql(sql), rows, many=True, executor=_copy)


def insert_returning(sql: str, rows: Sequence[Sequence[Any]], column: str) -> list[Any]:
    """Store `rows` with `sql` (as `insert_many`) as one multi-row INSERT; returns
    `column` of each new row, in the order of `rows`."""
    returning = f"{_values_sql(sql, len(rows))} RETURNING {column}"
    params = [value for row in rows for value in row]
    # A text per row count: prepared only for the few counts that recur (`_cursor`).
    return [value for (value,) in fetch(returning, params, prepare=len(rows) <= FEW_ROWS)]


FEW_ROWS = 20  # rows that go in as one INSERT rather than a COPY (PostgreSQL)


@lru_cache(maxsize=256)
def _values_sql(insert_sql: str, count: int) -> str:
    head, _, row = insert_sql.rpartition(" VALUES ")
    return f"{head} VALUES {', '.join([row] * count)}"


@lru_cache(maxsize=64)
def _copy_sql(insert_sql: str) -> str:
    head = insert_sql.rpartition(" VALUES ")[0]
    return "COPY " + head.removeprefix("INSERT INTO ") + " FROM STDIN"


def _copy(sql: str, rows: Sequence[Sequence[Any]], many: bool, context: dict[str, Any]) -> None:
    db = context["connection"]
    db.validate_no_broken_transaction()
    with db.wrap_database_errors, context["cursor"].cursor.copy(sql) as copy:
        for row in rows:
            copy.write_row(row)


def one_of(column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
    """`column` is one of `values`, as SQL and its parameters. PostgreSQL gets one array
    parameter (`= ANY(%s)`): the statement text stays the same whatever the count, so
    the driver parses it once instead of splitting a list of thousands of placeholders
    on every call. SQLite gets `IN (%s, ...)`."""
    if connection.vendor == "postgresql":
        return f"{column} = ANY(%s)", [list(values)]
    return f"{column} IN ({marks(len(values))})", list(values)


def marks(n: int) -> str:
    return ", ".join(["%s"] * n)


@lru_cache(maxsize=256)
def update_sql(model: type[models.Model], names: tuple[str, ...], where: tuple[str, ...]) -> str:
    sets = ", ".join(f"{col(model, n)} = %s" for n in names)  # type: ignore[arg-type]
    conds = " AND ".join(f"{col(model, n)} = %s" for n in where)  # type: ignore[arg-type]
    return f"UPDATE {table(model)} SET {sets} WHERE {conds}"  # type: ignore[arg-type]


def update(model: type[models.Model], values: dict[str, Any], where: dict[str, Any]) -> int:
    """UPDATE ... SET values WHERE every `where` column equals its value; returns the
    number of rows changed (0 when the condition no longer holds)."""
    names, keys = tuple(values), tuple(where)
    params = [to_db(model, n, values[n]) for n in names]
    params += [to_db(model, n, where[n]) for n in keys]
    return execute(update_sql(model, names, keys), params)  # type: ignore[arg-type]


def update_ids(
    model: type[models.Model],
    values: dict[str, Any],
    ids: Sequence[int],
    where: dict[str, Any],
    returning: str = "",
) -> Any:
    """`update` for many rows by primary key (at most a few hundred ids per call).
    With `returning`, the values of that column in the rows changed (the database
    must support UPDATE ... RETURNING)."""
    names, keys = tuple(values), tuple(where)
    params = [to_db(model, n, values[n]) for n in names]
    params += [to_db(model, n, where[n]) for n in keys]
    sql = update_sql(model, names, keys) + f" AND {col(model, 'id')} IN ({marks(len(ids))})"  # type: ignore[arg-type]
    if returning:
        rows = fetch(f"{sql} RETURNING {col(model, returning)}", [*params, *ids])  # type: ignore[arg-type]
        return [r[0] for r in rows]
    return execute(sql, [*params, *ids])
