"""Timestamps as the store writes them: UTC, ISO 8601, second precision plus microseconds."""

from __future__ import annotations

import time
from datetime import UTC, datetime

_second: tuple[int, str] = (-1, "")
"""The last whole second formatted, and its text: most calls fall in the same second."""


def utcnow() -> str:
    """The current time as an ISO 8601 UTC string (``2026-11-26T17:47:00.123456+00:00``)."""
    global _second
    now = time.time()
    second, text = _second
    if int(now) != second:
        second = int(now)
        text = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _second = (second, text)  # one assignment: threads see a consistent pair
    return f"{text}.{int((now - second) * 1_000_000):06d}+00:00"


_last_id = 0


def next_id() -> int:
    """A unique, increasing integer id: microseconds since the epoch, bumped by one on ties.

    Rows keyed by it are appended in order, like rowids, without asking the database first.
    Only the daemon's event loop calls it (a webhook request is prepared there, before its
    group commit), so the read-and-bump needs no lock; one process writes the database, so
    unique within this process is unique.
    """
    global _last_id
    _last_id = max(time.time_ns() // 1000, _last_id + 1)
    return _last_id


def parse(value: str) -> datetime:
    """Parse a timestamp written by :func:`utcnow`."""
    return datetime.fromisoformat(value)
