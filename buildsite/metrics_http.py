"""GET /metrics: who may scrape, the response, and the HTTP request counter.

Access (docs/metrics.md): a client address in BUILDSITE_METRICS_ALLOW (loopback by
default), or `Authorization: Bearer <token>` of a token with the `metrics` scope
(`manage.py create_token USER --scope metrics`). Anything else gets 401 without
credentials, 403 with wrong ones.

The request counter is the one figure that is not in the database. With several web
processes on a host, set PROMETHEUS_MULTIPROC_DIR (an empty directory, emptied before the
web processes start): prometheus_client then keeps each process's counts in files there
and a scrape of any process adds them all up. Otherwise the counter is this process's.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable
from functools import cache
from typing import Any

from asgiref.sync import iscoroutinefunction
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils.decorators import sync_and_async_middleware
from django.views.decorators.http import require_GET
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from .selectors import user_for_token

METRICS_SCOPE = "metrics"
# The classic text format, which every Prometheus reads (prometheus_client 0.22+ labels
# its output 1.0.0; the names here need none of that version's escaping).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Any other method is counted as "other": a client must not mint label values at will.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Headers only a reverse proxy adds: a request carrying one did not come from its peer.
PROXY_HEADERS = (
    "HTTP_X_FORWARDED_FOR",
    "HTTP_FORWARDED",
    "HTTP_X_REAL_IP",
    "HTTP_X_FORWARDED_PROTO",
    "HTTP_X_FORWARDED_HOST",
)

# Registered in no registry of its own: `registry()` adds it (or, in multiprocess mode,
# the files every process writes) next to the database collector.
HTTP_REQUESTS = Counter(
    "buildsite_http_requests",
    "HTTP responses of the web processes, by method and status.",
    ["method", "status"],
    registry=None,
)


@cache
def registry() -> CollectorRegistry:
    from .metrics import DatabaseCollector  # imports every app's models: after setup

    reg = CollectorRegistry(auto_describe=False)
    reg.register(DatabaseCollector())
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(reg)  # type: ignore[no-untyped-call]  # untyped __init__
    else:
        reg.register(HTTP_REQUESTS)
    return reg


def count(request: HttpRequest, response: HttpResponse) -> None:
    method = request.method if request.method in METHODS else "other"
    HTTP_REQUESTS.labels(method=method, status=str(response.status_code)).inc()


Handler = Callable[[HttpRequest], Any]


@sync_and_async_middleware  # type: ignore[untyped-decorator]  # Django is untyped
def count_requests(get_response: Handler) -> Handler:
    """Counts every response by method and status (settings.MIDDLEWARE, outermost)."""
    if iscoroutinefunction(get_response):

        async def middleware_async(request: HttpRequest) -> HttpResponse:
            response: HttpResponse = await get_response(request)
            count(request, response)
            return response

        return middleware_async

    def middleware(request: HttpRequest) -> HttpResponse:
        response: HttpResponse = get_response(request)
        count(request, response)
        return response

    return middleware


def client_address(request: HttpRequest) -> str:
    """REMOTE_ADDR, or behind a proxy that says so (BUILDSITE_METRICS_TRUST_FORWARDED)
    the last X-Forwarded-For entry: the one that proxy appended, not one a client sent.
    Without the setting, a request with a proxy's headers has no address ("")."""
    if settings.BUILDSITE_METRICS_TRUST_FORWARDED:
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
        if last := forwarded.rsplit(",", 1)[-1].strip():
            return str(last)
    elif any(request.META.get(header) for header in PROXY_HEADERS):
        # A proxy passed the request on: the peer is that proxy (loopback when it runs on
        # this host, as a TLS proxy usually does), not the client, and without the setting
        # nothing says who the client is. No address, so a token is needed.
        return ""
    remote: str = request.META.get("REMOTE_ADDR") or ""
    return remote


def address_allowed(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:  # no address (a Unix socket) or garbage: not on the list
        return False
    return any(ip in ipaddress.ip_network(net) for net in settings.BUILDSITE_METRICS_ALLOW)


def refusal(request: HttpRequest) -> HttpResponse | None:
    """None when the request may read the metrics, else the 401 or 403 to send."""
    if address_allowed(client_address(request)):
        return None
    header = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, token = header.partition(" ")
    if not header:
        response = HttpResponse(
            "Authentication required: send a token with the metrics scope "
            "(Authorization: Bearer ...), or scrape from an address in BUILDSITE_METRICS_ALLOW.\n",
            status=401,
            content_type="text/plain",
        )
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    token = token.strip()
    if scheme.lower() == "bearer" and token and user_for_token(token, scope=METRICS_SCOPE):
        return None
    return HttpResponse(
        "Forbidden: this token has no metrics scope (manage.py create_token USER "
        "--scope metrics), and this address is not in BUILDSITE_METRICS_ALLOW.\n",
        status=403,
        content_type="text/plain",
    )


@require_GET  # type: ignore[untyped-decorator]  # Django is untyped
def metrics_view(request: HttpRequest) -> HttpResponse:
    if (refused := refusal(request)) is not None:
        return refused
    return HttpResponse(generate_latest(registry()), content_type=CONTENT_TYPE)
