"""Streaming a document's blob to an HTTP response, its checksum verified on the way.

Every chunk but the last is sent as it arrives; the last is held back until the SHA-256 of the
whole body matched the recorded one. On a mismatch the connection is aborted before the
last chunk, so the client never receives a complete body (its ``Content-Length`` is not
reached), and the document is marked ``corrupt``. The blob is read by :func:`ranges`, a few
blocks at once, each range pinned to the blob's ETag (a blob replaced mid-download fails the
read instead of mixing two versions).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING

import structlog
from aiohttp import web

from hub.api import Row

from .naming import sanitise

if TYPE_CHECKING:
    from azure.storage.blob.aio import BlobClient

log = structlog.get_logger("plugins.azure_storage")


async def _read_range(blob: BlobClient, offset: int, length: int, etag: str) -> bytes:
    from azure.core import MatchConditions

    downloader = await blob.download_blob(
        offset, length, etag=etag, match_condition=MatchConditions.IfNotModified
    )
    # one range is one answer: its chunks are that answer's body, joined without a copy
    # (readall() copies it through a buffer)
    return b"".join([chunk async for chunk in downloader.chunks()])


async def ranges(
    blob: BlobClient, size: int, etag: str, block_size: int, concurrency: int
) -> AsyncGenerator[bytes, None]:
    """The blob's ``size`` bytes in order, in blocks of ``block_size``, ``concurrency`` blocks
    read at once (so at most that many are held); the reads still running are cancelled when
    the iteration stops early.

    :raise azure.core.exceptions.ResourceModifiedError: the blob's ETag changed meanwhile.
    """
    offsets = iter(range(0, size, block_size))
    reading: deque[asyncio.Task[bytes]] = deque()

    def read_next() -> None:
        offset = next(offsets, None)
        if offset is not None:
            length = min(block_size, size - offset)
            reading.append(asyncio.ensure_future(_read_range(blob, offset, length, etag)))

    try:
        for _ in range(concurrency):
            read_next()
        while reading:
            block = await reading.popleft()
            read_next()
            yield block
    finally:
        for task in reading:
            task.cancel()
        await asyncio.gather(*reading, return_exceptions=True)


def _abort(request: web.Request) -> None:
    if request.transport is not None:
        request.transport.abort()


async def stream(
    request: web.Request,
    row: Row,
    chunks: AsyncIterator[bytes],
    mark_corrupt: Callable[[str], Awaitable[None]],
) -> web.StreamResponse:
    """Send ``chunks`` (the blob's body) as ``row``'s content; a read that fails midway cuts
    the connection (logged)."""
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
    try:
        async for chunk in chunks:
            if held:
                await response.write(held)
            digest.update(chunk)
            size += len(chunk)
            held = chunk
    except Exception as exc:
        # the headers are out: only a cut connection tells the client the body is not whole
        log.warning("document download failed", document=row["id"], error=type(exc).__name__)
        _abort(request)
        return response
    if size != row["size"] or digest.hexdigest() != row["sha256"]:
        await mark_corrupt(f"content checksum mismatch on download ({size} bytes)")
        _abort(request)  # the client must not take a partial body as whole
        return response
    await response.write(held)
    await response.write_eof()
    return response
