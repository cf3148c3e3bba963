"""What a secret's name and value must be. Pure (no Django): the pipeline definition
checks the names a task declares with the same pattern."""

from __future__ import annotations

import re

NAME_PATTERN = r"^[A-Z_][A-Z0-9_]{0,99}$"
# fullmatch, not the pattern's `$`, which would let a trailing newline through.
NAME_RE = re.compile(r"[A-Z_][A-Z0-9_]{0,99}")
NAME_RULE = "upper-case letters, digits and _, not starting with a digit, at most 100"
# Masking replaces every occurrence of a value in the logs: a short value would turn
# ordinary output into asterisks and still give the value away by where they appear.
MIN_VALUE_CHARS = 6
# Room for an SSH private key or a service account's JSON, not for files.
MAX_VALUE_BYTES = 64 * 1024


def name_problem(name: object) -> str | None:
    if isinstance(name, str) and NAME_RE.fullmatch(name):
        return None
    return f"{name!r} is not a valid secret name ({NAME_RULE})"


def value_problem(value: str) -> str | None:
    if len(value.strip()) < MIN_VALUE_CHARS:
        return (
            f"a secret value needs at least {MIN_VALUE_CHARS} characters besides surrounding "
            "whitespace: shorter values cannot be masked in logs safely"
        )
    if len(value.encode("utf-8", "surrogatepass")) > MAX_VALUE_BYTES:
        return f"a secret value is at most {MAX_VALUE_BYTES} bytes"
    return None


def masking_terms(value: str) -> list[str]:
    """What logs must never show of a value: the value without its surrounding
    whitespace (command substitution and `echo` add or drop newlines), and each line of
    a value of several lines (a step that prints part of a key), when long enough to
    mask without hiding ordinary output."""
    terms = [value.strip()]
    lines = [line.strip() for line in value.splitlines()]
    if len(lines) > 1:
        terms += [line for line in lines if len(line) >= MIN_VALUE_CHARS]
    return [t for t in dict.fromkeys(terms) if t]
