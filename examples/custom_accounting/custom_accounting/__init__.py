"""Example third-party plugin for advisoros-hub: the "Ledger" bearer-token accounting API.

Only hook implementations live here; the API calls are in ``client.py``, the paging in
``sync.py``, the signature check in ``webhooks.py`` and a local fake of the API in
``sandbox.py``. Copy this package to start your own integration.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack
from typing import Any

from aiohttp import web

from hub import hookimpl
from hub.core import Hub
from hub.errors import AuthenticationError
from hub.model import (
    Batch,
    Connection,
    ConnectionSpec,
    HealthCheck,
    HealthReport,
    HealthStatus,
    Integration,
    IntegrationSettings,
    Migration,
    WebhookEvent,
)

from . import tables, webhooks
from .client import LedgerClient
from .settings import LedgerSettings
from .sync import STREAMS, sync_streams

__version__ = "1.0.0"
NAME = "custom_accounting"


def _client(connection: Connection, hub: Hub) -> LedgerClient:
    settings = connection.settings
    assert isinstance(settings, LedgerSettings)
    token = connection.credentials.get("api_token")
    if not token:
        raise AuthenticationError("no API token stored for this connection")
    return LedgerClient(hub.http, settings.base_url, token, limit_key=connection.id)


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
def configure(settings: IntegrationSettings) -> list[ConnectionSpec]:
    """One connection per configured token."""
    assert isinstance(settings, LedgerSettings)
    return [
        ConnectionSpec(
            key=settings.account,
            title=f"Ledger {settings.account}",
            credentials={"api_token": settings.api_token.get_secret_value()},
        )
    ]


@hookimpl
def authenticate(connection: Connection) -> Connection:
    """A bearer token needs no refresh; a missing one means re-authentication."""
    if not connection.credentials.get("api_token"):
        raise AuthenticationError("no API token stored for this connection")
    return connection


@hookimpl
async def sync(
    connection: Connection, streams: Sequence[str], cursors: dict[str, Any], hub: Hub
) -> AsyncIterator[Batch]:
    """Page through each stream from its cursor (absent cursor: from the beginning)."""
    settings = connection.settings
    assert isinstance(settings, LedgerSettings)
    return sync_streams(_client(connection, hub), streams, cursors, settings.page_size)


@hookimpl
async def health(connection: Connection, hub: Hub) -> HealthReport:
    """Token present, token accepted and API reachable (``GET /v1/me``)."""
    checks = [HealthCheck("token present", bool(connection.credentials.get("api_token")))]
    try:
        me = await _client(connection, hub).me()
    except AuthenticationError as exc:
        checks.append(HealthCheck("token valid", False, str(exc)[:200]))
        return HealthReport(HealthStatus.DISCONNECTED, "the API token was rejected", checks)
    except Exception as exc:
        checks.append(HealthCheck("API reachable", False, str(exc)[:200]))
        return HealthReport(HealthStatus.ERROR, "the Ledger API is not reachable", checks)
    checks += [HealthCheck("token valid", True), HealthCheck("API reachable", True)]
    await tables.remember_account(hub, connection, str(me.get("name", "?")))
    return HealthReport(HealthStatus.HEALTHY, f"account {me.get('name', '?')}", checks)


@hookimpl
def webhook(request: web.Request, body: bytes, hub: Hub) -> list[WebhookEvent]:
    """Verify ``X-Ledger-Signature`` and parse the event list."""
    settings = hub.settings_for(NAME)
    secret = getattr(settings, "webhook_secret", None)
    return webhooks.parse(
        body,
        request.headers.get(webhooks.SIGNATURE_HEADER),
        secret.get_secret_value() if secret else None,
    )


@hookimpl
async def demo(stack: AsyncExitStack) -> dict[str, dict[str, Any]]:
    """Start a small sandbox for ``advisoros-hub demo`` and point the integration at it."""
    from .sandbox import SandboxConfig, start_sandbox

    sandbox = await start_sandbox(SandboxConfig(accounts=25, transactions=5000))
    stack.push_async_callback(sandbox.close)
    return {NAME: {"base_url": sandbox.base_url, "api_token": sandbox.config.token}}
