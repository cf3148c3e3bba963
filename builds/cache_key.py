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
    return key_from_parts(
        steps=canonical(steps),
        env=canonical(dict(env)),
        params=canonical(dict(params)),
        inputs=canonical(dict(inputs)),
        deps=canonical(dict(dependencies)),
    )


_VERSION_PART = canonical(KEY_VERSION)


def key_from_parts(*, steps: bytes, env: bytes, params: bytes, inputs: bytes, deps: bytes) -> str:
    """`task_cache_key` from parts already in canonical form, which callers can keep:
    a task's steps and env are the same in every build of a version, the params the
    same for every task of a build. Canonical JSON of an object with sorted keys is its
    members' canonical forms joined in key order, so the key is exactly the digest of
    the whole object."""
    h = hashlib.sha256()
    for part in (
        b'{"deps":', deps, b',"env":', env, b',"inputs":', inputs,
        b',"params":', params, b',"steps":', steps, b',"v":', _VERSION_PART, b"}",
    ):  # fmt: skip
        h.update(part)
    return h.hexdigest()


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
