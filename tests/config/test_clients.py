"""config.clients: one reading of the client address for every surface."""

from typing import Any

import pytest
from django.test import RequestFactory

from config.clients import client_address, client_ip, is_from_this_host

PROXY = "10.0.0.2"


def request_from(peer: str, **headers: Any):
    return RequestFactory().get("/", REMOTE_ADDR=peer, **headers)


def test_without_proxies_the_peer_is_the_client_and_forwarded_entries_are_ignored():
    request = request_from("203.0.113.9", HTTP_X_FORWARDED_FOR="198.51.100.1")

    assert client_address(request, proxy_hops=0) == "203.0.113.9"


@pytest.mark.parametrize(
    ("forwarded", "hops", "expected"),
    [
        ("198.51.100.1", 1, "198.51.100.1"),
        ("1.1.1.1, 198.51.100.1", 1, "198.51.100.1"),  # the left entry is the client's own
        ("1.1.1.1, 198.51.100.1, 10.0.0.1", 2, "198.51.100.1"),
        ("198.51.100.1", 2, None),  # one proxy skipped: fail closed, never the left entry
        ("", 1, None),
        (" , ", 1, None),
    ],
)
def test_behind_proxies_the_outer_proxys_entry_is_the_client_or_none(forwarded, hops, expected):
    request = request_from(PROXY, HTTP_X_FORWARDED_FOR=forwarded)

    assert client_address(request, proxy_hops=hops) == expected


def test_client_ip_normalises_the_spelling_and_is_none_when_unknown(settings):
    settings.PROXY_HOPS = 1

    assert client_ip(request_from(PROXY, HTTP_X_FORWARDED_FOR="198.51.100.1:4431")) == (
        "198.51.100.1"
    )
    assert client_ip(request_from(PROXY)) is None
    assert client_ip(request_from(PROXY, HTTP_X_FORWARDED_FOR="unknown")) is None


@pytest.mark.parametrize(
    ("peer", "headers", "local"),
    [
        ("127.0.0.1", {}, True),
        ("::1", {}, True),
        ("::ffff:127.0.0.1", {}, True),
        ("203.0.113.9", {}, False),
        ("127.0.0.1", {"HTTP_X_FORWARDED_FOR": "127.0.0.1"}, False),  # a proxy on this host
        ("127.0.0.1", {"HTTP_FORWARDED": "for=203.0.113.9"}, False),
        ("127.0.0.1", {"HTTP_X_REAL_IP": "203.0.113.9"}, False),
        ("", {}, False),
    ],
)
def test_only_an_unproxied_loopback_peer_is_this_host(peer, headers, local):
    assert is_from_this_host(request_from(peer, **headers)) is local
