"""Which URLs the server may call: provider endpoints now, webhooks later.

Every address a URL names or resolves to is checked, and so is any IPv4 address carried
inside an IPv6 one (IPv4-mapped and -translated, IPv4-compatible, NAT64 64:ff9b::/96,
6to4, Teredo), because the packets may end up there:

- link-local, cloud metadata, unspecified, multicast and reserved addresses are always
  refused: a request to 169.254.169.254 can hand out the server's cloud credentials;
- loopback and private addresses (RFC 1918, CGNAT 100.64/10, fc00::/7, documentation
  and benchmark nets) are refused unless the operator sets BUILDSITE_ALLOW_PRIVATE_URLS=1
  (for model servers on the same host or network, such as Ollama or vLLM).

Checks run when a URL is saved and again before each call, and the call then connects to
the address that was checked (`Target.pinned_url`), so a name that answers differently
the second time (DNS rebinding) cannot send it elsewhere. Pure: callers pass the
operator's setting in.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from buildsite.errors import InvalidInput, Problem

IP = ipaddress.IPv4Address | ipaddress.IPv6Address


def _nets(*cidrs: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(c) for c in cidrs]


ALWAYS_REFUSED = _nets(
    "0.0.0.0/8",  # "this host": a connection there reaches loopback
    "::/128",
    "169.254.0.0/16",  # IPv4 link-local, incl. 169.254.169.254 (AWS/GCP/Azure metadata)
    "fe80::/10",  # IPv6 link-local
    "100.100.100.200/32",  # Alibaba Cloud metadata
    "fd00:ec2::254/128",  # AWS metadata over IPv6
    "224.0.0.0/4",  # multicast
    "ff00::/8",
    "240.0.0.0/4",  # reserved, incl. 255.255.255.255
    "64:ff9b:1::/48",  # local-use NAT64: where the IPv4 sits is each network's choice
)
PRIVATE = _nets(
    "127.0.0.0/8",  # loopback
    "::1/128",
    "10.0.0.0/8",  # RFC 1918
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",  # carrier-grade NAT (RFC 6598)
    "fc00::/7",  # unique local
    "fec0::/10",  # site-local (deprecated)
    "192.0.0.0/24",  # IETF protocol assignments
    "198.18.0.0/15",  # benchmarking
    "100::/64",  # discard-only
    "192.0.2.0/24",  # documentation
    "198.51.100.0/24",
    "203.0.113.0/24",
    "2001:db8::/32",
)
# IPv6 prefixes whose last 32 bits are an IPv4 address: mapped, translated, NAT64.
IPV4_IN_LAST_32_BITS = _nets("::ffff:0:0/96", "::ffff:0:0:0/96", "64:ff9b::/96")
BLOCKED_HOSTS = {
    "metadata",
    "metadata.google.internal",
    "metadata.goog",
    "instance-data",
    "instance-data.ec2.internal",
    "metadata.azure.com",
}
REFUSED = "a link-local or cloud metadata address"
PRIVATE_REFUSED = (
    "a loopback or private address (the operator allows these with BUILDSITE_ALLOW_PRIVATE_URLS=1)"
)

Resolver = Callable[[str, int], list[str]]


def resolve(host: str, port: int) -> list[str]:
    """Every address of `host`, in the order the system prefers them."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def embedded_ipv4(ip: IP) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries (and may be routed to)."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return []
    found = []
    n = int(ip)
    # IPv4-compatible ::a.b.c.d (but not :: and ::1, which are IPv6's own)
    if any(ip in net for net in IPV4_IN_LAST_32_BITS) or (n >> 32 == 0 and n > 1):
        found.append(ipaddress.IPv4Address(n & 0xFFFFFFFF))
    if ip.sixtofour is not None:
        found.append(ip.sixtofour)
    if ip.teredo is not None:
        found.extend(ip.teredo)  # (server, client)
    return found


def refusal(address: str, *, allow_private: bool = False) -> str | None:
    """Why a connection to `address` is refused (REFUSED or PRIVATE_REFUSED), or None."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    candidates = [ip, *embedded_ipv4(ip)]
    if any(_within(c, ALWAYS_REFUSED) for c in candidates):
        return REFUSED
    if not allow_private and any(_within(c, PRIVATE) for c in candidates):
        return PRIVATE_REFUSED
    return None


def _within(ip: IP, networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    return any(ip in net for net in networks if net.version == ip.version)


@dataclass(frozen=True)
class Target:
    """A checked URL and the addresses it may be reached at."""

    url: str  # as given, without a trailing slash
    hostname: str  # for TLS (SNI and certificate check)
    host_header: str  # host[:port] as given
    addresses: tuple[str, ...]  # every address the host resolved to, all checked

    def pinned_url(self, address: str) -> str:
        """The URL with its host replaced by `address` (one of `addresses`), so the
        connection goes where the check looked, with no second DNS lookup."""
        parts = urlsplit(self.url)
        host = f"[{address}]" if ":" in address else address
        netloc = f"{host}:{parts.port}" if parts.port else host
        return urlunsplit(parts._replace(netloc=netloc))


def check(
    url: str,
    *,
    allow_private: bool = False,
    resolver: Resolver = resolve,
    where: str = "base_url",
) -> Target:
    """The URL checked and resolved, or InvalidInput saying why it is refused."""

    def refuse(message: str) -> InvalidInput:
        return InvalidInput([Problem(message, where=where)])

    url = (url or "").strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise refuse(f"{where} must be an http(s) URL such as https://api.openai.com/v1")
    if parts.username or parts.password:
        raise refuse("put credentials in the API key, not in the URL")
    if parts.query or parts.fragment:
        raise refuse(f"{where} must not have a query or fragment")
    host = parts.hostname.rstrip(".").lower()
    if host in BLOCKED_HOSTS:
        raise refuse(f"'{host}' is a cloud metadata address and is refused")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise refuse(f"{where} has an invalid port") from None
    literal = _is_ip(host)
    try:
        addresses = [host] if literal else resolver(host, port)
    except OSError as exc:
        raise refuse(f"cannot resolve host '{host}': {exc.strerror or exc}") from None
    if not addresses:
        raise refuse(f"cannot resolve host '{host}'")
    for address in addresses:
        if reason := refusal(address, allow_private=allow_private):
            # A name's addresses are not shown: the check must not map internal DNS.
            raise refuse(f"'{host}' {'is' if literal else 'resolves to'} {reason}")
    return Target(
        url=url.rstrip("/"),
        hostname=host,
        host_header=parts.netloc,
        addresses=tuple(addresses),
    )


def check_url(
    url: str,
    *,
    allow_private: bool = False,
    resolver: Resolver = resolve,
    where: str = "base_url",
) -> str:
    """The URL without a trailing slash, or InvalidInput saying why it is refused."""
    return check(url, allow_private=allow_private, resolver=resolver, where=where).url


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
        return True
    except ValueError:
        return False
