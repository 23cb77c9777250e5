"""The Hub: configuration, plugins, store, HTTP client, sync engine and health in one object.

It implements :class:`hub.api.HubAPI`; hooks receive it through the :class:`PluginAPI`
facade (``Hub.api``), which exposes those members only.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from typing import Any

import structlog
from aiohttp import web

from hub.api import ClientsRegistry, HubAPI
from hub.config import HubSettings, is_disabled, validate_integration
from hub.connection_state import ConnectionStates
from hub.errors import ConfigError, PluginContractError
from hub.events import EventBus
from hub.health import HealthMonitor
from hub.http import HttpClient
from hub.key_figures import gather_key_figures
from hub.logs import add_secret_keys
from hub.metrics import Metrics
from hub.model import (
    Connection,
    ConnectionSpec,
    ConnectionStatus,
    HealthReport,
    HubEvent,
    IntegrationSettings,
    KeyFigures,
    StoredDocument,
)
from hub.plugin_api import PluginAPI
from hub.plugins import DEFAULT_PLUGINS, HubPlugins
from hub.record_writes import RecordWriter
from hub.schedule import Scheduler, trigger_for
from hub.store import ConnectionRow, Store
from hub.store.plugin_tables import PluginTables
from hub.store.records import BatchCounts
from hub.sync import SyncEngine, SyncResult
from hub.tables import migrate_plugins, namespace_of
from hub.tuning import tune_gc, tune_malloc, tune_switch_interval
from hub.webhooks.dispatcher import Dispatcher
from hub.webhooks.ingest import Admission, GroupCommitter
from hub.webhooks.outbound import Outbound

log = structlog.get_logger("hub")


class Hub:
    """One running hub. Build with settings, then ``load_plugins()`` and ``await start()``."""

    def __init__(self, settings: HubSettings, builtins: Iterable[str] = DEFAULT_PLUGINS) -> None:
        self.settings = settings
        self._disabled: dict[str, bool] = {}
        self.plugins = HubPlugins()
        self.api = PluginAPI(self)
        """What hooks receive as ``hub``."""
        self.plugins.bind(self.api, self.settings_for, core=self)
        self.metrics = Metrics()
        self.http = HttpClient()
        self.integration_settings: dict[str, IntegrationSettings | None] = {}
        self._builtins = tuple(builtins)
        self._store: Store | None = None
        self._engine: SyncEngine | None = None
        self.states = ConnectionStates()
        """Every connection's state (the engine, health checks and webhook handling write it)."""
        self.health = HealthMonitor(self)
        self.events = EventBus(self)
        self.dispatcher = Dispatcher(self)
        self.outbound = Outbound(self)
        self._ingest: GroupCommitter | None = None
        self.scheduler: Scheduler | None = None
        """The daemon's scheduler while it runs (None in one-off commands and tests)."""
        self._plugins_started = False
        self._records = RecordWriter()
        self._flights: dict[str, asyncio.Lock] = {}
        self.started_at = time.time()
        self.loaded = False

    # ------------------------------------------------------------------ lifecycle

    def load_plugins(self) -> None:
        """Load plugins and validate every ``[integrations.*]`` section with its plugin's model.

        :raise ConfigError: one line per problem, naming the key.
        """
        if self.loaded:
            return
        self.plugins.load(self.settings.plugins, self._builtins)
        self.validate_integrations()
        self.loaded = True

    def validate_integrations(self) -> None:
        """(Re)validate integration settings against the loaded plugins' models."""
        problems: list[str] = []
        skipped = {info.name for info in self.plugins.failed} | set(self.settings.plugins.deny)
        for name in self.settings.integrations:
            if name not in self.plugins.integrations and name not in skipped:
                problems.append(f"configuration: integrations.{name}: no loaded plugin provides it")
        for name, integration in self.plugins.integrations.items():
            add_secret_keys(integration.secret_fields)
            try:
                settings = validate_integration(self.settings, name, integration.settings)
                self.integration_settings[name] = settings
                interval = getattr(settings, "sync_interval", None)
                if interval is not None:
                    trigger_for(interval)
            except ConfigError as exc:
                message = str(exc)
                if not message.startswith("configuration:"):
                    message = f"configuration: integrations.{name}.sync_interval: {message}"
                problems.append(message)
        if problems:
            raise ConfigError("\n".join(problems))

    async def start(self, deliver: bool = True) -> None:
        """Open the store, create configured connections and run ``startup`` hooks.

        :param deliver: run the dispatcher here. One-off commands (``sync``, ``check``) pass
            False: what they emit is stored and the daemon delivers it.
        """
        self._open_store()
        self._engine = SyncEngine(self, self.settings.sync.max_concurrent)
        try:
            await self._open(deliver)
        except BaseException:
            await self.stop()
            raise

    def _open_store(self) -> None:
        self.load_plugins()
        tune_malloc()
        tune_gc()
        tune_switch_interval()
        secret = self.settings.secret_key.get_secret_value() if self.settings.secret_key else None
        store = self.settings.store
        self._store = Store(store.path, secret, store.synchronous)

    async def _open(self, deliver: bool) -> None:
        await migrate_plugins(self.plugins, self.store.db)
        interrupted = await self.store.runs.mark_interrupted()
        if interrupted:
            log.warning("syncs interrupted by a crash will resume", runs=interrupted)
        for name, settings in self.integration_settings.items():
            if settings is not None and self.plugins.has_owner_hook(name, "configure"):
                await self._configure(name)
        await self.states.load(self.store)
        webhooks = self.settings.webhooks
        self._ingest = GroupCommitter(
            self.store.db, Admission(webhooks.queue_max_requests, webhooks.queue_max_bytes)
        )
        await self.dispatcher.start(deliver)
        self._plugins_started = True
        await self.plugins.broadcast("startup")

    async def _configure(self, name: str) -> None:
        try:
            specs = await self.plugins.call_owner(name, "configure")
        except Exception:
            log.exception("configure hook raised", integration=name)
            return
        for spec in specs or ():
            if not isinstance(spec, ConnectionSpec):
                log.error("configure returned a non-ConnectionSpec", integration=name)
                continue
            await self.store.connections.upsert(
                name, spec.key, spec.title, dict(spec.credentials), origin="config"
            )

    async def stop(self) -> None:
        """Finish or cancel syncs, run ``shutdown`` hooks, close the HTTP client and the store."""
        if self._engine is not None:
            await self._engine.stop(self.settings.server.shutdown_timeout)
        await self.dispatcher.stop()
        await self.outbound.close()
        if self._plugins_started:
            self._plugins_started = False
            await self.plugins.broadcast("shutdown")
        await self.http.close()
        if self._store is not None:
            self._store.close()
            self._store = None

    @property
    def store(self) -> Store:
        """The open store (after :meth:`start`)."""
        if self._store is None:
            raise RuntimeError("the hub is not started")
        return self._store

    @property
    def ingest(self) -> GroupCommitter:
        """The webhook group committer (after :meth:`start`)."""
        if self._ingest is None:
            raise RuntimeError("the hub is not started")
        return self._ingest

    @property
    def engine(self) -> SyncEngine:
        """The sync engine (after :meth:`start`)."""
        if self._engine is None:
            raise RuntimeError("the hub is not started")
        return self._engine

    # ------------------------------------------------------------------ for plugins

    def settings_for(self, integration: str) -> IntegrationSettings | None:
        """The validated settings of an integration, or None if it is not configured."""
        return self.integration_settings.get(integration)

    def disabled(self, integration: str) -> bool:
        """True if the configuration keeps ``integration`` off (``enabled = false``): its
        connections are not synced, checked or sent webhooks."""
        disabled = self._disabled.get(integration)
        if disabled is None:  # the settings never change: ask once (webhooks ask per request)
            disabled = self._disabled[integration] = is_disabled(self.settings, integration)
        return disabled

    def streams_for(self, integration: str) -> list[str]:
        """The streams to sync: the configured ``streams`` subset, else all the plugin declares."""
        declared = [s.name for s in self.plugins.integrations[integration].streams]
        chosen = getattr(self.settings_for(integration), "streams", None)
        return [s for s in declared if s in chosen] if chosen else declared

    def _connection(self, row: ConnectionRow) -> Connection:
        settings = self.settings_for(row.integration)
        if settings is None:
            settings = self.plugins.integrations[row.integration].settings.model_construct()
        return Connection(
            id=row.id,
            integration=row.integration,
            key=row.key,
            title=row.title,
            credentials=dict(row.credentials),
            settings=settings,
            created_at=row.created_at,
        )

    async def connection(self, connection_id: str) -> Connection:
        """A connection by id; LookupError if none (or its plugin is not loaded)."""
        row = await self.store.connections.get(connection_id)
        if row is None or row.integration not in self.plugins.integrations:
            raise LookupError(f"no connection {connection_id!r}")
        return self._connection(row)

    async def connections(self, integration: str | None = None) -> list[Connection]:
        """Every connection whose plugin is loaded (of one integration, if given)."""
        rows = await self.store.connections.list(integration)
        return [self._connection(r) for r in rows if r.integration in self.plugins.integrations]

    async def find_connections(self, integration: str, wanted: str | None) -> list[Connection]:
        """The integration's connections, or the one whose id or provider key is ``wanted``."""
        return [c for c in await self.connections(integration) if wanted in (None, c.id, c.key)]

    async def add_connection(
        self, integration: str, key: str, title: str, credentials: dict[str, Any], origin: str
    ) -> Connection:
        """Create or update the connection (integration, key), e.g. after an OAuth flow."""
        row = await self.store.connections.upsert(integration, key, title, credentials, origin)
        log.info("connection saved", integration=integration, connection=row.id, origin=origin)
        self.states.get(row.id).reconnected()
        if self.scheduler is not None:
            self.scheduler.add_sync_job(row.id, integration)
        return self._connection(row)

    async def remove_connection(self, connection_id: str) -> bool:
        """Delete a connection (its records stay), resolve its alerts, stop its schedule.

        :return: True if it existed.
        """
        removed = await self.store.connections.delete(connection_id)
        if self.scheduler is not None:
            self.scheduler.remove_sync_job(connection_id)
        self.states.forget(connection_id)
        if removed:
            log.info("connection removed", connection=connection_id)
        return removed

    def connection_state(self, connection_id: str) -> ConnectionStatus:
        """The connection's state now, as a frozen :class:`~hub.model.ConnectionStatus`: health,
        schedule and next run, the running sync and its progress, last success, last error
        with its advice, consecutive failures and backoff, needs-reauthentication. A read of
        memory, cheap enough for every request or health check."""
        scheduler = self.scheduler
        next_run = scheduler.next_sync_at(connection_id) if scheduler is not None else None
        return self.states.get(connection_id).status(next_run, self.settings.health.interval)

    async def save_credentials(self, connection: Connection, credentials: dict[str, Any]) -> None:
        """Persist new credentials (a rotated token) and update ``connection`` in place."""
        await self.store.connections.save_credentials(connection.id, credentials)
        connection.credentials = dict(credentials)

    async def reload_credentials(self, connection: Connection) -> Connection:
        """Re-read ``connection``'s stored credentials (another caller may have refreshed)."""
        fresh = await self.connection(connection.id)
        connection.credentials = fresh.credentials
        return connection

    async def write_records(
        self,
        connection: Connection,
        stream: str,
        records: Sequence[dict[str, Any]],
        deleted: Sequence[str] = (),
    ) -> BatchCounts:
        """Upsert ``records`` and tombstone ``deleted`` ids of one stream outside a sync (see
        :meth:`hub.record_writes.RecordWriter.write`)."""
        integration = self.plugins.integrations[connection.integration]
        return await self._records.write(
            self.store.db, self.emit, integration, connection, stream, records, deleted
        )

    def tables(self, plugin: str | object) -> PluginTables:
        """The calling plugin's own tables (declared by its ``migrations`` hook).

        :param plugin: ``__name__`` of any module of the plugin (or, for a plugin registered
            as an object, that object): the namespace follows the name it was loaded under.
        :raise LookupError: no loaded plugin is or contains ``plugin``.
        """
        return PluginTables(self.store.db, namespace_of(self.plugins, plugin))

    def single_flight(self, key: str) -> asyncio.Lock:
        """The lock for ``key``: hold it around a token refresh so only one runs at a time."""
        lock = self._flights.get(key)
        if lock is None:
            lock = self._flights[key] = asyncio.Lock()
        return lock

    async def emit(self, type: str, data: dict[str, Any], source: str = "hub") -> HubEvent:
        """Publish a hub event to every ``event`` hook (and outbound subscriptions)."""
        return await self.events.emit(type, data, source)

    async def authenticate(self, connection: Connection) -> Connection:
        """Run the owner's ``authenticate`` hook, if it has one; return the ready connection."""
        if not self.plugins.has_owner_hook(connection.integration, "authenticate"):
            return connection
        result = await self.plugins.call_owner(
            connection.integration, "authenticate", connection=connection
        )
        return result if isinstance(result, Connection) else connection

    @property
    def clients(self) -> ClientsRegistry:
        """The clients registry (after :meth:`start`)."""
        return self.store.clients

    async def read_document(self, document_id: str, max_bytes: int) -> StoredDocument | None:
        """The document from the first ``read_document`` implementer that knows the id."""
        for name in self.plugins.implementers("read_document"):
            found = await self.plugins.call_plugin(
                name, "read_document", document_id=document_id, max_bytes=max_bytes
            )
            if found is None:
                continue
            if not isinstance(found, StoredDocument):
                raise PluginContractError(f"{name}: read_document must return a StoredDocument")
            return found
        return None

    async def request_sync(
        self, connection: Connection, streams: Sequence[str] | None = None, full: bool = False
    ) -> int:
        """Start a sync of ``connection`` in the background; return its run id."""
        return await self.engine.start(connection.id, full=full, trigger="plugin", streams=streams)

    async def check_health(self, connection: Connection) -> HealthReport:
        """Run the connection's health check now and record the result."""
        return await self.health.check(connection.id)

    async def key_figures(
        self, connection_id: str | None = None, client_id: int | None = None
    ) -> list[KeyFigures]:
        """The connections' financial key figures (:func:`hub.key_figures.gather_key_figures`)."""
        return await gather_key_figures(self, connection_id, client_id)

    def require_admin(self, request: web.Request) -> str:
        """The admin credential's digest; a JSON 401 unless the request carries a valid one."""
        from hub.web.policy import require_admin  # the web layer imports the core

        return require_admin(request)

    @property
    def public_url(self) -> str:
        """The hub's base URL: ``server.public_url``, else the listening address."""
        return self.settings.server.base_url

    # ------------------------------------------------------------------ engine callbacks

    async def sync_finished(self, connection: Connection, result: SyncResult) -> None:
        """Called by the engine after every run, its state recorded: emits the hub event."""
        kind = "sync.completed" if result.state == "succeeded" else f"sync.{result.state}"
        await self.emit(
            kind,
            {
                "integration": connection.integration,
                "connection": connection.id,
                "run_id": result.run_id,
                "created": result.created,
                "updated": result.updated,
                "deleted": result.deleted,
                "duration_s": round(result.duration_s, 3),
                "error_class": result.error_class,
            },
        )


_: type[HubAPI] = Hub  # mypy proves that the Hub implements the plugin API
