"""Timestamps as the store writes them: UTC, ISO 8601, second precision plus microseconds."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> str:
    """The current time as an ISO 8601 UTC string (``2026-11-26T17:47:00.123456+00:00``)."""
    return datetime.now(UTC).isoformat()


def parse(value: str) -> datetime:
    """Parse a timestamp written by :func:`utcnow`."""
    return datetime.fromisoformat(value)
