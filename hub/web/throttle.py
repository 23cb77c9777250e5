"""Failed sign-in attempts per client address: at most N in any window, in a bounded table.

An address is its peer IP as the socket saw it (``X-Forwarded-For`` is never trusted: a
client could write any address there); an IPv6 address counts as its /64, the block one
host is usually given. Each address keeps the times of its last N failures, so no window
of ``window_s`` seconds ever holds more than N. The table holds at most
:data:`MAX_ADDRESSES` addresses, ordered by their latest failure: addresses whose failures
have all aged out are dropped first, then the least recently failing ones.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable

MAX_ADDRESSES = 4096
"""Client addresses tracked at once (each keeps at most N timestamps)."""


def address_key(remote: str | None) -> str:
    """The key failures are counted under: the IP (an IPv6 address as its /64)."""
    try:
        address = ipaddress.ip_address(remote or "")
    except ValueError:
        return remote or "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


class FailureLimiter:
    """At most ``max_failures`` failures per address in any ``window_s`` seconds.

    :param clock: monotonic seconds (tests pass their own).
    """

    def __init__(
        self,
        max_failures: int,
        window_s: float,
        max_addresses: int = MAX_ADDRESSES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self._max_addresses = max_addresses
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._failures)

    def retry_after(self, key: str) -> int | None:
        """Whole seconds until ``key`` may try again, or None if it may try now."""
        failures = self._failures.get(key)
        if failures is None or len(failures) < self.max_failures:
            return None
        wait = failures[0] + self.window_s - self._clock()
        return max(1, math.ceil(wait)) if wait > 0 else None

    def failed(self, key: str) -> int:
        """Count a failure of ``key``; return its failures within the window, this one too."""
        now = self._clock()
        self._forget_older_than(now - self.window_s)
        failures = self._failures.pop(key, None)
        if failures is None:
            failures = deque(maxlen=self.max_failures)
            while len(self._failures) >= self._max_addresses:
                self._failures.popitem(last=False)
        failures.append(now)
        self._failures[key] = failures  # last: the most recent failure
        return sum(1 for when in failures if when > now - self.window_s)

    def _forget_older_than(self, cutoff: float) -> None:
        """Drop the addresses whose latest failure is before ``cutoff`` (the table is
        ordered by latest failure, so they are at its front)."""
        while self._failures:
            key, failures = next(iter(self._failures.items()))
            if failures[-1] > cutoff:
                return
            del self._failures[key]
