"""Sliding-window budgets: every window holds at once, on a virtual clock (no wall time)."""

from __future__ import annotations

import asyncio

import pytest

from hub.ratelimit import SlidingWindows
from hub.testing import most_in_window


class VirtualTime:
    """A clock that only moves when a caller sleeps."""

    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += max(seconds, 0.0)
        await asyncio.sleep(0)


async def test_intuit_budget_holds_per_second_and_per_minute_at_once():
    time = VirtualTime()
    windows = SlidingWindows([(10, 1.0), (500, 60.0)], time.clock, time.sleep)
    admitted: list[float] = []

    async def call() -> None:
        await windows.acquire()
        admitted.append(time.now)

    await asyncio.gather(*(call() for _ in range(1200)))
    assert most_in_window(admitted, 1.0) == 10  # a leaky bucket of 10 would let 20 through
    assert most_in_window(admitted, 60.0) == 500
    assert admitted[-1] >= 120.0  # 1,200 calls need a third minute


async def test_a_free_window_admits_at_once():
    time = VirtualTime()
    windows = SlidingWindows([(3, 1.0)], time.clock, time.sleep)
    for _ in range(3):
        await windows.acquire()
    assert time.now == 0.0 and windows.wait_time() == 1.0


def test_a_window_needs_a_positive_budget():
    with pytest.raises(ValueError, match="max_calls"):
        SlidingWindows([(0, 1.0)])
