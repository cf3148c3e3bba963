"""Content-addressed cache keys: the same inputs always give the same key."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
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
    secrets: Mapping[str, Any] | None = None,
) -> str:
    """`steps` are the task's steps with templates already rendered; `inputs` maps each
    file picked by the task's `inputs:` (among the files it is given) to its content
    hash; `dependencies` maps each dependency to its own cache key, or to a digest of
    its outputs and artifacts when it has none (`resolution.result_digest`); `secrets`
    maps each secret the task declares to what identifies its value without being it
    (`resolution.secret_part`), and is left out of the key when the task declares none."""
    return key_from_parts(
        steps=canonical(steps),
        env=canonical(dict(env)),
        params=canonical(dict(params)),
        inputs=canonical(dict(inputs)),
        deps=canonical(dict(dependencies)),
        secrets=canonical(dict(secrets)) if secrets is not None else None,
    )


_VERSION_PART = canonical(KEY_VERSION)


def key_from_parts(
    *,
    steps: bytes,
    env: bytes,
    params: bytes,
    inputs: bytes,
    deps: bytes,
    secrets: bytes | None = None,
) -> str:
    """`task_cache_key` from parts already in canonical form, which callers can keep:
    a task's steps and env are the same in every build of a version, the params the
    same for every task of a build. Canonical JSON of an object with sorted keys is its
    members' canonical forms joined in key order, so the key is exactly the digest of
    the whole object. Without `secrets` the object has no such member, so the keys of
    tasks that declare no secret are what they were before secrets existed."""
    h = hashlib.sha256()
    for part in (
        b'{"deps":', deps, b',"env":', env, b',"inputs":', inputs, b',"params":', params,
        *((b',"secrets":', secrets) if secrets is not None else ()),
        b',"steps":', steps, b',"v":', _VERSION_PART, b"}",
    ):  # fmt: skip
        h.update(part)
    return h.hexdigest()
