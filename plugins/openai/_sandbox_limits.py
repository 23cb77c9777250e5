"""The OpenAI sandbox's rate limits: requests and tokens per minute, as OpenAI enforces them.

Each limit is a bucket refilled continuously at ``per_minute / 60`` a second and holding at most
``burst_seconds`` of that rate (OpenAI enforces per-minute limits over shorter periods too: a
limit of 600 RPM may refuse a burst of 20 in one second). A model request costs one request
and its estimated tokens (input plus the ``max_output_tokens`` it allows); it is admitted only
when both buckets hold enough. Every answer carries OpenAI's ``x-ratelimit-*`` headers; a
refused request gets ``retry-after`` and ``retry-after-ms``: the time until its share is there,
after the shares of the callers refused before it (:meth:`Bucket.promise`), so clients that
honour the headers run at the limit.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field


def duration(seconds: float) -> str:
    """A wait in OpenAI's header form (Go's duration strings): ``20ms``, ``1.5s``, ``6m0s``."""
    if seconds < 1:
        return f"{math.ceil(seconds * 1000)}ms"
    minutes, rest = divmod(round(seconds, 3), 60)
    shown = f"{rest:.3f}".rstrip("0").rstrip(".")
    return f"{int(minutes)}m{shown}s" if minutes else f"{shown}s"


@dataclass
class Bucket:
    """One limit: ``per_minute`` units, at most ``capacity`` of them at once."""

    per_minute: int
    capacity: float
    level: float = -1.0
    at: float = field(default_factory=time.monotonic)
    promised: float = 0.0
    """Until when the callers refused so far were told to wait (monotonic seconds)."""

    def __post_init__(self) -> None:
        if self.level < 0:
            self.level = self.capacity

    def refill(self, now: float) -> None:
        """Add what the time since the last look earned."""
        self.level = min(self.capacity, self.level + (now - self.at) * self.per_minute / 60)
        self.at = now

    def wait(self, amount: float) -> float:
        """Seconds until ``amount`` may be taken (0: now; ``inf``: never, it exceeds the
        per-minute limit). More than the capacity is taken from a full bucket, which then
        owes the rest."""
        if amount > self.per_minute:
            return math.inf
        return max(0.0, (min(amount, self.capacity) - self.level) * 60 / self.per_minute)

    def promise(self, amount: float, now: float) -> float:
        """The wait to tell a refused caller: until ``amount`` is there, and after the callers
        refused before it, so that callers honouring it come back one after another instead
        of all at once (each would find the bucket empty again)."""
        start = max(now + self.wait(amount), self.promised)
        self.promised = start + min(amount, self.capacity) * 60 / self.per_minute
        return start - now

    def headers(self, kind: str) -> dict[str, str]:
        """``x-ratelimit-limit-<kind>``, ``-remaining-`` and ``-reset-`` (time to full)."""
        until_full = (self.capacity - self.level) * 60 / self.per_minute
        return {
            f"x-ratelimit-limit-{kind}": str(self.per_minute),
            f"x-ratelimit-remaining-{kind}": str(max(0, math.floor(self.level))),
            f"x-ratelimit-reset-{kind}": duration(until_full),
        }


@dataclass(frozen=True)
class Refusal:
    """Why a request was not admitted: which limit (``requests`` or ``tokens``), its figures,
    and how long to wait (None: the request alone exceeds the limit)."""

    kind: str
    limit: int
    used: int
    requested: int
    retry_after: float | None


class Limits:
    """The requests and tokens buckets of one sandbox (None: that limit is off)."""

    def __init__(
        self, requests_per_minute: int | None, tokens_per_minute: int | None, burst_seconds: float
    ) -> None:
        self.buckets: dict[str, Bucket] = {}
        for kind, per_minute in (("requests", requests_per_minute), ("tokens", tokens_per_minute)):
            if per_minute is not None:
                capacity = max(1.0, per_minute * burst_seconds / 60)
                self.buckets[kind] = Bucket(per_minute, capacity)

    def admit(self, tokens: int) -> Refusal | None:
        """Take one request and ``tokens`` if both limits allow them now, else say why not
        (nothing taken)."""
        now = time.monotonic()
        wanted = {"requests": 1, "tokens": tokens}
        for kind, bucket in self.buckets.items():
            bucket.refill(now)
            wait = bucket.wait(wanted[kind])
            if wait > 0:
                used = math.ceil(bucket.capacity - bucket.level)
                retry = None if math.isinf(wait) else bucket.promise(wanted[kind], now)
                return Refusal(kind, bucket.per_minute, used, wanted[kind], retry)
        for kind, bucket in self.buckets.items():
            bucket.level -= wanted[kind]
        return None

    def headers(self) -> dict[str, str]:
        """The ``x-ratelimit-*`` headers of the current state."""
        now = time.monotonic()
        found: dict[str, str] = {}
        for kind, bucket in self.buckets.items():
            bucket.refill(now)
            found |= bucket.headers(kind)
        return found
