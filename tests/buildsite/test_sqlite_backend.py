"""Taking SQLite's write lock with short waits (buildsite/sqlite_backend)."""

import sqlite3
import threading
import time

import pytest

from buildsite.sqlite_backend.base import begin_immediate


@pytest.fixture
def db_path(tmp_path):
    path = tmp_path / "lock.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE t (x)")
    return path


def connect(path):
    return sqlite3.connect(path, timeout=0, isolation_level=None, check_same_thread=False)


def test_a_writer_gets_the_lock_soon_after_the_holder_commits(db_path):
    holder, waiter = connect(db_path), connect(db_path)
    holder.execute("BEGIN IMMEDIATE")
    released = []

    def commit_later():
        time.sleep(0.2)
        holder.execute("INSERT INTO t VALUES (1)")
        released.append(time.monotonic())
        holder.execute("COMMIT")

    threading.Thread(target=commit_later).start()
    begin_immediate(waiter, timeout=5)
    got = time.monotonic()
    waiter.execute("INSERT INTO t VALUES (2)")
    waiter.execute("COMMIT")
    assert released and got >= released[0]
    assert [x for (x,) in waiter.execute("SELECT x FROM t ORDER BY rowid")] == [1, 2]


def test_a_writer_gives_up_with_database_is_locked_after_the_timeout(db_path):
    holder, waiter = connect(db_path), connect(db_path)
    holder.execute("BEGIN IMMEDIATE")
    started = time.monotonic()
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        begin_immediate(waiter, timeout=0.1)
    assert time.monotonic() - started >= 0.09
    holder.execute("ROLLBACK")


def test_other_errors_are_not_retried(db_path):
    conn = connect(db_path)
    conn.execute("BEGIN IMMEDIATE")
    with pytest.raises(sqlite3.OperationalError, match="within a transaction"):
        begin_immediate(conn, timeout=5)


def test_an_sqlite_without_returning_is_refused_with_a_clear_error(monkeypatch, settings):
    from django.core.exceptions import ImproperlyConfigured
    from django.db import connections

    from buildsite.sqlite_backend import base

    monkeypatch.setattr(base.sqlite3, "sqlite_version_info", (3, 34, 1))
    monkeypatch.setattr(base.sqlite3, "sqlite_version", "3.34.1")
    wrapper = base.DatabaseWrapper({**connections["default"].settings_dict, "NAME": ":memory:"})
    with pytest.raises(ImproperlyConfigured, match=r"SQLite 3\.35 or newer; .* 3\.34\.1"):
        wrapper.get_new_connection(wrapper.get_connection_params())
