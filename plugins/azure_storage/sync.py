"""The repair pass: every recorded document checked against the storage, broken ones marked
and, where possible, recovered. Documents are not synced records: this pass is the plugin's
"sync" between its table and the container.

Each document's blob must exist with the recorded size and checksum: an unchanged ETag means
unchanged bytes; a changed ETag is re-hashed (the SHA-256 of the content). A blob that is
missing or whose bytes differ is looked for elsewhere: a blob whose metadata carries the
document's id and checksum (and whose bytes hash to it) under another name in the container
(its client's prefix) or in one of ``recovery_containers``; the record then points at it.
Failing that, the blob is brought back in place where the account keeps what was lost
(:mod:`.recover`): undeleted (soft delete), else a previous version copied over it
(versioning). What cannot be recovered stays marked ``missing`` or ``corrupt``, and the
report says why.
The pass runs on ``POST /api/documents/repair`` and in the background at each health check.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

from hub.api import HubAPI, Row

from . import tables
from .client import service
from .naming import client_prefix
from .recover import Recovery, sha256

if TYPE_CHECKING:
    from azure.storage.blob.aio import BlobServiceClient

    from .settings import AzureStorageSettings

MAX_REASONS = 100
"""Repaired and failed documents listed by name in a report (the counts are complete)."""
_running: dict[str, asyncio.Task[dict[str, Any]]] = {}


@dataclass(frozen=True)
class Place:
    """Where a blob is and what its metadata says."""

    container: str
    name: str
    size: int
    etag: str
    document_id: str | None
    sha256: str | None


def _place(container: str, blob: Any) -> Place:
    metadata = blob.metadata or {}
    return Place(
        container,
        blob.name,
        int(blob.size),
        str(blob.etag),
        metadata.get("document_id"),
        metadata.get("sha256"),
    )


async def _sha256(svc: BlobServiceClient, place: Place) -> str:
    return await sha256(svc.get_blob_client(place.container, place.name))


async def _problem(svc: BlobServiceClient, row: Row) -> str | None:
    """What is wrong with the document's blob, or None."""
    from azure.core.exceptions import ResourceNotFoundError

    blob = svc.get_blob_client(row["container"], row["blob_name"])
    try:
        properties = await blob.get_blob_properties()
    except ResourceNotFoundError:
        return "missing: no blob under its name"
    place = _place(row["container"], properties)
    if place.size != row["size"]:
        return f"corrupt: the blob has {place.size} bytes, not {row['size']}"
    if place.etag == row["etag"]:
        return None
    if place.sha256 != row["sha256"] or await _sha256(svc, place) != row["sha256"]:
        return "corrupt: the blob's content changed (checksum mismatch)"
    return None


class Finder:
    """Blobs that carry a document id in their metadata, listed once per pass and place."""

    def __init__(self, svc: BlobServiceClient, settings: AzureStorageSettings) -> None:
        self._svc = svc
        self._settings = settings
        self._listed: dict[tuple[str, str], list[Place]] = {}

    async def _list(self, container: str, prefix: str) -> list[Place]:
        key = (container, prefix)
        if key not in self._listed:
            client = self._svc.get_container_client(container)
            self._listed[key] = [
                _place(container, blob)
                async for blob in client.list_blobs(name_starts_with=prefix, include=["metadata"])
            ]
        return self._listed[key]

    def _places(self, row: Row) -> Iterator[tuple[str, str]]:
        org = self._settings.org
        yield self._settings.container, client_prefix(org, row["client"])
        for name in self._settings.recovery_containers:
            yield name, f"{org}/"

    async def find(self, row: Row) -> Place | None:
        """Another blob holding the document's bytes (checked by hashing them), or None."""
        from azure.core.exceptions import ResourceNotFoundError

        for container, prefix in self._places(row):
            try:
                candidates = await self._list(container, prefix)
            except ResourceNotFoundError:
                continue  # a recovery container that does not exist (yet)
            for place in candidates:
                if (place.container, place.name) == (row["container"], row["blob_name"]):
                    continue
                if (place.document_id, place.sha256, place.size) != (
                    row["id"],
                    row["sha256"],
                    row["size"],
                ):
                    continue
                if await _sha256(self._svc, place) == row["sha256"]:
                    return place
        return None


async def _check_one(
    svc: BlobServiceClient, finder: Finder, recovery: Recovery, row: Row, now: str
) -> tuple[str, Row, str]:
    """(``ok`` | ``repaired`` | ``failed``, the row's changes, the reason)."""
    problem = await _problem(svc, row)
    if problem is None:
        return "ok", {"state": "ok", "problem": None}, ""
    state = problem.split(":", 1)[0]
    found = await finder.find(row)
    if found is not None:
        reason = f"{problem}; found at {found.container}/{found.name}"
        changes = {"container": found.container, "blob_name": found.name, "etag": found.etag}
    else:
        restored, why_not = await recovery.restore(row, missing=state == "missing")
        if restored is None:
            failure = f"{problem}; no copy under another name; {why_not}"
            return "failed", {"state": state, "problem": failure}, failure
        reason = f"{problem}; {restored.how}"
        changes = {"etag": restored.etag}
    return "repaired", {**changes, "state": "ok", "problem": f"recovered {now}: {reason}"}, reason


async def repair(hub: HubAPI, settings: AzureStorageSettings, connection_id: str) -> dict[str, Any]:
    """Check (and repair) every document of the connection; the report, also stored.

    :return: ``checked``, ``ok``, ``repaired``/``failed`` counts and ``repaired_documents``/
        ``failed_documents`` (id, name, reason), ``started_at``, ``finished_at``.
    """
    started = datetime.now(UTC).isoformat()
    rows = await hub.tables(__name__).query("documents", "connection_id = ?", [connection_id])
    counts = {"ok": 0, "repaired": 0, "failed": 0}
    listed: dict[str, list[dict[str, str]]] = {"repaired": [], "failed": []}
    async with service(settings, hub) as svc:
        finder, recovery = Finder(svc, settings), Recovery(svc)
        for row in rows:
            outcome, changes, reason = await _check_one(svc, finder, recovery, row, started)
            counts[outcome] += 1
            if outcome != "ok" and len(listed[outcome]) < MAX_REASONS:
                listed[outcome].append({"id": row["id"], "name": row["name"], "reason": reason})
            stamp = datetime.now(UTC).isoformat()
            await tables.update(hub, row["id"], {**changes, "checked_at": stamp})
    finished = datetime.now(UTC).isoformat()
    report: dict[str, Any] = {
        "started_at": started,
        "finished_at": finished,
        "checked": len(rows),
        **counts,
        "repaired_documents": listed["repaired"],
        "failed_documents": listed["failed"],
    }
    await hub.tables(__name__).upsert(
        "repairs",
        [
            {
                "connection_id": connection_id,
                "started_at": started,
                "finished_at": finished,
                "report": orjson.dumps(report).decode(),
            }
        ],
    )
    return report


async def last_report(hub: HubAPI, connection_id: str) -> dict[str, Any] | None:
    """The report of the connection's last finished repair pass, or None."""
    row = await hub.tables(__name__).get("repairs", connection_id)
    return None if row is None else dict(orjson.loads(row["report"]))


def repair_in_background(hub: HubAPI, settings: AzureStorageSettings, connection_id: str) -> None:
    """Start a repair pass of the connection unless one is running."""
    task = _running.get(connection_id)
    if task is None or task.done():
        _running[connection_id] = asyncio.ensure_future(repair(hub, settings, connection_id))


async def stop_background() -> None:
    """Cancel and wait for the background repair passes (at shutdown)."""
    tasks = list(_running.values())
    _running.clear()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
