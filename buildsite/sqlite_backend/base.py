"""Django's SQLite backend, taking the write lock with a short wait between tries.

SQLite lets one writer in at a time. A writer that finds the lock taken is put to sleep
by SQLite's busy handler for 1, 2, 5, 10, 15 … ms between tries, however soon the lock
is freed. With two workers, the queue's pusher and its monitor each committing every
millisecond or two, most of a writer's wait was sleeping past a lock that was already
free (docs/performance.md). Here `BEGIN IMMEDIATE` is tried without SQLite's handler,
with waits that start at 50 µs and grow to at most 1 ms, until the same busy timeout
as before. Statements outside a transaction still use SQLite's own handler.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db.backends.sqlite3 import base

FIRST_WAIT = 0.00005
LONGEST_WAIT = 0.001


# UPDATE ... RETURNING (tasks/rawsql.py, buildsite/broker.py) needs 3.35.
MIN_SQLITE = (3, 35)


class DatabaseWrapper(base.DatabaseWrapper):  # type: ignore[misc]  # Django is untyped (Any base)
    def get_new_connection(self, conn_params: dict[str, Any]) -> sqlite3.Connection:
        if sqlite3.sqlite_version_info < MIN_SQLITE:
            raise ImproperlyConfigured(
                f"Buildsite needs SQLite {'.'.join(map(str, MIN_SQLITE))} or newer; "
                f"this Python has {sqlite3.sqlite_version}"
            )
        conn: sqlite3.Connection = super().get_new_connection(conn_params)
        self.busy_timeout_ms = int(float(conn_params.get("timeout", 5)) * 1000)
        return conn

    def _start_transaction_under_autocommit(self) -> None:
        if self.transaction_mode != "IMMEDIATE":
            super()._start_transaction_under_autocommit()
            return
        raw = self.connection
        with self.wrap_database_errors:
            raw.execute("PRAGMA busy_timeout = 0")
            try:
                begin_immediate(raw, self.busy_timeout_ms / 1000)
            finally:
                raw.execute(f"PRAGMA busy_timeout = {self.busy_timeout_ms}")


def begin_immediate(raw: sqlite3.Connection, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    wait = FIRST_WAIT
    while True:
        try:
            raw.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + wait > deadline:
                raise
        time.sleep(wait)
        wait = min(wait * 2, LONGEST_WAIT)
