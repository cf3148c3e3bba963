"""Fast multi-row INSERT for the hot paths that write thousands of rows at once (a
10,000-task build). It skips the ORM's per-object compile step but still converts each
value with its field's own database preparation, so JSON and datetimes are stored
exactly as the ORM would store them, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from functools import lru_cache, partial
from typing import Any

from django.db import connection, models

from . import rawsql

# A column's converter, given the connection's `ops` and the value (rawsql.writer).
Writer = Callable[[Any, Any], Any]

# The `# type: ignore[arg-type]` below: the cached helpers take a model class, which is
# hashable, but mypy does not count `type[X]` as Hashable (python/mypy#17730).


def _memoised(convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Rows of one build share many values (the same `now`, the same claims dict from
    the spec): convert each distinct object once. Keyed by id(), which is stable while
    the rows are alive."""
    seen: dict[Any, Any] = {}

    def cached(value: Any) -> Any:
        # Empty containers (event data, outputs of no-op tasks) are fresh objects each
        # time, but equal: one conversion per type.
        key = id(value) if value or not isinstance(value, (dict, list)) else type(value)
        if key not in seen:
            seen[key] = convert(value)
        return seen[key]

    return cached


@lru_cache(maxsize=64)
def _plan(
    model: type[models.Model], columns: tuple[str, ...]
) -> tuple[str, tuple[tuple[int, Writer], ...]]:
    """The statement, and the converter of each column that needs one."""
    fields = [model._meta.get_field(name) for name in columns]
    sql = "INSERT INTO {} ({}) VALUES ({})".format(
        rawsql.table(model),  # type: ignore[arg-type]
        ", ".join(connection.ops.quote_name(f.column) for f in fields),
        ", ".join(["%s"] * len(fields)),
    )
    writers = tuple(
        (i, w) for i, name in enumerate(columns) if (w := _writer(model, name)) is not None
    )
    return sql, writers


def _writer(model: type[models.Model], name: str) -> Writer | None:
    field = model._meta.get_field(name)
    if isinstance(field, models.JSONField):
        # JSON as text, which both databases store as the ORM would (it is what SQLite's
        # adapter sends). On PostgreSQL the ORM's `Jsonb` wrapper is encoded by the
        # driver for every row of a COPY, memoised or not: 50,000 `json.dumps` calls in
        # a cached 10,000-task rebuild, against one per distinct value here.
        return partial(_json_text, field.encoder)
    return rawsql.writer(model, name)  # type: ignore[arg-type]


def _json_text(encoder: type[json.JSONEncoder] | None, ops: Any, value: Any) -> str:
    return json.dumps(value, cls=encoder)


def column_value(model: type[models.Model], name: str, value: Any) -> Any:
    """`value` of `model.name` as `insert_rows` sends it (for its `prepared` columns)."""
    convert = _writer(model, name)
    return value if convert is None or value is None else convert(connection.ops, value)


def insert_rows(
    model: type[models.Model],
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    batch_size: int = 2000,
    prepared: frozenset[str] = frozenset(),
    returning: str = "",
) -> list[Any]:
    """Insert `rows` (tuples in the order of `columns`, which are field names). The
    values of `prepared` columns are already the driver's (`rawsql.to_db`). With
    `returning` (a column, e.g. "id"), returns its value of each new row in the
    rows' order: multi-row INSERT ... RETURNING, whose rows both databases return in
    the order of VALUES (Django's `bulk_create` relies on that as well); cheaper than
    `bulk_create` by the ORM's compile step, which cost as much as a round trip for
    the one event a worker writes when it claims a task."""
    if not rows:
        return []
    sql, plan = _plan(model, tuple(columns))  # type: ignore[arg-type]
    ops = connection.ops
    writers: tuple[tuple[int, Callable[[Any], Any]], ...] = tuple(
        (i, partial(w, ops)) for i, w in plan if columns[i] not in prepared
    )
    if len(rows) > 1:
        writers = tuple((i, _memoised(w)) for i, w in writers)

    def prepare(row: Sequence[Any]) -> list[Any]:
        out = list(row)
        for i, convert in writers:
            if out[i] is not None:
                out[i] = convert(out[i])
        return out

    if returning:
        column = rawsql.col(model, returning)  # type: ignore[arg-type]
        values: list[Any] = []
        for start in range(0, len(rows), RETURNING_BATCH):
            batch = [prepare(row) for row in rows[start : start + RETURNING_BATCH]]
            values += rawsql.insert_returning(sql, batch, column)
        return values
    for start in range(0, len(rows), batch_size):
        rawsql.insert_many(sql, [prepare(row) for row in rows[start : start + batch_size]])
    return []


RETURNING_BATCH = 500  # rows per INSERT ... RETURNING (9 columns: 4,500 parameters)
