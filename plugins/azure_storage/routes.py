"""The documents API: ``/api/documents…`` (under ``/api``, so the hub checks the admin token).

Upload (multipart ``client`` then ``file``; ``?client=`` works too), list, metadata, content,
delete, read-only links and the repair pass. Bad input answers 4xx with a reason; a storage
account that fails or cannot be reached answers 502 or 503, with nothing recorded.
"""

from __future__ import annotations

import contextlib
import re
import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from hub.api import HubAPI, Row
from hub.errors import NetworkError, ProviderError

from . import download, links, tables, upload, webhooks
from .client import container, ensure_container, service, storage_error
from .naming import blob_name, safe_client
from .settings import NAME, AzureStorageSettings
from .sync import repair

MULTIPART_ALLOWANCE = 64 * 1024
"""Bytes a multipart request may carry beyond the file: boundaries, part headers, fields."""
MAX_FIELD_BYTES = 1024
MAX_FILE_NAME_CHARS = 1024
MAX_LIST = 1000
EMAIL_RE = re.compile(r"^[^@\s<>\"]{1,64}@[^@\s<>\"]{1,255}$")
UPLOADED_BY_HEADER = "X-Uploaded-By"


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status)


def _error(status: int, reason: str) -> web.Response:
    return _json({"error": reason}, status)


def _storage_failure(exc: BaseException) -> web.Response:
    """502 (the storage answered an error) or 503 (it could not be reached)."""
    error = storage_error(exc)
    status = 503 if isinstance(error, NetworkError) else 502
    return _error(status, str(error))


def _client_reference(value: str | None) -> str:
    if not value or not safe_client(value):
        raise web.HTTPBadRequest(
            text="client must be 1-100 letters, digits, '.', '_' or '-' (not starting with those)"
        )
    return value


def _uploaded_by(request: web.Request) -> str | None:
    value = request.headers.get(UPLOADED_BY_HEADER)
    if value is not None and not EMAIL_RE.match(value):
        raise web.HTTPBadRequest(text=f"{UPLOADED_BY_HEADER} must be an e-mail address")
    return value


class DocumentRoutes:
    """The handlers of ``/api/documents``, bound to the hub."""

    def __init__(self, hub: HubAPI) -> None:
        self.hub = hub

    def routes(self) -> list[web.RouteDef]:
        """The route table."""
        return [
            web.post("/api/documents", self.upload),
            web.get("/api/documents", self.list),
            web.post("/api/documents/repair", self.repair),
            web.get("/api/documents/{id}", self.metadata),
            web.get("/api/documents/{id}/content", self.content),
            web.get("/api/documents/{id}/link", self.link),
            web.delete("/api/documents/{id}", self.delete),
        ]

    async def _context(self) -> tuple[AzureStorageSettings, str]:
        settings = self.hub.settings_for(NAME)
        connections = await self.hub.connections(NAME)
        if not isinstance(settings, AzureStorageSettings) or not connections:
            raise web.HTTPServiceUnavailable(
                text="Azure Blob Storage is not configured ([integrations.azure_storage])"
            )
        return settings, connections[0].id

    async def _document(self, request: web.Request) -> tuple[AzureStorageSettings, Row]:
        settings, connection_id = await self._context()
        row = await tables.get(self.hub, connection_id, request.match_info["id"])
        if row is None:
            raise web.HTTPNotFound(text=f"no document {request.match_info['id']!r}")
        return settings, row

    # ------------------------------------------------------------------ upload

    async def upload(self, request: web.Request) -> web.StreamResponse:
        """``POST /api/documents``: stream the ``file`` part into a blob; 201 + the document."""
        settings, connection_id = await self._context()
        limit = settings.max_upload_bytes
        declared = request.content_length
        if declared is not None and declared > limit + MULTIPART_ALLOWANCE:
            return _error(413, f"the upload is larger than the limit of {limit} bytes")
        uploaded_by = _uploaded_by(request)
        if not request.content_type.startswith("multipart/form-data"):
            return _error(400, "send multipart/form-data with the fields client and file")
        try:
            client, part = await _client_and_file(request)
        except upload.MalformedBody as exc:
            return _error(400, str(exc))
        name = part.filename or ""
        if not name.strip() or len(name) > MAX_FILE_NAME_CHARS:
            return _error(400, f"the file needs a name of 1-{MAX_FILE_NAME_CHARS} characters")
        return await self._store(settings, connection_id, client, part, uploaded_by)

    async def _store(
        self,
        settings: AzureStorageSettings,
        connection_id: str,
        client: str,
        part: BodyPartReader,
        uploaded_by: str | None,
    ) -> web.StreamResponse:
        name = part.filename or ""
        now = datetime.now(UTC)
        row: Row = {
            "id": "doc_" + secrets.token_hex(12),
            "connection_id": connection_id,
            "client": client,
            "name": name,
            "container": settings.container,
            "blob_name": blob_name(settings.org, client, now, name),
            "uploaded_at": now.isoformat(),
            "uploaded_by": uploaded_by,
        }
        blocks = upload.read_blocks(_reader(part), settings.block_size, settings.max_upload_bytes)
        try:
            await ensure_container(settings, self.hub)
            async with container(settings, self.hub) as storage:
                stored = await upload.store(
                    storage.get_blob_client(row["blob_name"]),
                    blocks,
                    metadata={"document_id": row["id"], "client": client},
                    declared_type=part.headers.get("Content-Type"),
                    name=name,
                    concurrency=settings.transfer_concurrency,
                )
        except upload.UploadTooLarge as exc:
            return _error(413, str(exc))
        except (upload.EmptyUpload, upload.MalformedBody) as exc:
            return _error(400, str(exc))
        except Exception as exc:
            if not _is_sdk_error(exc):
                raise
            return _storage_failure(exc)
        row.update(
            size=stored.size,
            sha256=stored.sha256,
            etag=stored.etag,
            content_type=stored.content_type,
            state="ok",
        )
        await tables.save(self.hub, row)
        await webhooks.emit_uploaded(self.hub, row)
        saved = await tables.get(self.hub, connection_id, row["id"])
        return _json(tables.public(saved or row), 201)

    # ------------------------------------------------------------------ reading

    async def list(self, request: web.Request) -> web.StreamResponse:
        """``GET /api/documents[?client=…][&limit=…]``: the documents, newest first."""
        _, connection_id = await self._context()
        client = request.query.get("client")
        if client is not None:
            _client_reference(client)
        try:
            limit = int(request.query.get("limit", "100"))
        except ValueError:
            limit = 0
        if not 1 <= limit <= MAX_LIST:
            return _error(400, f"limit must be 1-{MAX_LIST}")
        rows = await tables.list_documents(self.hub, connection_id, client, limit)
        return _json({"documents": [tables.public(row) for row in rows]})

    async def metadata(self, request: web.Request) -> web.StreamResponse:
        """``GET /api/documents/{id}``: the document's record."""
        _, row = await self._document(request)
        return _json(tables.public(row))

    async def content(self, request: web.Request) -> web.StreamResponse:
        """``GET /api/documents/{id}/content``: the bytes, checksum verified while streaming."""
        settings, row = await self._document(request)

        async def mark(state: str, problem: str) -> None:
            await tables.update(self.hub, row["id"], {"state": state, "problem": problem})

        async def corrupt(problem: str) -> None:
            await mark("corrupt", problem)

        async with container(settings, self.hub, row["container"]) as storage:
            blob = storage.get_blob_client(row["blob_name"])
            try:
                properties = await blob.get_blob_properties()
            except Exception as exc:
                error = storage_error(exc) if _is_sdk_error(exc) else None
                if error is None:
                    raise
                if error.status == 404:
                    await mark("missing", "the blob is missing")
                    return _error(409, "the document's blob is missing: POST /api/documents/repair")
                return _storage_failure(exc)
            if properties.size != row["size"]:
                await corrupt(f"the blob has {properties.size} bytes, not {row['size']}")
                return _error(409, "the document's blob changed size: it is marked corrupt")
            blocks = download.ranges(
                blob,
                row["size"],
                str(properties.etag),
                settings.block_size,
                settings.transfer_concurrency,
            )
            async with contextlib.aclosing(blocks):
                return await download.stream(request, row, blocks, corrupt)

    async def link(self, request: web.Request) -> web.StreamResponse:
        """``GET /api/documents/{id}/link[?minutes=N]``: a read-only SAS URL and its expiry."""
        settings, row = await self._document(request)
        try:
            minutes = int(request.query.get("minutes", settings.sas_minutes))
        except ValueError:
            minutes = 0
        if minutes < 1:
            return _error(400, "minutes must be a positive whole number")
        expires_at = links.expiry(min(minutes, settings.sas_max_minutes))
        try:
            async with service(settings, self.hub) as client:
                url = await links.read_link(client, row["container"], row["blob_name"], expires_at)
        except Exception as exc:
            if not _is_sdk_error(exc):
                raise
            return _storage_failure(exc)
        return _json({"url": url, "expires_at": expires_at.isoformat()})

    # ------------------------------------------------------------------ changes

    async def delete(self, request: web.Request) -> web.StreamResponse:
        """``DELETE /api/documents/{id}``: delete the blob (if still there) and the record."""
        from azure.core.exceptions import ResourceNotFoundError

        settings, row = await self._document(request)
        try:
            async with container(settings, self.hub, row["container"]) as storage:
                await storage.get_blob_client(row["blob_name"]).delete_blob()
        except ResourceNotFoundError:
            pass  # already gone: forgetting the record is all that is left
        except Exception as exc:
            if not _is_sdk_error(exc):
                raise
            return _storage_failure(exc)
        await tables.delete(self.hub, row["id"])
        return _json({"deleted": row["id"]})

    async def repair(self, request: web.Request) -> web.StreamResponse:
        """``POST /api/documents/repair``: check every document now; the report."""
        settings, connection_id = await self._context()
        try:
            report = await repair(self.hub, settings, connection_id)
        except Exception as exc:
            if not _is_sdk_error(exc):
                raise
            return _storage_failure(exc)
        return _json(report)


async def _client_and_file(request: web.Request) -> tuple[str, BodyPartReader]:
    """The client reference (the ``client`` field, else ``?client=``) and the ``file`` part.

    :raise upload.MalformedBody: not well-formed multipart.
    :raise web.HTTPBadRequest: no file part, another field, or a bad client reference.
    """
    client = request.query.get("client")
    try:
        reader = await request.multipart()
        while True:
            part = await reader.next()
            if not isinstance(part, BodyPartReader):
                raise web.HTTPBadRequest(text="no file part: send the field file (after client)")
            if part.name == "client" and part.filename is None:
                text = (await part.read_chunk(MAX_FIELD_BYTES)).decode("utf-8", "replace")
                client = _client_reference(text.strip())
            elif part.name == "file":
                return _client_reference(client), part
            else:
                raise web.HTTPBadRequest(text=f"unexpected field {part.name!r}: send client, file")
    except (HttpProcessingError, ValueError, AssertionError) as exc:
        raise upload.MalformedBody(f"malformed multipart body: {type(exc).__name__}") from None


def _reader(part: BodyPartReader) -> Callable[[int], Awaitable[bytes]]:
    """``part.read_chunk``, its parsing errors raised as :class:`upload.MalformedBody`."""

    async def read(size: int) -> bytes:
        try:
            return await part.read_chunk(size)
        except (HttpProcessingError, ValueError, AssertionError) as exc:
            raise upload.MalformedBody(f"malformed multipart body: {type(exc).__name__}") from None

    return read


def _is_sdk_error(exc: BaseException) -> bool:
    """Whether ``exc`` is a storage failure (the SDK's, or a network error under it)."""
    from azure.core.exceptions import AzureError

    return isinstance(exc, AzureError | ProviderError | OSError | TimeoutError)
