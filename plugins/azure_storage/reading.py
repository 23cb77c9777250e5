"""Other plugins' read path to a stored document: the ``read_document`` hook.

Document analysis (the OpenAI plugin) needs a document's bytes without HTTP and without this
plugin's SDK: ``hub.read_document(id, max_bytes)`` calls :func:`read_document`. The content is
read only when the document is small enough, whole, and checked against its SHA-256; a blob
that is missing or whose bytes changed is marked on the record, as a download marks it.
"""

from __future__ import annotations

import hashlib

from hub.api import HubAPI, Row
from hub.errors import ProviderError
from hub.model import StoredDocument

from . import tables
from .client import container, storage_error
from .settings import NAME, AzureStorageSettings


async def read_document(hub: HubAPI, document_id: str, max_bytes: int) -> StoredDocument | None:
    """The document ``document_id`` (its content if it has at most ``max_bytes``), or None
    when this plugin is not configured or has no such document.

    :raise ProviderError: the blob cannot be read, is missing, or its bytes changed.
    """
    settings = hub.settings_for(NAME)
    connections = await hub.connections(NAME)
    if not isinstance(settings, AzureStorageSettings) or not connections:
        return None
    row = await tables.get(hub, connections[0].id, document_id)
    if row is None:
        return None
    content = await _content(hub, settings, row) if row["size"] <= max_bytes else None
    return StoredDocument(
        id=row["id"],
        client=row["client"],
        name=row["name"],
        content_type=row["content_type"],
        size=row["size"],
        sha256=row["sha256"],
        uploaded_by=row["uploaded_by"],
        content=content,
    )


async def _content(hub: HubAPI, settings: AzureStorageSettings, row: Row) -> bytes:
    from azure.core.exceptions import AzureError

    try:
        async with container(settings, hub, row["container"]) as storage:
            downloader = await storage.get_blob_client(row["blob_name"]).download_blob()
            content: bytes = await downloader.readall()
    except (AzureError, OSError, TimeoutError) as exc:
        error = storage_error(exc)
        if error.status == 404:
            missing = {"state": "missing", "problem": "the blob is missing"}
            await tables.update(hub, row["id"], missing)
            raise ProviderError(
                f"document {row['id']}: its blob is missing (POST /api/documents/repair)",
                status=404,
            ) from None
        raise error from None
    if len(content) != row["size"] or hashlib.sha256(content).hexdigest() != row["sha256"]:
        problem = f"content checksum mismatch on read ({len(content)} bytes)"
        await tables.update(hub, row["id"], {"state": "corrupt", "problem": problem})
        raise ProviderError(f"document {row['id']}: its bytes changed: it is marked corrupt")
    return content
