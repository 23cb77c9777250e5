"""Streaming a document into a blob: staged blocks, committed only when the whole body is in.

The body is read in pieces and staged as blocks of ``block_size`` (one block staged while the
next is read, so at most two are in memory), its SHA-256 computed on the way. Only when the
body ended within the limit is the block list committed, with the document's id, client and
checksum as metadata and the sniffed content type. A body over the limit, an empty one or a
failure stops the upload before the commit: the staged blocks are never committed, and Azure
discards uncommitted blocks by itself (after a week).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
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
    buffer, total = bytearray(), 0
    while chunk := await read(READ_BYTES):
        total += len(chunk)
        if total > limit:
            raise UploadTooLarge(f"the file is larger than the limit of {limit} bytes")
        buffer += chunk
        while len(buffer) >= block_size:
            yield bytes(buffer[:block_size])
            del buffer[:block_size]
    if buffer:
        yield bytes(buffer)


async def _settle(task: asyncio.Task[object] | None) -> None:
    if task is not None:
        await task


async def store(
    blob: BlobClient,
    blocks: AsyncIterator[bytes],
    *,
    metadata: dict[str, str],
    declared_type: str | None,
    name: str,
) -> Stored:
    """Stage ``blocks`` into ``blob`` and commit them with ``metadata`` plus the checksum.

    :raise EmptyUpload: there were no bytes (nothing was staged).
    :raise UploadTooLarge: from ``blocks``; nothing is committed.
    """
    from azure.storage.blob import BlobBlock, ContentSettings

    digest, head, size = hashlib.sha256(), b"", 0
    ids: list[str] = []
    staging: asyncio.Task[object] | None = None
    try:
        async for block in blocks:
            digest.update(block)
            size += len(block)
            if len(head) < SNIFF_BYTES:
                head += block[: SNIFF_BYTES - len(head)]
            await _settle(staging)
            ids.append(block_id(len(ids)))
            staging = asyncio.ensure_future(blob.stage_block(ids[-1], block, len(block)))
        await _settle(staging)
    finally:
        if staging is not None and not staging.done():
            staging.cancel()
            with contextlib.suppress(BaseException):
                await staging
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
