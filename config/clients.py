"""Who is calling: the client's address behind PROXY_HOPS trusted proxies, and whether a
request came straight from this host.

Pure functions over the request and settings, shared by the webhook allowlist, the rate limits
on the payments API and the callback, the admin's login throttle and /metrics: one reading of
X-Forwarded-For everywhere, so no surface trusts an entry another one refuses.
"""

import ipaddress

from django.conf import settings
from django.http import HttpRequest

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# Headers a reverse proxy adds: a request carrying one came through a proxy, whatever its peer.
_FORWARDING_HEADERS = ("HTTP_X_FORWARDED_FOR", "HTTP_FORWARDED", "HTTP_X_REAL_IP")


def client_address(request: HttpRequest, *, proxy_hops: int) -> str | None:
    """The address the outermost trusted proxy saw, the socket peer with no proxies, or None.

    Each of our `proxy_hops` proxies appends the address it received from, so the client is
    the entry `proxy_hops` places from the right of X-Forwarded-For; anything further left was
    written by the client itself. A chain shorter than that did not pass all our proxies (it
    reached web another way), so none of its entries is one we can trust: None, never the
    left-most entry, which the client wrote.
    """
    peer: str = request.META.get("REMOTE_ADDR", "")
    if proxy_hops <= 0:
        return peer
    forwarded: list[str] = request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")
    entries = [entry.strip() for entry in forwarded if entry.strip()]
    if len(entries) < proxy_hops:
        return None
    return entries[len(entries) - proxy_hops]


def client_ip(request: HttpRequest) -> str | None:
    """The client's IP as text under the configured PROXY_HOPS, or None when unknown.

    Also the admin login throttle's idea of the client (AXES_CLIENT_IP_CALLABLE).
    """
    address = client_address(request, proxy_hops=settings.PROXY_HOPS)
    ip = parse_address(address) if address is not None else None
    return str(ip) if ip is not None else None


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


def is_from_this_host(request: HttpRequest) -> bool:
    """True when the socket peer is a loopback address and no proxy forwarded the request.

    A proxy on this host connects from loopback too, on behalf of anyone: a request that
    carries a forwarding header is a proxied request, never a local one, whatever PROXY_HOPS
    says.
    """
    if any(request.META.get(header) for header in _FORWARDING_HEADERS):
        return False
    peer = parse_address(request.META.get("REMOTE_ADDR", ""))
    return peer is not None and peer.is_loopback
