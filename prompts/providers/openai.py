"""OpenAI-compatible Chat Completions over httpx (OpenAI, vLLM, Ollama, llama.cpp server).

Every failure ends in a ProviderError with a clear message, never a hang:
- connect/read timeouts and 5xx answers are retried with exponential backoff, up to
  `max_retries` and within the call's overall `timeout`;
- 429 waits for Retry-After (seconds or an HTTP date) when it fits the cap and the
  deadline, otherwise backs off like a 5xx;
- other 4xx answers and malformed bodies are not retried.
`sleep` and `clock` are injectable so tests do not wait. The API key is sent only in
the Authorization header and is scrubbed from every error message.

The endpoint is checked by prompts.netguard before each call and the request goes to
an address that check resolved (the Host header and TLS name stay the configured
host's), so DNS cannot point the call elsewhere in between. Redirects are not followed.
"""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx

from buildsite.errors import InvalidInput

from .. import netguard
from .base import ChatRequest, ChatResult, ProviderError, estimate_tokens

RETRYABLE_STATUS = {429, 500, 502, 503, 504}
ERROR_BODY_CHARS = 300


class OpenAICompatibleProvider:
    def __init__(
        self,
        *,
        base_url: str,
        api_key: str = "",
        max_retries: int = 3,
        backoff: float = 0.5,
        backoff_max: float = 8.0,
        max_retry_after: float = 30.0,
        connect_timeout: float = 5.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        allow_private: bool = False,
        resolver: netguard.Resolver = netguard.resolve,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.max_retries = max_retries
        self.backoff = backoff
        self.backoff_max = backoff_max
        self.max_retry_after = max_retry_after
        self.connect_timeout = connect_timeout
        self.sleep = sleep
        self.clock = clock
        self.allow_private = allow_private
        self.resolver = resolver
        self.transport = transport
        self.label = f"openai-compatible {self.base_url}"

    def complete(self, request: ChatRequest) -> ChatResult:
        # Checked again before each call: the name may resolve elsewhere than at save time.
        try:
            target = netguard.check(
                self.base_url, allow_private=self.allow_private, resolver=self.resolver
            )
        except InvalidInput as exc:
            raise ProviderError(f"endpoint refused: {exc}", "config") from None
        deadline = self.clock() + request.timeout
        payload = self._payload(request)
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "Host": target.host_header,
        }
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        retries = 0
        with httpx.Client(transport=self.transport, follow_redirects=False) as client:
            while True:
                remaining = deadline - self.clock()
                if remaining <= 0:
                    raise ProviderError(
                        f"gave up: the call's {request.timeout:g}s time limit is used up",
                        "timeout",
                        retries=retries,
                    )
                # each retry tries the next checked address (IPv6 and IPv4, several hosts)
                address = target.addresses[retries % len(target.addresses)]
                failure, wait = self._attempt(
                    client, target, address, payload, headers, remaining, retries
                )
                if isinstance(failure, ChatResult):
                    return ChatResult(**{**failure.__dict__, "retries": retries})
                if wait is None or retries >= self.max_retries:
                    if wait is not None:
                        failure.message += f" (gave up after {retries + 1} attempts)"
                    failure.retries = retries
                    raise failure
                if self.clock() + wait >= deadline:
                    failure.message += (
                        f" (gave up: waiting {wait:g}s more would pass the "
                        f"{request.timeout:g}s time limit)"
                    )
                    failure.retries = retries
                    raise failure
                retries += 1
                self.sleep(wait)

    def _payload(self, request: ChatRequest) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "model": request.model,
            "messages": request.messages,
            "temperature": request.temperature,
            "stream": False,
        }
        if request.max_tokens is not None:
            payload["max_tokens"] = request.max_tokens
        return payload

    def _backoff(self, retries_so_far: int) -> float:
        return min(self.backoff * 2**retries_so_far, self.backoff_max)

    def _attempt(
        self,
        client: httpx.Client,
        target: netguard.Target,
        address: str,
        payload,
        headers,
        remaining: float,
        retries: int,
    ):
        """(ChatResult, None) on success, else (ProviderError, seconds to wait or None
        when retrying is pointless)."""
        attempt_backoff = self._backoff(retries)
        timeout = httpx.Timeout(
            remaining, connect=min(self.connect_timeout, remaining), pool=min(5.0, remaining)
        )
        try:
            response = client.post(
                f"{target.pinned_url(address)}/chat/completions",
                json=payload,
                headers=headers,
                timeout=timeout,
                extensions={"sni_hostname": target.hostname},
            )
        except httpx.ConnectTimeout:
            return ProviderError(
                f"connect timeout: no connection to {self.base_url} within "
                f"{min(self.connect_timeout, remaining):g}s",
                "timeout",
            ), attempt_backoff
        except httpx.TimeoutException:
            return ProviderError(
                f"read timeout: {self.base_url} sent no complete answer within {remaining:g}s",
                "timeout",
            ), attempt_backoff
        except httpx.ConnectError as exc:
            return ProviderError(
                f"cannot connect to {self.base_url}: {self._scrub(str(exc))}", "connect"
            ), attempt_backoff
        except httpx.HTTPError as exc:
            return ProviderError(
                f"HTTP error talking to {self.base_url}: {self._scrub(str(exc))}", "connect"
            ), None
        body = self._scrub(response.text)
        status = response.status_code
        if status == 429:
            wait = self._retry_after(response.headers.get("Retry-After"))
            error = ProviderError(
                f"rate limited (HTTP 429) by {self.base_url}", "rate_limited", raw=body[:2000]
            )
            if wait is not None and wait > self.max_retry_after:
                error.message += (
                    f": the server asked to wait {wait:g}s, over the {self.max_retry_after:g}s cap"
                )
                return error, None
            return error, attempt_backoff if wait is None else wait
        if status >= 500:
            return ProviderError(
                f"server error HTTP {status} from {self.base_url}: {_excerpt(body)}",
                "server",
                raw=body[:2000],
            ), attempt_backoff if status in RETRYABLE_STATUS else None
        if status >= 300:
            return ProviderError(
                f"HTTP {status} from {self.base_url}: {_excerpt(body)}", "http", raw=body[:2000]
            ), None
        return self._parse(body, payload), None

    def _parse(self, body: str, payload: dict[str, Any]) -> ChatResult | ProviderError:
        try:
            data = json.loads(body)
            message = data["choices"][0]["message"]
            text = message.get("content")
            if not isinstance(text, str):
                raise TypeError("content is not a string")
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            return ProviderError(
                f"malformed response body (not a Chat Completions answer: {exc}): {_excerpt(body)}",
                "malformed",
                raw=body[:2000],
            )
        usage = data.get("usage") or {}
        tokens_in = usage.get("prompt_tokens")
        tokens_out = usage.get("completion_tokens")
        if not isinstance(tokens_in, int):
            tokens_in = sum(estimate_tokens(m["content"]) for m in payload["messages"])
        if not isinstance(tokens_out, int):
            tokens_out = estimate_tokens(text)
        return ChatResult(
            text=text,
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            raw=body,
            model=str(data.get("model") or ""),
        )

    def _retry_after(self, value: str | None) -> float | None:
        if not value:
            return None
        value = value.strip()
        try:
            return max(0.0, float(value))
        except ValueError:
            pass
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return max(0.0, (when - datetime.now(UTC)).total_seconds())

    def _scrub(self, text: str) -> str:
        if self.api_key and len(self.api_key) >= 4:
            text = text.replace(self.api_key, "[redacted]")
        return text


def _excerpt(body: str) -> str:
    body = " ".join(body.split())
    if not body:
        return "(empty body)"
    return body if len(body) <= ERROR_BODY_CHARS else body[:ERROR_BODY_CHARS] + "…"
