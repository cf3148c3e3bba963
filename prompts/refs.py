"""Prompt references as steps and API calls write them: `name`, `name@label`, `name#3`.

Pure: no database. A bare name means the `latest` label.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from buildsite.errors import InvalidInput, Problem

NAME_PATTERN = r"[a-z0-9][a-z0-9_.-]{0,79}"
LABEL_PATTERN = r"[a-z0-9][a-z0-9_.-]{0,49}"
NAME_RE = re.compile(rf"^{NAME_PATTERN}$")
LABEL_RE = re.compile(rf"^{LABEL_PATTERN}$")
LATEST = "latest"
_REF_RE = re.compile(
    rf"^(?P<name>{NAME_PATTERN})(?:@(?P<label>{LABEL_PATTERN})|#(?P<version>[1-9][0-9]{{0,8}}))?$"
)


@dataclass(frozen=True)
class PromptRef:
    name: str
    label: str | None = None
    version: int | None = None

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.name}#{self.version}"
        return f"{self.name}@{self.label or LATEST}"


def parse_ref(text: str, *, where: str = "prompt") -> PromptRef:
    """`name@label` or `name#version`; a bare name means `name@latest`."""
    match = _REF_RE.match((text or "").strip())
    if match is None:
        raise InvalidInput(
            [
                Problem(
                    f"'{text}' is not a prompt reference: write name, name@label or name#version "
                    "(lower-case letters, digits, '.', '_' and '-')",
                    where=where,
                )
            ]
        )
    version = match.group("version")
    if version is not None:
        return PromptRef(match.group("name"), None, int(version))
    return PromptRef(match.group("name"), match.group("label") or LATEST, None)


def selector_ref(name: str, *, label: str | None, version: int | None) -> PromptRef:
    """The reference an API body means with its optional `label` / `version` fields."""
    if label and version:
        raise InvalidInput([Problem("give either 'label' or 'version', not both", where="label")])
    if version is not None:
        if version < 1:
            raise InvalidInput([Problem("versions start at 1", where="version")])
        return PromptRef(name, None, version)
    label = label or LATEST
    if not LABEL_RE.match(label):
        raise InvalidInput([Problem(f"'{label}' is not a valid label name", where="label")])
    return PromptRef(name, label, None)
