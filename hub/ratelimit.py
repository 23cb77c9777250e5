"""Exact request budgets: no window of ``period`` seconds ever admits more than ``max_calls``.

A leaky bucket of capacity ``b`` lets ``b`` calls through at once and then more within the
same period; providers that count "N per second and M per minute" on their side need every
window to hold at once, so :class:`SlidingWindows` keeps one log of admission times and admits
a call only when, for every ``(max_calls, period)``, fewer than ``max_calls`` of the logged
calls lie within the last ``period`` seconds.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class SlidingWindows:
    """At most ``max_calls`` admissions in any ``period`` seconds, for each pair given.

    :param limits: ``(max_calls, period)`` pairs, e.g. ``[(10, 1.0), (500, 60.0)]``.
    :param clock: monotonic seconds (injectable for tests, with ``sleep``).
    """

    def __init__(
        self,
        limits: Sequence[tuple[int, float]],
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if not limits or any(calls < 1 or period <= 0 for calls, period in limits):
            raise ValueError("each window needs max_calls >= 1 and period > 0")
        self.limits = tuple((int(calls), float(period)) for calls, period in limits)
        self._clock = clock
        self._sleep = sleep
        self._log: deque[float] = deque(maxlen=max(calls for calls, _ in self.limits))
        self._lock = asyncio.Lock()

    def wait_time(self) -> float:
        """Seconds until one more call fits every window (0: it fits now)."""
        now = self._clock()
        wait = 0.0
        for calls, period in self.limits:
            if len(self._log) >= calls:  # the calls-th most recent must have left the window
                wait = max(wait, self._log[-calls] + period - now)
        return wait

    async def acquire(self) -> None:
        """Wait until a call fits every window, then log it (first come, first served)."""
        async with self._lock:
            while (wait := self.wait_time()) > 0:
                await self._sleep(wait)
            self._log.append(self._clock())
