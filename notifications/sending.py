"""Talking to receivers: an HTTP POST (webhook, Slack/Mattermost) or an email.

Every call ends in an `Attempt`, never an exception, within a bounded time: the URL is
checked by prompts.netguard again before each call (DNS may answer differently than at
save time) and the connection goes to an address that check resolved; redirects are not
followed; the answer is read up to RESPONSE_BYTES and its excerpt kept to EXCERPT_CHARS.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection

from buildsite.errors import InvalidInput
from prompts import netguard

RESPONSE_BYTES = 64 * 1024
EXCERPT_CHARS = 500
USER_AGENT = "Buildsite-Notifications/1"


@dataclass
class Attempt:
    ok: bool
    retry: bool  # worth trying again later: a 5xx, a timeout, no connection
    code: int | None = None
    excerpt: str = ""
    error: str = ""


def check_url(url: str, *, allow_private: bool, where: str = "url") -> netguard.Target:
    """netguard's rule for the URL without its query string: a receiver's URL may carry
    a token in its query (Slack's do not; some do), which netguard refuses for provider
    base URLs. Raises InvalidInput naming `where`."""
    parts = urlsplit((url or "").strip())
    if parts.fragment:
        raise InvalidInput(f"{where}: must not have a fragment")
    return netguard.check(
        urlunsplit(parts._replace(query="")),
        allow_private=allow_private,
        resolver=netguard.resolve,  # looked up now, so tests can stand in for DNS
        where=where,
    )


def pinned(url: str, address: str) -> str:
    """`url` exactly as given (path, trailing slash and query kept) but sent to `address`."""
    parts = urlsplit(url.strip())
    host = f"[{address}]" if ":" in address else address
    return urlunsplit(parts._replace(netloc=f"{host}:{parts.port}" if parts.port else host))


def safe_url(url: str) -> str:
    """The URL without its query string (which may hold a token), for logs and errors."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(query="", fragment=""))


def post(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    timeout: float,
    allow_private: bool,
    transport: httpx.BaseTransport | None = None,
) -> Attempt:
    """POST `body` to `url`. 2xx is delivered; 4xx is final (the receiver refuses it);
    5xx, 429, timeouts and connection errors are worth retrying."""
    try:
        target = check_url(url, allow_private=allow_private)
    except InvalidInput as exc:
        return Attempt(ok=False, retry=False, error=f"URL refused: {exc}")
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "Host": target.host_header,
        **headers,
    }
    # httpx's timeouts bound each read, not the whole call: a receiver that sends one
    # byte every few seconds would hold the worker. The call therefore runs on a
    # daemon thread, abandoned at the deadline, and its sockets are shut down then: a
    # per-read timeout never ends a call whose receiver keeps dripping bytes, so the
    # thread and its connection would otherwise stay for as long as the receiver likes.
    result: list[Attempt] = []
    sockets: list[socket.socket] = []

    def call() -> None:
        result.append(_post_once(target, url, body, headers, timeout, transport, sockets))

    thread = threading.Thread(target=call, name="notify-post", daemon=True)
    thread.start()
    thread.join(timeout + 1.0)
    if not result:
        for sock in list(sockets):
            with contextlib.suppress(OSError):  # already closed
                sock.shutdown(socket.SHUT_RDWR)  # wakes the thread's blocked read
        thread.join(1.0)
        return Attempt(ok=False, retry=True, error=f"timeout: no complete answer in {timeout:g}s")
    return result[0]


def _post_once(
    target: netguard.Target,
    url: str,
    body: bytes,
    headers: dict[str, str],
    timeout: float,
    transport: httpx.BaseTransport | None,
    sockets: list[socket.socket] | None = None,
) -> Attempt:
    deadline = time.monotonic() + timeout

    def trace(event: str, info: dict[str, Any]) -> None:
        # Each connection's socket (the TLS one once TLS starts), for `post` to shut down.
        if sockets is not None and event.endswith(("connect_tcp.complete", "start_tls.complete")):
            stream = info.get("return_value")
            sock = stream.get_extra_info("socket") if stream is not None else None
            if isinstance(sock, socket.socket):
                sockets.append(sock)

    last: Attempt | None = None
    with httpx.Client(transport=transport, follow_redirects=False) as client:
        # Each checked address in turn (IPv6 and IPv4), within the one deadline.
        for address in target.addresses:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                with client.stream(
                    "POST",
                    pinned(url, address),
                    content=body,
                    headers=headers,
                    timeout=httpx.Timeout(remaining, connect=min(5.0, remaining)),
                    extensions={"sni_hostname": target.hostname, "trace": trace},
                ) as response:
                    raw = _read_bounded(response, deadline)
                    return _judge(response.status_code, raw)
            except httpx.TimeoutException:
                last = Attempt(ok=False, retry=True, error=f"timeout after {timeout:g}s")
            except httpx.HTTPError as exc:
                # The message names the pinned address, never the query string.
                last = Attempt(ok=False, retry=True, error=f"{type(exc).__name__}: cannot connect")
    return last or Attempt(ok=False, retry=True, error=f"timeout after {timeout:g}s")


def _read_bounded(response: httpx.Response, deadline: float) -> bytes:
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_raw(4096):
        chunks.append(chunk)
        size += len(chunk)
        if size >= RESPONSE_BYTES or time.monotonic() > deadline:
            break
    return b"".join(chunks)[:RESPONSE_BYTES]


def _judge(status: int, raw: bytes) -> Attempt:
    excerpt = raw.decode("utf-8", "replace")[:EXCERPT_CHARS]
    if 200 <= status < 300:
        return Attempt(ok=True, retry=False, code=status, excerpt=excerpt)
    if status >= 500 or status == 429:
        return Attempt(ok=False, retry=True, code=status, excerpt=excerpt, error=f"HTTP {status}")
    # 3xx (redirects are not followed: the URL should name the receiver) and 4xx.
    return Attempt(ok=False, retry=False, code=status, excerpt=excerpt, error=f"HTTP {status}")


def send_email(*, to: list[str], subject: str, text: str, html: str, timeout: float) -> Attempt:
    """Through Django's email framework (EMAIL_BACKEND; the console by default). A
    refused or unreachable mail server is worth retrying; the error is only its type,
    since SMTP answers may quote addresses or credentials."""
    try:
        connection: Any = get_connection(timeout=timeout)
        message = EmailMultiAlternatives(
            subject=subject[:200],
            body=text,
            from_email=settings.DEFAULT_FROM_EMAIL,
            to=to,
            connection=connection,
        )
        message.attach_alternative(html, "text/html")
        sent = message.send()
    except Exception as exc:  # any backend's failure: report it on the delivery, retry
        return Attempt(ok=False, retry=True, error=f"email not sent: {type(exc).__name__}")
    if not sent:
        return Attempt(ok=False, retry=True, error="email not sent: the backend sent nothing")
    return Attempt(ok=True, retry=False, excerpt=f"sent to {len(to)} address(es)")
