"""Loaded by pytest (`-p tests.testenv`) before Django's settings are read: every test
run gets its own data dir and a file-backed SQLite test database, so tests that start
real worker processes share the database with them. The dir is removed at exit."""

import atexit
import os
import shutil
import tempfile
from pathlib import Path

_run_dir = Path(tempfile.mkdtemp(prefix="buildsite-test-"))
os.environ.setdefault("BUILDSITE_DATA_DIR", str(_run_dir))
os.environ.setdefault("BUILDSITE_TEST_SQLITE_PATH", str(_run_dir / "test.sqlite3"))
os.environ.setdefault("BUILDSITE_Q_NAME", f"buildsite-test-{os.getpid()}")
atexit.register(shutil.rmtree, _run_dir, ignore_errors=True)
