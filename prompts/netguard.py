"""Which endpoint URLs a provider may call.

Model servers often run on the same host or network (Ollama, vLLM), so loopback and
private addresses are allowed; link-local and cloud metadata addresses are refused,
because a request there can hand out the server's cloud credentials. Host names are
resolved and every address checked, at save time and again before each call (so a
name that later resolves elsewhere is caught).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from urllib.parse import urlsplit

from buildsite.errors import InvalidInput, Problem

BLOCKED_NETWORKS = [
    ipaddress.ip_network(n)
    for n in (
        "169.254.0.0/16",  # IPv4 link-local, incl. 169.254.169.254 (AWS/GCP/Azure metadata)
        "fe80::/10",  # IPv6 link-local
        "100.100.100.200/32",  # Alibaba Cloud metadata
        "fd00:ec2::254/128",  # AWS metadata over IPv6
        "0.0.0.0/8",
        "::/128",
    )
]
BLOCKED_HOSTS = {
    "metadata",
    "metadata.google.internal",
    "metadata.goog",
    "instance-data",
    "instance-data.ec2.internal",
    "metadata.azure.com",
}

Resolver = Callable[[str, int], list[str]]


def resolve(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({info[4][0] for info in infos})


def _blocked(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in net for net in BLOCKED_NETWORKS if net.version == ip.version)


def check_url(url: str, *, resolver: Resolver = resolve, where: str = "base_url") -> str:
    """The URL without a trailing slash, or InvalidInput saying why it is refused."""

    def refuse(message: str) -> InvalidInput:
        return InvalidInput([Problem(message, where=where)])

    parts = urlsplit((url or "").strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise refuse("base_url must be an http(s) URL such as https://api.openai.com/v1")
    if parts.username or parts.password:
        raise refuse("put credentials in the API key, not in the URL")
    if parts.query or parts.fragment:
        raise refuse("base_url must not have a query or fragment")
    host = parts.hostname.rstrip(".").lower()
    if host in BLOCKED_HOSTS:
        raise refuse(f"'{host}' is a cloud metadata address and is refused")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise refuse("base_url has an invalid port") from None
    try:
        addresses = [host] if _is_ip(host) else resolver(host, port)
    except OSError as exc:
        raise refuse(f"cannot resolve host '{host}': {exc.strerror or exc}") from None
    for address in addresses:
        if _blocked(address):
            raise refuse(f"'{host}' resolves to {address}, a link-local/metadata address")
    return url.strip().rstrip("/")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
        return True
    except ValueError:
        return False
