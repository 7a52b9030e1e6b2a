"""The webhook allowlist: which client addresses may deliver events (PAYSTACK_WEBHOOK_IPS).

The client address itself is read by config.clients, shared with the other surfaces.
"""

import ipaddress
from functools import lru_cache

from django.core.exceptions import ImproperlyConfigured

from config.clients import Address

# Paystack's published webhook source addresses (test and live).
PAYSTACK_ADDRESSES = ("52.31.139.75", "52.49.173.169", "52.214.14.220")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


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
