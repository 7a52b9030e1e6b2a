"""Who is calling: the client address behind trusted proxies, checked against an allowlist."""

import ipaddress
from functools import lru_cache

from django.http import HttpRequest

# Paystack's published webhook source addresses (test and live).
PAYSTACK_ADDRESSES = ("52.31.139.75", "52.49.173.169", "52.214.14.220")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def client_address(request: HttpRequest, *, proxy_hops: int) -> str:
    """The address the outermost trusted proxy saw, or the socket peer with no proxies.

    Each of our `proxy_hops` proxies appends the address it received from, so the client is
    the entry `proxy_hops` places from the right of X-Forwarded-For plus the peer; anything
    further left was written by the client itself and cannot be trusted.
    """
    peer = request.META.get("REMOTE_ADDR", "")
    if proxy_hops <= 0:
        return peer
    forwarded = [a.strip() for a in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    chain = [a for a in forwarded if a] + [peer]
    return chain[max(len(chain) - 1 - proxy_hops, 0)]


@lru_cache(maxsize=8)
def parse_allowlist(entries: tuple[str, ...]) -> tuple[Network, ...]:
    networks: list[Network] = []
    for entry in entries:
        names = PAYSTACK_ADDRESSES if entry.lower() == "paystack" else (entry,)
        networks.extend(ipaddress.ip_network(name, strict=False) for name in names)
    return tuple(networks)


def is_allowed(address: str, allowlist: tuple[str, ...]) -> bool:
    """True when there is no allowlist, or the address is in one of its networks."""
    if not allowlist:
        return True
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in parse_allowlist(allowlist))
