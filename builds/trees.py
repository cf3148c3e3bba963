"""Walking and removing a workspace that a step built: without recursion (a step can
make a tree deeper than Python's recursion limit; `os.walk` and `shutil.rmtree` recurse
in Python 3.11) and without following a link it planted."""

from __future__ import annotations

import logging
import os
import shutil
import stat
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)


def entries(root: Path) -> Iterator[tuple[str, os.stat_result]]:
    """(relative path, lstat) of everything under `root`, directories included; links
    are reported, never followed."""
    stack = [""]
    while stack:
        rel = stack.pop()
        try:
            with os.scandir(root / rel if rel else root) as listing:
                for entry in listing:
                    path = f"{rel}/{entry.name}" if rel else entry.name
                    try:
                        info = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    yield path, info
                    if stat.S_ISDIR(info.st_mode):
                        stack.append(path)
        except OSError:
            continue


def remove(path: Path) -> None:
    """Remove a tree whatever its depth or modes; what cannot go is moved aside (never
    reused, never raised: cleaning up must not stop the next attempt)."""
    if not os.path.lexists(path):
        return
    try:
        shutil.rmtree(path)  # the usual case, in this process: no program to start
        return
    except (OSError, RecursionError):
        pass  # deep or unwritable: rm handles both
    for attempt in range(2):
        # rm walks iteratively (fts); as root it also removes unwritable directories.
        subprocess.run(["rm", "-rf", "--one-file-system", "--", str(path)], check=False)
        if not os.path.lexists(path):
            return
        if attempt == 0:  # not root: give ourselves write permission, then again
            subprocess.run(["chmod", "-R", "u+rwX", "--", str(path)], check=False)
    aside = path.with_name(f".stuck-{uuid.uuid4().hex[:8]}")
    try:
        os.replace(path, aside)
        log.error("could not remove %s; moved to %s", path, aside)
    except OSError:
        log.error("could not remove %s", path, exc_info=True)
