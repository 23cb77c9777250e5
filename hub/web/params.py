"""Parsing numbers and JSON bodies out of requests without surprises."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from hub.web.body import read_body

MAX_ID_DIGITS = 18
"""Longer numbers do not fit SQLite's 64-bit integers."""
MAX_JSON_DEPTH = 254
"""How deep arrays and objects may nest in what the hub stores: orjson, which writes every
JSON column, writes no deeper (a JSON parser may read deeper: orjson reads 1024 levels)."""


def parse_int(text: str, max_digits: int = MAX_ID_DIGITS) -> int | None:
    """``text`` as a non-negative integer if it is 1..``max_digits`` ASCII digits, else None.

    (``"²".isdigit()`` is true but ``int("²")`` raises; an over-long id overflows SQLite.)
    """
    if not text or len(text) > max_digits or not (text.isascii() and text.isdigit()):
        return None
    return int(text)


def unstorable(exc: orjson.JSONEncodeError) -> str:
    """Why orjson refused to write a value, in words the client who sent it can act on."""
    reason = str(exc)
    if reason == "Recursion limit reached":
        return f"nested deeper than {MAX_JSON_DEPTH} levels"
    return reason


async def json_object(request: web.Request) -> dict[str, Any]:
    """The request body (decoded per its ``Content-Encoding``) as a JSON object the hub can
    store; 400 if it is not one, 413 if it is over the size limit.

    Read as bytes (JSON is UTF-8): a ``charset`` in the Content-Type is not consulted, so an
    unknown one cannot turn the client's mistake into a server error.
    """
    try:
        body: Any = orjson.loads(await read_body(request))
    except orjson.JSONDecodeError:
        raise web.HTTPBadRequest(text="body must be JSON") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="body must be a JSON object")
    try:
        orjson.dumps(body)  # what it holds may be stored or echoed: it must be writable
    except orjson.JSONEncodeError as exc:
        raise web.HTTPBadRequest(text=f"body must be storable JSON: {unstorable(exc)}") from None
    return body
