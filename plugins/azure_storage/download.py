"""Streaming a document's blob to an HTTP response, its checksum verified on the way.

Every chunk but the last is sent as it arrives; the last is held back until the SHA-256 of the
whole body matched the recorded one. On a mismatch the connection is aborted before the
last chunk, so the client never receives a complete body (its ``Content-Length`` is not
reached), and the document is marked ``corrupt``.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from hub.api import Row

from .naming import sanitise


async def stream(
    request: web.Request,
    row: Row,
    chunks: AsyncIterator[bytes],
    mark_corrupt: Callable[[str], Awaitable[None]],
) -> web.StreamResponse:
    """Send ``chunks`` (the blob's body) as ``row``'s content."""
    response = web.StreamResponse(
        headers={
            "Content-Type": row["content_type"],
            "Content-Disposition": f'attachment; filename="{sanitise(row["name"])}"',
            "X-Content-SHA256": row["sha256"],
        }
    )
    response.content_length = row["size"]
    await response.prepare(request)
    digest, size, held = hashlib.sha256(), 0, b""
    async for chunk in chunks:
        if held:
            await response.write(held)
        digest.update(chunk)
        size += len(chunk)
        held = chunk
    if size != row["size"] or digest.hexdigest() != row["sha256"]:
        await mark_corrupt(f"content checksum mismatch on download ({size} bytes)")
        if request.transport is not None:
            request.transport.abort()  # the client must not take a partial body as whole
        return response
    await response.write(held)
    await response.write_eof()
    return response
