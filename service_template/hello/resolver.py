"""Name resolution for upstream calls, cached for a short time.

Tornado's client resolves the host of every request in a thread (getaddrinfo
blocks). In a cluster that is a DNS round trip, often several (search domains),
per upstream call. Answers are kept for `ttl` seconds, as aiohttp does by
default; IP addresses need no lookup at all.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable
from typing import Any

from tornado.netutil import DefaultLoopResolver

Addresses = list[tuple[int, Any]]


class CachingResolver(DefaultLoopResolver):
    # Tornado resolvers are Configurable: constructor arguments go to initialize().
    def initialize(self, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl
        self._clock = clock
        self._cache: dict[tuple[str, int, int], tuple[float, Addresses]] = {}

    async def resolve(
        self, host: str, port: int, family: socket.AddressFamily = socket.AF_UNSPEC
    ) -> Addresses:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            pass
        else:
            found = socket.AF_INET6 if address.version == 6 else socket.AF_INET
            if family in (socket.AF_UNSPEC, found):
                return [(found, (host, port) if found == socket.AF_INET else (host, port, 0, 0))]
        if self._ttl <= 0:
            return await super().resolve(host, port, family)
        key = (host, port, int(family))
        now = self._clock()
        cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        addresses = await super().resolve(host, port, family)
        if len(self._cache) > 1000:  # upstreams are few; this only bounds a misuse
            self._cache.clear()
        self._cache[key] = (now + self._ttl, addresses)
        return addresses
