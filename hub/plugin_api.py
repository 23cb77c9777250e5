"""The object hooks receive as ``hub``: the :class:`~hub.api.HubAPI` members of a Hub, only.

Plugins are handed this facade rather than the :class:`~hub.core.Hub` itself, so reaching
past the API (``hub.store``, ``hub.engine``, ``hub.health``) is an ``AttributeError`` at the
first call instead of a dependency that breaks silently when the core changes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from aiohttp import web

from hub.api import (
    BatchCounts,
    ClientsRegistry,
    HttpClient,
    HubAPI,
    PluginTables,
)
from hub.model import (
    Connection,
    ConnectionStatus,
    HealthReport,
    HubEvent,
    IntegrationSettings,
    KeyFigures,
    StoredDocument,
)

if TYPE_CHECKING:
    from hub.core import Hub


class PluginAPI(HubAPI):
    """A Hub seen through :class:`~hub.api.HubAPI` (each member delegates to the Hub)."""

    def __init__(self, hub: Hub) -> None:
        self.__hub = hub

    def __repr__(self) -> str:
        return "<advisoros-hub plugin API>"

    def settings_for(self, integration: str) -> IntegrationSettings | None:
        return self.__hub.settings_for(integration)

    def streams_for(self, integration: str) -> list[str]:
        return self.__hub.streams_for(integration)

    async def connections(self, integration: str | None = None) -> list[Connection]:
        return await self.__hub.connections(integration)

    async def connection(self, connection_id: str) -> Connection:
        return await self.__hub.connection(connection_id)

    async def find_connections(self, integration: str, wanted: str | None) -> list[Connection]:
        return await self.__hub.find_connections(integration, wanted)

    async def add_connection(
        self, integration: str, key: str, title: str, credentials: dict[str, Any], origin: str
    ) -> Connection:
        return await self.__hub.add_connection(integration, key, title, credentials, origin)

    async def remove_connection(self, connection_id: str) -> bool:
        return await self.__hub.remove_connection(connection_id)

    def connection_state(self, connection_id: str) -> ConnectionStatus:
        return self.__hub.connection_state(connection_id)

    async def save_credentials(self, connection: Connection, credentials: dict[str, Any]) -> None:
        await self.__hub.save_credentials(connection, credentials)

    async def reload_credentials(self, connection: Connection) -> Connection:
        return await self.__hub.reload_credentials(connection)

    async def authenticate(self, connection: Connection) -> Connection:
        return await self.__hub.authenticate(connection)

    def single_flight(self, key: str) -> asyncio.Lock:
        return self.__hub.single_flight(key)

    @property
    def http(self) -> HttpClient:
        return self.__hub.http

    @property
    def clients(self) -> ClientsRegistry:
        return _ClientsReader(self.__hub.clients)

    async def write_records(
        self,
        connection: Connection,
        stream: str,
        records: Sequence[dict[str, Any]],
        deleted: Sequence[str] = (),
    ) -> BatchCounts:
        return await self.__hub.write_records(connection, stream, records, deleted)

    def tables(self, plugin: str | object) -> PluginTables:
        return self.__hub.tables(plugin)

    async def emit(self, type: str, data: dict[str, Any], source: str = "hub") -> HubEvent:
        return await self.__hub.emit(type, data, source)

    async def read_document(self, document_id: str, max_bytes: int) -> StoredDocument | None:
        return await self.__hub.read_document(document_id, max_bytes)

    async def request_sync(
        self, connection: Connection, streams: Sequence[str] | None = None, full: bool = False
    ) -> int:
        return await self.__hub.request_sync(connection, streams, full)

    async def check_health(self, connection: Connection) -> HealthReport:
        return await self.__hub.check_health(connection)

    async def key_figures(
        self, connection_id: str | None = None, client_id: int | None = None
    ) -> list[KeyFigures]:
        return await self.__hub.key_figures(connection_id, client_id)

    def require_admin(self, request: web.Request) -> str:
        return self.__hub.require_admin(request)

    @property
    def public_url(self) -> str:
        return self.__hub.public_url


class _ClientsReader(ClientsRegistry):
    """The clients registry's reads only: linking and matching stay the engine's."""

    def __init__(self, registry: ClientsRegistry) -> None:
        self.__registry = registry

    async def client_of(self, integration: str, connection_id: str, provider_id: str) -> int | None:
        return await self.__registry.client_of(integration, connection_id, provider_id)

    async def list(self) -> list[dict[str, Any]]:
        return await self.__registry.list()
