"""QuickBooks Online: one connection per connected company (realm), kept as an exact copy.

Only hook implementations live here: OAuth and token refresh are in ``oauth.py``, the API
calls in ``client.py``, streams, full reads and change data capture in ``sync.py``, webhook
verification and processing in ``webhooks.py``, health and diagnostics in ``health.py``, the
financial reports in ``reports.py`` (stored in the plugin's tables, ``tables.py``) and their
key figures in ``financials.py``, and a local, wire-compatible fake of Intuit in ``sandbox.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack
from typing import Any

from aiohttp import web

from hub import hookimpl
from hub.api import HubAPI
from hub.model import (
    Batch,
    Connection,
    HealthReport,
    HubEvent,
    Integration,
    IntegrationSettings,
    KeyFigures,
    Migration,
    WebhookEvent,
)

from . import financials, oauth, reports, tables, webhooks
from . import health as checks
from .settings import QuickBooksSettings

NAME = oauth.NAME


@hookimpl
def register() -> Integration:
    """Declare QuickBooks Online: settings, the entity streams, ``preferences`` and
    ``reports``, an hourly CDC sync."""
    return Integration(
        name=NAME,
        title="QuickBooks Online",
        settings=QuickBooksSettings,
        streams=reports.ALL_STREAMS,
        default_sync_interval=3600,
        connect_path=f"/oauth/{NAME}/connect",
        secret_fields=frozenset(
            {"client_secret", "webhook_verifier_token", "access_token", "refresh_token"}
        ),
    )


@hookimpl
def routes(hub: HubAPI) -> list[web.RouteDef]:
    """``/oauth/quickbooks/connect``, ``/callback``, ``/disconnect``; ``POST
    /api/quickbooks/reports`` (a reports sync now)."""
    return [*oauth.OAuthRoutes(hub).routes(), *reports.routes(hub)]


@hookimpl
def migrations() -> Sequence[Migration]:
    """The reports tables (see ``tables.py``)."""
    return tables.MIGRATIONS


@hookimpl
async def authenticate(connection: Connection, hub: HubAPI) -> Connection:
    """Refresh the access token when it is about to expire (single-flight, rotation saved)."""
    return await oauth.ensure_fresh(hub, connection)


@hookimpl
def sync(
    connection: Connection,
    streams: Sequence[str],
    cursors: dict[str, Any],
    settings: IntegrationSettings | None,
    hub: HubAPI,
) -> AsyncIterator[Batch]:
    """CompanyInfo, CDC changes for streams with a cursor and full reads for the rest, then
    Preferences and, when due, the financial reports."""
    client = oauth.client_for(hub, connection)
    return reports.sync_all(hub, client, connection, streams, cursors, oauth.settings_of(settings))


@hookimpl
def webhook(
    request: web.Request, body: bytes, settings: IntegrationSettings | None
) -> list[WebhookEvent]:
    """Verify ``intuit-signature`` and parse either payload format into events."""
    token = settings.webhook_verifier_token if isinstance(settings, QuickBooksSettings) else None
    return webhooks.parse(
        body,
        request.headers.get(webhooks.SIGNATURE_HEADER),
        token.get_secret_value() if token else None,
    )


@hookimpl
async def process(event: HubEvent, hub: HubAPI) -> None:
    """Handle one change: re-fetch or tombstone the entity, emit ``quickbooks.<entity>.<op>``."""
    await webhooks.process(event, hub)


@hookimpl
async def health(
    connection: Connection, settings: IntegrationSettings | None, hub: HubAPI
) -> HealthReport:
    """Token present and valid, refresh expiry, API reachable, last sync age and error."""
    return await checks.diagnose(connection, oauth.settings_of(settings), hub)


@hookimpl
async def diagnostics(connection: Connection, hub: HubAPI) -> dict[str, Any]:
    """Tokens present and their expiries, API reachable, last error, rate-limit budget."""
    return await checks.dump(connection, hub)


@hookimpl
async def key_figures(connection: Connection, hub: HubAPI) -> KeyFigures | None:
    """Ratios, margins and revenue growth from the last reports sync (exact decimals)."""
    return await financials.key_figures(hub, connection)


@hookimpl
async def demo(stack: AsyncExitStack) -> dict[str, dict[str, Any]]:
    """Start a small Intuit sandbox; connect a company at ``/oauth/quickbooks/connect``."""
    from .sandbox import SandboxConfig, start_sandbox

    sandbox = await start_sandbox(SandboxConfig())
    stack.push_async_callback(sandbox.close)
    config = sandbox.state.config
    return {
        NAME: {
            "client_id": config.client_id,
            "client_secret": config.client_secret,
            "base_url": sandbox.base_url,
            "oauth_base_url": sandbox.oauth_base_url,
            "webhook_verifier_token": "demo-verifier-token",
        }
    }
