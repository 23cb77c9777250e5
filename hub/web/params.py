"""Parsing numbers out of URLs, query strings and cookies without surprises."""

from __future__ import annotations

MAX_ID_DIGITS = 18
"""Longer numbers do not fit SQLite's 64-bit integers."""


def parse_int(text: str, max_digits: int = MAX_ID_DIGITS) -> int | None:
    """``text`` as a non-negative integer if it is 1..``max_digits`` ASCII digits, else None.

    (``"²".isdigit()`` is true but ``int("²")`` raises; an over-long id overflows SQLite.)
    """
    if not text or len(text) > max_digits or not (text.isascii() and text.isdigit()):
        return None
    return int(text)
