"""What every provider takes and returns; providers know nothing about the database."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class ChatRequest:
    messages: list[dict[str, str]]
    model: str
    temperature: float = 0.0
    max_tokens: int | None = None
    response_format: str = "text"
    response_schema: dict[str, Any] | None = None
    timeout: float = 60.0  # the whole call, retries and waits included


@dataclass(frozen=True)
class ChatResult:
    text: str
    tokens_in: int
    tokens_out: int
    raw: str  # the response body as received (for the run record)
    model: str = ""
    retries: int = 0  # HTTP-level retries before this answer (429/5xx/timeouts)


@dataclass
class ProviderError(Exception):
    """A call that ended without an answer. `kind` is one of: timeout, connect,
    rate_limited, server, http, malformed, config."""

    message: str
    kind: str
    raw: str = ""
    retries: int = 0
    details: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.message


class Provider(Protocol):
    label: str

    def complete(self, request: ChatRequest) -> ChatResult: ...


def estimate_tokens(text: str) -> int:
    """A rough count (about four characters a token) for servers that report no usage."""
    return max(1, (len(text) + 3) // 4) if text else 0
