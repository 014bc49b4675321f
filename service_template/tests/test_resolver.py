"""Upstream name resolution: IP addresses need no lookup, names are reused for a while."""

from __future__ import annotations

import asyncio
import socket

from hello.resolver import Addresses, CachingResolver


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def resolve(resolver: CachingResolver, host: str, port: int = 80) -> Addresses:
    return asyncio.run(resolver.resolve(host, port, socket.AF_UNSPEC))


def test_ip_addresses_are_answered_without_a_lookup() -> None:
    resolver = CachingResolver(ttl=10)
    assert resolve(resolver, "127.0.0.1", 8080) == [(socket.AF_INET, ("127.0.0.1", 8080))]
    assert resolve(resolver, "::1", 8080) == [(socket.AF_INET6, ("::1", 8080, 0, 0))]


def test_names_are_cached_for_the_ttl() -> None:
    clock = Clock()
    resolver = CachingResolver(ttl=10, clock=clock)
    first = resolve(resolver, "localhost")
    assert first and all(addr[1][0] in ("127.0.0.1", "::1") for addr in first)
    clock.now = 9.9
    assert resolve(resolver, "localhost") is first
    clock.now = 10.1
    again = resolve(resolver, "localhost")
    assert again == first and again is not first


def test_zero_ttl_looks_up_every_time() -> None:
    resolver = CachingResolver(ttl=0)
    assert resolve(resolver, "localhost") is not resolve(resolver, "localhost")
