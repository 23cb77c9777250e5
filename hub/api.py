"""The plugin API: everything a plugin may use of the hub, as one typed protocol.

Hooks receive ``hub`` as a :class:`HubAPI`. Plugins import from the hub only :mod:`hub`,
:mod:`hub.api`, :mod:`hub.model`, :mod:`hub.errors` and :mod:`hub.testing` (a contract test
keeps it so); the types the API's members take and return are re-exported here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Protocol

from aiohttp import web

from hub.http import HttpClient, Response, RetryPolicy
from hub.model import (
    Connection,
    ConnectionStatus,
    ErrorInfo,
    HealthReport,
    HubEvent,
    IntegrationSettings,
    KeyFigures,
    RunProgress,
    StoredDocument,
)
from hub.store.plugin_tables import Key, Params, PluginTables, Row, TableSession, Value
from hub.store.records import BatchCounts

__all__ = [
    "BatchCounts",
    "ClientsRegistry",
    "ConnectionStatus",
    "ErrorInfo",
    "HttpClient",
    "HubAPI",
    "Key",
    "KeyFigures",
    "Params",
    "PluginTables",
    "Response",
    "RetryPolicy",
    "Row",
    "RunProgress",
    "StoredDocument",
    "TableSession",
    "Value",
]


class ClientsRegistry(Protocol):
    """The firm's clients, each linked to the provider records that stand for it, to read.

    The hub fills it: the records of a stream that declares
    :class:`~hub.model.ClientFields` are matched as they are stored.
    """

    async def client_of(self, integration: str, connection_id: str, provider_id: str) -> int | None:
        """The id of the client a provider record is linked to, or None (not linked)."""
        ...

    async def list(self) -> list[dict[str, Any]]:
        """Every client (``id``, ``name``, ``email``, ``created_at``, ``tax_ids``) with its
        ``links`` (``integration``, ``connection_id``, ``provider_id``, ``matched_by``)."""
        ...


class HubAPI(Protocol):
    """The hub as every hook receives it (``hub``)."""

    # ------------------------------------------------------------------ settings

    def settings_for(self, integration: str) -> IntegrationSettings | None:
        """The validated settings of ``integration``, or None if it is not configured.

        Per-integration hooks receive their own as ``settings``; this is for other code
        (routes, background tasks).
        """
        ...

    def streams_for(self, integration: str) -> list[str]:
        """The streams a sync of ``integration`` reads: the configured ``streams`` subset,
        else every stream its ``register`` declares."""
        ...

    # ------------------------------------------------------------------ connections

    async def connections(self, integration: str | None = None) -> list[Connection]:
        """Every connection whose plugin is loaded (of one integration, if given)."""
        ...

    async def connection(self, connection_id: str) -> Connection:
        """The connection ``connection_id``.

        :raise LookupError: no such connection (or its plugin is not loaded).
        """
        ...

    async def find_connections(self, integration: str, wanted: str | None) -> list[Connection]:
        """The integration's connections, or only the one whose id or provider key is
        ``wanted``."""
        ...

    async def add_connection(
        self, integration: str, key: str, title: str, credentials: dict[str, Any], origin: str
    ) -> Connection:
        """Create or update the connection (``integration``, provider ``key``) with encrypted
        ``credentials`` (after an OAuth flow, say); it is scheduled at once.

        :param origin: how it came (``oauth``, ``config``), shown on the admin page.
        """
        ...

    async def remove_connection(self, connection_id: str) -> bool:
        """Delete a connection (its records stay), resolve its alerts, stop its schedule.

        :return: True if it existed.
        """
        ...

    def connection_state(self, connection_id: str) -> ConnectionStatus:
        """The connection's state now (a frozen copy, read from memory): health and checks,
        schedule and next run, the running sync and its progress, last success, last error
        with its advice, consecutive failures and backoff, needs-reauthentication, and
        ``proven_by_sync`` (a ``health`` hook need not probe again what a recent sync proved).
        """
        ...

    # ------------------------------------------------------------------ credentials

    async def save_credentials(self, connection: Connection, credentials: dict[str, Any]) -> None:
        """Persist new credentials (a rotated token) encrypted, and update ``connection``."""
        ...

    async def reload_credentials(self, connection: Connection) -> Connection:
        """Re-read ``connection``'s stored credentials into it (another caller may have
        refreshed them) and return it."""
        ...

    async def authenticate(self, connection: Connection) -> Connection:
        """Run the integration's ``authenticate`` hook; return the ready connection.

        :raise hub.errors.AuthenticationError: the connection needs re-authentication.
        """
        ...

    def single_flight(self, key: str) -> asyncio.Lock:
        """The lock for ``key``: hold it around a token refresh so only one runs at a time."""
        ...

    # ------------------------------------------------------------------ work

    @property
    def http(self) -> HttpClient:
        """The shared HTTP client: one session, retries with backoff, per-key rate limits."""
        ...

    @property
    def clients(self) -> ClientsRegistry:
        """The clients registry, to read (which client a provider record belongs to)."""
        ...

    async def write_records(
        self,
        connection: Connection,
        stream: str,
        records: Sequence[dict[str, Any]],
        deleted: Sequence[str] = (),
    ) -> BatchCounts:
        """Upsert ``records`` and tombstone ``deleted`` ids of one stream outside a sync (a
        webhook's re-fetch), in one transaction, through the same upsert as synced batches
        (records of a stream with ``client`` fields are matched to the clients registry in it,
        and ``clients.matched`` follows). Cursors are untouched; a full sync of the stream in
        progress counts them as seen.

        :raise KeyError: the integration declares no such stream.
        """
        ...

    def tables(self, plugin: str | object) -> PluginTables:
        """The calling plugin's own tables, declared by its ``migrations`` hook: ``get``,
        ``query``, ``upsert``, ``delete`` and ``transaction``; each write is one transaction
        on the store's writer thread, in the plugin's namespace only.

        :param plugin: ``__name__`` of any module of the plugin (or, for a plugin registered
            as an object, that object). Namespaces keep plugins apart by name, not by
            security: plugins are trusted code in the hub's process, and another plugin's
            module name gives that plugin's tables.
        :raise LookupError: no loaded plugin is or contains ``plugin``.
        """
        ...

    async def emit(self, type: str, data: dict[str, Any], source: str = "hub") -> HubEvent:
        """Publish a hub event to every ``event`` hook and matching outbound subscription."""
        ...

    async def read_document(self, document_id: str, max_bytes: int) -> StoredDocument | None:
        """A stored client document (the ``read_document`` hook of the plugin that stores
        it), its content read only if it has at most ``max_bytes``; None if no plugin knows
        the id.

        :raise hub.errors.ProviderError: the content cannot be read (the reason says why).
        """
        ...

    async def request_sync(
        self, connection: Connection, streams: Sequence[str] | None = None, full: bool = False
    ) -> int:
        """Start a sync of ``connection`` in the background through the engine.

        :param streams: only these streams (default: :meth:`streams_for`).
        :param full: re-read everything and tombstone what disappeared.
        :return: the run id (``GET /api/runs/{id}``).
        :raise hub.errors.SyncBusyError: the connection is already syncing.
        """
        ...

    async def check_health(self, connection: Connection) -> HealthReport:
        """Run the connection's health check now and record the result (status, alerts)."""
        ...

    async def key_figures(
        self, connection_id: str | None = None, client_id: int | None = None
    ) -> list[KeyFigures]:
        """The financial key figures of every connection whose plugin computes them (its
        ``key_figures`` hook), newest first: of one connection, or of those whose books are
        the given client's. A plugin that fails or has none yet is left out (logged).
        """
        ...

    # ------------------------------------------------------------------ routes

    def require_admin(self, request: web.Request) -> str:
        """Check the admin token or session of a request to a plugin route outside ``/api``
        and ``/admin`` (those are checked already).

        :return: an opaque, stable id of the admin credential presented (a digest, never
            the credential): bind a multi-step flow to the session that started it.
        :raise aiohttp.web.HTTPUnauthorized: no valid credential (a JSON ``{"error": …}``).
        :raise aiohttp.web.HTTPTooManyRequests: a token from a client address that failed
            too often lately (JSON, with ``Retry-After``).
        """
        ...

    @property
    def public_url(self) -> str:
        """The hub's base URL as browsers and providers reach it, without a trailing slash:
        ``server.public_url`` (``https://hub.example.com``), else the listening address over
        http (``http://127.0.0.1:8700``). Build OAuth callbacks and links from it, never from
        a request's ``Host`` header, which the client chooses; it starts with ``https://``
        when the hub is reached over TLS (mark cookies ``Secure`` then).
        """
        ...
