"""Reading a request body within the app's size limit, decoding its ``Content-Encoding``.

aiohttp's own decoding is off (``auto_decompress=False`` in :func:`hub.web.app.create_app`):
it inflates each received chunk to up to 32 MiB before any limit is checked, so a small gzip
bomb would cost that much memory per connection. Here the body is read as sent (at most
``webhooks.max_body_bytes``), then inflated to at most one byte past that limit: a bomb
costs no more than a body of the limit.
"""

from __future__ import annotations

import zlib

from aiohttp import hdrs, web

WBITS = {"gzip": zlib.MAX_WBITS | 16, "x-gzip": zlib.MAX_WBITS | 16, "deflate": zlib.MAX_WBITS}
"""The content codings the hub decodes, with the zlib window that reads each."""


def client_max_size(limit: int) -> int:
    """aiohttp's ``client_max_size`` for bodies of up to ``limit`` bytes (aiohttp refuses a
    body as long as its ``client_max_size``)."""
    return limit + 1


def too_large(limit: int, decoded: bool = False) -> web.HTTPRequestEntityTooLarge:
    """The 413 for a body over ``limit`` bytes (as sent, or once ``decoded``)."""
    text = f"body over {limit} bytes{' once decoded' if decoded else ''}"
    return web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=limit + 1, text=text)


async def read_body(request: web.Request) -> bytes:
    """The request body, decoded per its ``Content-Encoding`` (gzip, deflate or identity).

    ``request.read()`` still returns the body as sent.

    :raise web.HTTPRequestEntityTooLarge: the body as sent, or decoded, is over the app's
        limit (:func:`client_max_size`).
    :raise web.HTTPBadRequest: the body is not valid data of its coding.
    :raise web.HTTPUnsupportedMediaType: another content coding.
    """
    limit = request.client_max_size - 1  # see client_max_size()
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise too_large(limit) from None
    coding = request.headers.get(hdrs.CONTENT_ENCODING, "").strip().lower()
    if coding in ("", "identity") or not raw:
        return raw
    wbits = WBITS.get(coding)
    if wbits is None:
        raise web.HTTPUnsupportedMediaType(
            text=f"Content-Encoding {coding[:40]!r} is not supported (gzip, deflate, identity)"
        )
    return inflate(raw, wbits, limit, coding)


def inflate(raw: bytes, wbits: int, limit: int, coding: str) -> bytes:
    """``raw`` decompressed, never more than ``limit`` bytes of output.

    :raise web.HTTPRequestEntityTooLarge: it decompresses to more than ``limit`` bytes.
    :raise web.HTTPBadRequest: it is not one whole, valid stream of ``coding``.
    """
    if wbits == zlib.MAX_WBITS and raw[0] & 0x0F != 8:
        wbits = -zlib.MAX_WBITS  # deflate without its zlib header, as some clients send it
    inflater = zlib.decompressobj(wbits)
    invalid = web.HTTPBadRequest(text=f"the body is not valid {coding} data")
    try:
        body = inflater.decompress(raw, limit + 1)  # stops one byte past the limit
    except zlib.error:
        raise invalid from None
    if len(body) > limit:
        raise too_large(limit, decoded=True)
    if not inflater.eof or inflater.unused_data:  # cut short, or followed by other bytes
        raise invalid
    return body
