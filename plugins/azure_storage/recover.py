"""Bringing a document's blob back in place: undelete (soft delete), then a previous version
(versioning), where the account keeps them.

One listing of the blob's name with ``include=metadata,deleted,versions`` shows both: a
soft-deleted blob (``deleted``) is undeleted when the document is missing; a previous version
(a ``version_id`` that is not the current one) whose metadata carries the document's id and
checksum and whose size is the recorded one is copied over the blob (newest first). Either
way the restored bytes are hashed before the record trusts them. The account's protections
(:func:`soft_delete`, and :func:`versioning` from a write's answer) are probed for the health
check and for the reasons a repair gives when nothing could be restored.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hub.api import Row

if TYPE_CHECKING:
    from azure.storage.blob.aio import BlobClient, BlobServiceClient

COPY_POLLS = 50
"""Checks of a pending copy (a copy within one account is normally done at once)."""
COPY_POLL_S = 0.2


async def soft_delete(svc: BlobServiceClient) -> bool | None:
    """Whether blob soft delete is on (None: the credential may not read the properties)."""
    from azure.core.exceptions import HttpResponseError

    try:
        properties = await svc.get_service_properties()
    except HttpResponseError:
        return None
    policy = properties.get("delete_retention_policy")
    return bool(policy and policy.enabled)


def versioning(write_answer: dict[str, Any]) -> bool:
    """Whether versioning is on, from the answer to a write (Azure gives every write a
    ``x-ms-version-id`` when versioning is on, and none when it is off)."""
    return write_answer.get("version_id") is not None


async def sha256(blob: BlobClient, version_id: str | None = None) -> str:
    """The SHA-256 of the blob's bytes (of one of its versions, if given)."""
    digest = hashlib.sha256()
    downloader = await blob.download_blob(version_id=version_id)
    async for chunk in downloader.chunks():
        digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class Restored:
    """A blob brought back in place: its new ETag and how."""

    etag: str
    how: str


def _carries(row: Row, blob: Any) -> bool:
    metadata = blob.metadata or {}
    return (metadata.get("document_id"), metadata.get("sha256"), int(blob.size)) == (
        row["id"],
        row["sha256"],
        row["size"],
    )


async def _verified(blob: BlobClient, row: Row, how: str) -> Restored | None:
    properties = await blob.get_blob_properties()
    if int(properties.size) != row["size"] or await sha256(blob) != row["sha256"]:
        return None
    return Restored(str(properties.etag), how)


async def _copied(blob: BlobClient, version_id: str) -> bool:
    answer = await blob.start_copy_from_url(f"{blob.url}?versionid={version_id}")
    status = answer.get("copy_status")
    for _ in range(COPY_POLLS):
        if status != "pending":
            break
        await asyncio.sleep(COPY_POLL_S)  # Azure has no notification of a finished copy
        status = (await blob.get_blob_properties()).copy.status
    return status == "success"


class Recovery:
    """Undelete and previous-version recovery in one container client's account."""

    def __init__(self, svc: BlobServiceClient) -> None:
        self._svc = svc
        self._soft_delete: bool | None = None
        self._probed = False

    async def _soft_delete_state(self) -> str:
        if not self._probed:
            self._soft_delete, self._probed = await soft_delete(self._svc), True
        return {True: "on", False: "off", None: "unknown"}[self._soft_delete]

    async def restore(self, row: Row, missing: bool) -> tuple[Restored | None, str]:
        """Undelete the document's blob (if ``missing``), else copy its newest previous
        version over it; the restored blob, or None and why not."""
        container = self._svc.get_container_client(row["container"])
        blob = container.get_blob_client(row["blob_name"])
        deleted, versions = [], []
        include = ["metadata", "deleted", "versions"]
        async for entry in container.list_blobs(name_starts_with=row["blob_name"], include=include):
            if entry.name != row["blob_name"] or not _carries(row, entry):
                continue
            if entry.deleted:
                deleted.append(entry)
            elif entry.version_id and not entry.is_current_version:
                versions.append(entry)
        if missing and deleted:
            await blob.undelete_blob()
            restored = await _verified(blob, row, "undeleted (soft delete)")
            if restored is not None:
                return restored, ""
        for entry in sorted(versions, key=lambda e: str(e.version_id), reverse=True):
            if await sha256(blob, entry.version_id) != row["sha256"]:
                continue
            if await _copied(blob, str(entry.version_id)):
                restored = await _verified(blob, row, f"restored version {entry.version_id}")
                if restored is not None:
                    return restored, ""
        soft = await self._soft_delete_state()
        return None, f"no soft-deleted copy (soft delete {soft}) and no previous version"
