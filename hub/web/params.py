"""Parsing numbers and JSON bodies out of requests without surprises."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

MAX_ID_DIGITS = 18
"""Longer numbers do not fit SQLite's 64-bit integers."""


def parse_int(text: str, max_digits: int = MAX_ID_DIGITS) -> int | None:
    """``text`` as a non-negative integer if it is 1..``max_digits`` ASCII digits, else None.

    (``"²".isdigit()`` is true but ``int("²")`` raises; an over-long id overflows SQLite.)
    """
    if not text or len(text) > max_digits or not (text.isascii() and text.isdigit()):
        return None
    return int(text)


async def json_object(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object; 400 if it is not one.

    Read as bytes (JSON is UTF-8): a ``charset`` in the Content-Type is not consulted, so an
    unknown one cannot turn the client's mistake into a server error.
    """
    try:
        body: Any = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        raise web.HTTPBadRequest(text="body must be JSON") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="body must be a JSON object")
    return body
