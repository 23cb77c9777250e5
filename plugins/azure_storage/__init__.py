"""Azure Blob Storage: the firm's client documents, stored as blobs and recorded in the hub.

Only hook implementations live here: the settings are in ``settings.py``, the SDK client in
``client.py``, the documents API in ``routes.py`` (streaming ``upload.py``, verified
``download.py``, SAS ``links.py``, blob ``naming.py``, content ``sniff.py``), other plugins'
read path in ``reading.py``, the plugin's tables in ``tables.py``, the repair pass in
``sync.py``, the ``document.*`` events in ``webhooks.py``, health and diagnostics in
``health.py``, and Azurite (the local emulator) in ``sandbox.py``. The SDK
(``azure-storage-blob``) is imported when the integration is used.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AsyncExitStack
from typing import Any

from aiohttp import web

from hub import hookimpl
from hub.api import HubAPI
from hub.errors import AuthenticationError
from hub.model import (
    Connection,
    ConnectionSpec,
    HealthReport,
    HubEvent,
    Integration,
    IntegrationSettings,
    Migration,
    StoredDocument,
)

from . import health as checks
from . import reading, tables, webhooks
from .client import account_name
from .routes import DocumentRoutes
from .settings import NAME, AzureStorageSettings
from .sync import stop_background


def _settings(settings: IntegrationSettings | None) -> AzureStorageSettings:
    if not isinstance(settings, AzureStorageSettings):
        raise AuthenticationError("Azure Storage is not configured: [integrations.azure_storage]")
    return settings


@hookimpl
def register() -> Integration:
    """Declare Azure Blob Storage: its settings; no streams (documents live in its tables)."""
    return Integration(
        name=NAME,
        title="Azure Blob Storage",
        settings=AzureStorageSettings,
        default_sync_interval=None,
        secret_fields=frozenset({"connection_string", "account_key"}),
        events_when_configured=True,
    )


@hookimpl
def migrations() -> Sequence[Migration]:
    """The documents table and the last repair report (``tables.py``)."""
    return tables.MIGRATIONS


@hookimpl
def configure(settings: IntegrationSettings | None) -> list[ConnectionSpec]:
    """One connection: the configured storage account and container."""
    storage = _settings(settings)
    account = account_name(storage)
    return [ConnectionSpec(key=account, title=f"{account}/{storage.container}")]


@hookimpl
def routes(hub: HubAPI) -> list[web.RouteDef]:
    """``/api/documents``: upload, list, metadata, content, delete, link, repair."""
    return DocumentRoutes(hub).routes()


@hookimpl
async def health(
    connection: Connection, settings: IntegrationSettings | None, hub: HubAPI
) -> HealthReport:
    """Container reachable, write permission, soft delete, versioning, documents intact."""
    return await checks.diagnose(connection, _settings(settings), hub)


@hookimpl
async def diagnostics(
    connection: Connection, settings: IntegrationSettings | None, hub: HubAPI
) -> dict[str, Any]:
    """The account's facts (reachable, writable, protections) and the last repair report."""
    return await checks.dump(connection, _settings(settings), hub)


@hookimpl
async def read_document(document_id: str, max_bytes: int, hub: HubAPI) -> StoredDocument | None:
    """A stored document for another plugin (analysis), its content checked (``reading.py``)."""
    return await reading.read_document(hub, document_id, max_bytes)


@hookimpl
async def event(event: HubEvent, hub: HubAPI) -> None:
    """Record ``document.analyzed`` / ``document.analysis_failed`` on the document."""
    await webhooks.on_event(hub, event)


@hookimpl
async def shutdown() -> None:
    """Stop background repair passes."""
    await stop_background()


@hookimpl
async def demo(stack: AsyncExitStack) -> dict[str, dict[str, Any]] | None:
    """Start Azurite (when installed) and store the demo's documents in it."""
    from .sandbox import demo_settings

    return await demo_settings(stack)
