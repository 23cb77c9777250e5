"""Timestamps as the store writes them: UTC, ISO 8601, second precision plus microseconds."""

from __future__ import annotations

import os
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


ID_TAGS = 1000
_last_id = 0
_tag = 100 + os.getpid() % (ID_TAGS - 100)
"""This process's last three digits of every id: the daemon's and its ingest workers' are
set (0-99, one each), other processes' (a CLI sync beside the daemon) come from the pid."""


def set_id_tag(tag: int) -> None:
    """Give this process's ids the tag ``tag`` (0-99), distinct among the processes writing
    one database at once: the daemon 0, ingest worker ``n`` ``n + 1``."""
    global _tag
    if not 0 <= tag < 100:
        raise ValueError(f"id tag {tag} is not in 0-99")
    _tag = tag


def next_id() -> int:
    """A unique, increasing integer id: microseconds since the epoch, then the process's tag
    as the last three digits (bumped by a thousand on ties, which keeps the tag).

    Rows keyed by it are appended in order, like rowids, without asking the database first;
    processes writing at once never make the same id (nanoseconds alone collided).
    """
    global _last_id
    _last_id = max(time.time_ns() // 1000 * ID_TAGS + _tag, _last_id + ID_TAGS)
    return _last_id


def parse(value: str) -> datetime:
    """Parse a timestamp written by :func:`utcnow`."""
    return datetime.fromisoformat(value)
