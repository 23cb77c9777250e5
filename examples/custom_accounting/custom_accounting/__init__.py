"""Example third-party plugin for advisoros-hub: the "Ledger" bearer-token accounting API.

Only hook implementations live here; the settings are in ``settings.py``, the API calls in
``client.py``, the paging in ``sync.py``, the signature check and the processing of webhook
events in ``webhooks.py``, health and diagnostics in ``health.py``, the plugin's own table in
``tables.py`` and a local fake of the API in ``sandbox.py``. ``advisoros-hub new-plugin NAME``
writes a new package in this shape.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack
from typing import Any

from aiohttp import web

from hub import hookimpl
from hub.api import HubAPI
from hub.errors import AuthenticationError
from hub.model import (
    Batch,
    Connection,
    ConnectionSpec,
    HealthReport,
    HubEvent,
    Integration,
    IntegrationSettings,
    Migration,
    WebhookEvent,
)

from . import health as checks
from . import tables, webhooks
from .client import client_for
from .settings import NAME, LedgerSettings
from .sync import STREAMS, sync_streams

__version__ = "1.0.0"


def _settings(settings: IntegrationSettings | None) -> LedgerSettings:
    if not isinstance(settings, LedgerSettings):
        raise AuthenticationError("Ledger is not configured: set [integrations.custom_accounting]")
    return settings


@hookimpl
def register() -> Integration:
    """Declare the Ledger integration: its settings, streams and a 15-minute schedule."""
    return Integration(
        name=NAME,
        title="Ledger (example)",
        settings=LedgerSettings,
        streams=STREAMS,
        default_sync_interval=900,
        secret_fields=frozenset({"api_token", "webhook_secret"}),
    )


@hookimpl
def migrations() -> Sequence[Migration]:
    """The plugin's own table of the account each connection reported (``tables.py``)."""
    return tables.MIGRATIONS


@hookimpl
def configure(settings: IntegrationSettings | None) -> list[ConnectionSpec]:
    """One connection per configured token."""
    ledger = _settings(settings)
    return [
        ConnectionSpec(
            key=ledger.account,
            title=f"Ledger {ledger.account}",
            credentials={"api_token": ledger.api_token.get_secret_value()},
        )
    ]


@hookimpl
def authenticate(connection: Connection) -> Connection:
    """A bearer token needs no refresh; a missing one means re-authentication."""
    if not connection.credentials.get("api_token"):
        raise AuthenticationError("no API token stored for this connection")
    return connection


@hookimpl
def sync(
    connection: Connection,
    streams: Sequence[str],
    cursors: dict[str, Any],
    settings: IntegrationSettings | None,
    hub: HubAPI,
) -> AsyncIterator[Batch]:
    """Page through each stream from its cursor (absent cursor: from the beginning)."""
    ledger = _settings(settings)
    client = client_for(connection, ledger, hub)
    return sync_streams(client, streams, cursors, ledger.page_size)


@hookimpl
async def health(
    connection: Connection, settings: IntegrationSettings | None, hub: HubAPI
) -> HealthReport:
    """Token present, token accepted and API reachable (``GET /v1/me``)."""
    return await checks.check(connection, _settings(settings), hub)


@hookimpl
async def diagnostics(
    connection: Connection, settings: IntegrationSettings | None, hub: HubAPI
) -> dict[str, Any]:
    """Token present, API reachable, last error and the rate-limit budget."""
    return await checks.dump(connection, _settings(settings), hub)


@hookimpl
def webhook(
    request: web.Request, body: bytes, settings: IntegrationSettings | None
) -> list[WebhookEvent]:
    """Verify ``X-Ledger-Signature`` and parse the event list."""
    ledger = settings if isinstance(settings, LedgerSettings) else None
    return webhooks.parse(body, request.headers.get(webhooks.SIGNATURE_HEADER), ledger)


@hookimpl
async def process(event: HubEvent, settings: IntegrationSettings | None, hub: HubAPI) -> None:
    """Handle one event: re-fetch or tombstone the record, emit ``<integration>.<stream>.<op>``."""
    await webhooks.process(event, _settings(settings), hub)


@hookimpl
async def demo(stack: AsyncExitStack) -> dict[str, dict[str, Any]]:
    """Start a small sandbox for ``advisoros-hub demo`` and point the integration at it."""
    from .sandbox import SandboxConfig, start_sandbox

    sandbox = await start_sandbox(SandboxConfig(accounts=25, transactions=5000))
    stack.push_async_callback(sandbox.close)
    return {NAME: {"base_url": sandbox.base_url, "api_token": sandbox.config.token}}
