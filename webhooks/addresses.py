"""Who is calling: the client address behind trusted proxies, checked against an allowlist."""

import ipaddress
from functools import lru_cache

from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest

# Paystack's published webhook source addresses (test and live).
PAYSTACK_ADDRESSES = ("52.31.139.75", "52.49.173.169", "52.214.14.220")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def client_address(request: HttpRequest, *, proxy_hops: int) -> str:
    """The address the outermost trusted proxy saw, or the socket peer with no proxies.

    Each of our `proxy_hops` proxies appends the address it received from, so the client is
    the entry `proxy_hops` places from the right of X-Forwarded-For plus the peer; anything
    further left was written by the client itself and cannot be trusted.
    """
    peer: str = request.META.get("REMOTE_ADDR", "")
    if proxy_hops <= 0:
        return peer
    forwarded = [a.strip() for a in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    chain: list[str] = [a for a in forwarded if a] + [peer]
    return chain[max(len(chain) - 1 - proxy_hops, 0)]


def parse_address(text: str) -> Address | None:
    """The IP in a peer address or X-Forwarded-For entry, or None when there is none.

    Proxies and sockets do not agree on a spelling: some proxies append `ip:port` or
    `[v6]:port`, and a dual-stack socket reports IPv4 clients as `::ffff:a.b.c.d`. Left as
    they are, the first failed PostgreSQL's inet column (a 503 for every genuine delivery)
    and the second never matched an IPv4 allowlist (a 403 for Paystack's own addresses).
    """
    text = text.strip()
    if text.startswith("["):  # [v6] or [v6]:port
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:  # v4:port; a bare v6 address has at least two colons
        text = text.partition(":")[0]
    text = text.partition("%")[0]  # a link-local zone id: inet has no place for it
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


@lru_cache(maxsize=8)
def parse_allowlist(entries: tuple[str, ...]) -> tuple[Network, ...]:
    networks: list[Network] = []
    for entry in entries:
        names = PAYSTACK_ADDRESSES if entry.lower() == "paystack" else (entry,)
        try:
            networks.extend(ipaddress.ip_network(name, strict=False) for name in names)
        except ValueError:
            raise ImproperlyConfigured(
                f"PAYSTACK_WEBHOOK_IPS: {entry!r} is neither an address nor a network; "
                "use 'paystack' or a comma list such as 52.31.139.75,10.0.0.0/8"
            ) from None
    return tuple(networks)


def is_allowed(address: Address | None, allowlist: tuple[str, ...]) -> bool:
    """True when there is no allowlist, or the address is in one of its networks."""
    if not allowlist:
        return True
    if address is None:
        return False
    return any(address in network for network in parse_allowlist(allowlist))
