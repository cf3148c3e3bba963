"""Domain errors shared by every app; the API maps each to one HTTP status.

Pure Python on purpose: the pure cores raise these without importing Django.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class DomainError(Exception):
    status = 400

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra

    def payload(self) -> dict[str, Any]:
        return {"detail": self.message, **self.extra}


class NotFound(DomainError):
    status = 404


class Forbidden(DomainError):
    status = 403


class Conflict(DomainError):
    status = 409


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input: what, and where (task / line / field)."""

    message: str
    line: int | None = None
    where: str | None = None
    level: str = "error"

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"msg": self.message, "level": self.level}
        if self.line is not None:
            data["line"] = self.line
        if self.where is not None:
            data["loc"] = self.where
        return data

    def __str__(self) -> str:
        parts = []
        if self.where:
            parts.append(self.where)
        if self.line is not None:
            parts.append(f"line {self.line}")
        prefix = " ".join(parts)
        return f"{prefix}: {self.message}" if prefix else self.message


@dataclass
class InvalidInput(DomainError):
    """Input refused at the edge; carries every problem found, not just the first."""

    problems: list[Problem] = field(default_factory=list)
    status = 422

    def __init__(self, problems: list[Problem] | str) -> None:
        if isinstance(problems, str):
            problems = [Problem(problems)]
        self.problems = list(problems)
        super().__init__("; ".join(str(p) for p in self.problems))

    def payload(self) -> dict[str, Any]:
        return {"detail": [p.as_dict() for p in self.problems]}
