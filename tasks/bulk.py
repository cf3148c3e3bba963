"""Fast multi-row INSERT for the hot paths that write thousands of rows at once (a
10,000-task build). It skips the ORM's per-object compile step but still converts each
value with its field's own database preparation, so JSON and datetimes are stored
exactly as the ORM would store them, on SQLite and PostgreSQL alike."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

from django.db import connection, models

from .rawsql import to_db

_PLAIN = (
    models.CharField,
    models.TextField,
    models.IntegerField,
    models.BooleanField,
    models.ForeignKey,
)


def _memoised(convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Rows of one build share many values (the same `now`, the same claims dict from
    the spec): convert each distinct object once. Keyed by id(), which is stable while
    the rows are alive."""
    seen: dict[int, Any] = {}

    def cached(value: Any) -> Any:
        key = id(value)
        if key not in seen:
            seen[key] = convert(value)
        return seen[key]

    return cached


def _converter(field: models.Field) -> Callable[[Any], Any] | None:
    """How to prepare one column's values; None when the driver takes them as they are."""
    ops = connection.ops
    if isinstance(field, models.JSONField):
        encoder = field.encoder
        return _memoised(lambda value: ops.adapt_json_value(value, encoder))
    if isinstance(field, models.DateTimeField):
        return _memoised(ops.adapt_datetimefield_value)
    if isinstance(field, _PLAIN):
        return None
    return lambda value: field.get_db_prep_save(value, connection)


@lru_cache(maxsize=64)
def _statement(model: type[models.Model], columns: tuple[str, ...]) -> str:
    quote = connection.ops.quote_name
    fields = [model._meta.get_field(name) for name in columns]
    return "INSERT INTO {} ({}) VALUES ({})".format(
        quote(model._meta.db_table),
        ", ".join(quote(f.column) for f in fields),
        ", ".join(["%s"] * len(fields)),
    )


def insert_rows(
    model: type[models.Model],
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    batch_size: int = 2000,
) -> None:
    """Insert `rows` (tuples in the order of `columns`, which are field names)."""
    if not rows:
        return
    columns = tuple(columns)
    sql = _statement(model, columns)
    if len(rows) <= 8:
        # The hot path writes a few events at a time: no memoisation needed.
        prepared = [[to_db(model, c, v) for c, v in zip(columns, row, strict=True)] for row in rows]
        with connection.cursor() as cursor:
            cursor.executemany(sql, prepared)
        return
    fields = [model._meta.get_field(name) for name in columns]
    converters = [(i, c) for i, c in enumerate(_converter(f) for f in fields) if c is not None]

    def prepare(row: Sequence[Any]) -> list[Any]:
        out = list(row)
        for i, convert in converters:
            out[i] = convert(out[i])
        return out

    with connection.cursor() as cursor:
        for start in range(0, len(rows), batch_size):
            cursor.executemany(sql, [prepare(row) for row in rows[start : start + batch_size]])
