"""Content-addressed cache keys: the same inputs always give the same key."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

KEY_VERSION = "buildsite-cache-v1"


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode()


def digest(value: Any) -> str:
    return hashlib.sha256(canonical(value)).hexdigest()


def task_cache_key(
    *,
    steps: list[Any],
    env: Mapping[str, str],
    params: Mapping[str, Any],
    inputs: Mapping[str, str],
    dependencies: Mapping[str, str],
) -> str:
    """`steps` are the task's steps with templates already rendered; `inputs` maps each
    declared input file to its content hash; `dependencies` maps each dependency to its
    own cache key, or to a digest of its outputs when it was not cached."""
    return digest(
        {
            "v": KEY_VERSION,
            "steps": steps,
            "env": dict(env),
            "params": dict(params),
            "inputs": dict(inputs),
            "deps": dict(dependencies),
        }
    )


def hash_inputs(root: Path, patterns: Iterable[str]) -> dict[str, str]:
    """Content hash of every file matched by the glob `patterns` (relative to `root`,
    or absolute). A pattern that matches nothing is recorded as such, so creating the
    file later changes the key."""
    hashes: dict[str, str] = {}
    for pattern in patterns:
        base, glob = (
            (Path("/"), pattern.lstrip("/")) if pattern.startswith("/") else (root, pattern)
        )
        matches = sorted(p for p in base.glob(glob) if p.is_file())
        if not matches:
            hashes[pattern] = "missing"
        for path in matches:
            h = hashlib.sha256()
            with path.open("rb") as fh:
                for block in iter(lambda: fh.read(1 << 16), b""):
                    h.update(block)
            hashes[str(path if pattern.startswith("/") else path.relative_to(root))] = h.hexdigest()
    return hashes
