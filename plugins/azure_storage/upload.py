"""Streaming a document into a blob: staged blocks, committed only when the whole body is in.

The body is read in pieces and staged as blocks of ``block_size``, up to ``concurrency`` blocks
staged at once while the next is read (so at most ``concurrency + 1`` blocks are in memory),
its SHA-256 computed on the way. Only when the
body ended within the limit is the block list committed, with the document's id, client and
checksum as metadata and the sniffed content type. A body over the limit, an empty one or a
failure stops the upload before the commit: the staged blocks are never committed, and Azure
discards uncommitted blocks by itself (after a week).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .sniff import SNIFF_BYTES, content_type

if TYPE_CHECKING:
    from azure.storage.blob.aio import BlobClient

READ_BYTES = 256 * 1024


class UploadTooLarge(Exception):
    """The body is longer than ``max_upload_bytes``."""


class EmptyUpload(Exception):
    """The file has no bytes."""


class MalformedBody(Exception):
    """The request body is not well-formed multipart."""


@dataclass(frozen=True)
class Stored:
    """What a committed upload is."""

    size: int
    sha256: str
    etag: str
    content_type: str


def block_id(index: int) -> str:
    """The id of block ``index`` (ids of one blob must all have the same length)."""
    return base64.b64encode(f"{index:010d}".encode()).decode()


async def read_blocks(
    read: Callable[[int], Awaitable[bytes]], block_size: int, limit: int
) -> AsyncIterator[bytes]:
    """Blocks of ``block_size`` bytes (the last may be shorter) of a body read with ``read``.

    :raise UploadTooLarge: the body goes past ``limit`` bytes (raised as soon as it does).
    """
    pieces: list[bytes] = []
    filled = total = 0
    while chunk := await read(READ_BYTES):
        total += len(chunk)
        if total > limit:
            raise UploadTooLarge(f"the file is larger than the limit of {limit} bytes")
        while filled + len(chunk) >= block_size:
            # only the piece that crosses a block's end is split: the block is joined once
            cut = block_size - filled
            yield b"".join([*pieces, chunk[:cut]])
            pieces, filled, chunk = [], 0, chunk[cut:]
        if chunk:
            pieces.append(chunk)
            filled += len(chunk)
    if pieces:
        yield b"".join(pieces)


async def _first_done(staging: set[asyncio.Task[object]]) -> set[asyncio.Task[object]]:
    """Wait until one staging call ended (raising its error); the ones still running."""
    done, running = await asyncio.wait(staging, return_when=asyncio.FIRST_COMPLETED)
    for task in done:
        task.result()
    return running


async def store(
    blob: BlobClient,
    blocks: AsyncIterator[bytes],
    *,
    metadata: dict[str, str],
    declared_type: str | None,
    name: str,
    concurrency: int,
) -> Stored:
    """Stage ``blocks`` into ``blob`` (``concurrency`` at once) and commit them with
    ``metadata`` plus the checksum.

    :raise EmptyUpload: there were no bytes (nothing was staged).
    :raise UploadTooLarge: from ``blocks``; nothing is committed.
    """
    from azure.storage.blob import BlobBlock, ContentSettings

    digest, head, size = hashlib.sha256(), b"", 0
    ids: list[str] = []
    staging: set[asyncio.Task[object]] = set()
    try:
        async for block in blocks:
            digest.update(block)
            size += len(block)
            if len(head) < SNIFF_BYTES:
                head += block[: SNIFF_BYTES - len(head)]
            if len(staging) >= concurrency:
                staging = await _first_done(staging)
            ids.append(block_id(len(ids)))
            staging.add(asyncio.ensure_future(blob.stage_block(ids[-1], block, len(block))))
        while staging:
            staging = await _first_done(staging)
    finally:
        for task in staging:
            task.cancel()
        # the cancelled calls' own errors (or cancellations) say nothing more
        await asyncio.gather(*staging, return_exceptions=True)
    if not size:
        raise EmptyUpload("the file is empty")
    kind = content_type(head, declared_type, name)
    sha256 = digest.hexdigest()
    answer = await blob.commit_block_list(
        [BlobBlock(block_id=i) for i in ids],
        content_settings=ContentSettings(content_type=kind),
        metadata={**metadata, "sha256": sha256},
    )
    return Stored(size, sha256, str(answer["etag"]), kind)
