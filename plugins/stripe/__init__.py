"""Stripe: one connection per configured API key, kept as an exact copy of the account.

Only hook implementations live here: the settings are in ``settings.py``, the SDK client in
``client.py``, error mapping in ``errors.py``, streams, full reads and the Events API cursor
in ``sync.py``, webhook verification and processing in ``webhooks.py``, billing actions in
``actions.py``, health and diagnostics in ``health.py``, the plugin's own tables in
``tables.py`` and a local, wire-compatible fake of Stripe in ``sandbox.py``. The ``stripe``
SDK is imported only when the integration is used.
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

from . import actions, tables, webhooks
from . import health as checks
from .client import client_for
from .settings import NAME, StripeSettings
from .sync import SPECS, STREAMS, sync_account


def _settings(settings: IntegrationSettings | None) -> StripeSettings:
    if not isinstance(settings, StripeSettings):
        raise AuthenticationError("Stripe is not configured: set [integrations.stripe]")
    return settings


@hookimpl
def register() -> Integration:
    """Declare Stripe: settings, the nine streams, an hourly sync from the Events API."""
    return Integration(
        name=NAME,
        title="Stripe",
        settings=StripeSettings,
        streams=STREAMS,
        default_sync_interval=3600,
        secret_fields=frozenset({"secret_key", "webhook_secrets"}),
    )


@hookimpl
def migrations() -> Sequence[Migration]:
    """Idempotency keys, the newest event applied per object, the last webhook, customers."""
    return tables.MIGRATIONS


@hookimpl
def configure(settings: IntegrationSettings | None) -> list[ConnectionSpec]:
    """One connection for the configured key, keyed by ``account``."""
    stripe = _settings(settings)
    mode = "live" if stripe.livemode else "test"
    return [
        ConnectionSpec(
            key=stripe.account,
            title=f"Stripe {stripe.account} ({mode} mode)",
            credentials={"secret_key": stripe.secret_key.get_secret_value()},
        )
    ]


@hookimpl
def authenticate(connection: Connection) -> Connection:
    """An API key needs no refresh; a missing one means re-authentication."""
    if not connection.credentials.get("secret_key"):
        raise AuthenticationError("no Stripe secret key is stored for this connection")
    return connection


@hookimpl
def routes(hub: HubAPI) -> list[web.RouteDef]:
    """``/api/billing/...``: customers, subscriptions, plan changes, cancel, portal."""
    return actions.BillingRoutes(hub).routes()


@hookimpl
def sync(
    connection: Connection,
    streams: Sequence[str],
    cursors: dict[str, Any],
    settings: IntegrationSettings | None,
    hub: HubAPI,
) -> AsyncIterator[Batch]:
    """Events since each stream's cursor, full reads for the rest (and reconciliation)."""
    stripe = _settings(settings)
    return sync_account(client_for(hub, connection, stripe), streams, cursors, stripe)


@hookimpl
def webhook(
    request: web.Request, body: bytes, settings: IntegrationSettings | None
) -> list[WebhookEvent]:
    """Verify ``Stripe-Signature`` against each signing secret and parse the event."""
    stripe = settings if isinstance(settings, StripeSettings) else None
    return webhooks.parse(body, request.headers.get(webhooks.SIGNATURE_HEADER), stripe)


@hookimpl
async def process(event: HubEvent, settings: IntegrationSettings | None, hub: HubAPI) -> None:
    """Handle one event: re-fetch or tombstone its object, emit ``stripe.<type>``."""
    await webhooks.process(event, _settings(settings), hub)


@hookimpl
async def health(
    connection: Connection, settings: IntegrationSettings | None, hub: HubAPI
) -> HealthReport:
    """Key valid, mode, webhook secrets and the last webhook, past-due and disputes."""
    return await checks.diagnose(connection, _settings(settings), hub)


@hookimpl
async def diagnostics(
    connection: Connection, settings: IntegrationSettings | None, hub: HubAPI
) -> dict[str, Any]:
    """Key present, mode, API version, webhook secrets, last webhook, counts, last error."""
    return await checks.dump(connection, _settings(settings), hub)


@hookimpl
async def demo(stack: AsyncExitStack) -> dict[str, dict[str, Any]]:
    """Start a small Stripe sandbox and point the integration at the streams it serves."""
    from .sandbox import ROUTES, SandboxConfig, start_sandbox

    config = SandboxConfig(
        secret_key="sk_test_demo",  # noqa: S106 (the sandbox's own key)
        webhook_secret="whsec_demo",  # noqa: S106 (the sandbox's own secret)
    )
    sandbox = await start_sandbox(config)
    stack.push_async_callback(sandbox.close)
    sandbox.state.seed_demo()
    served = {path for method, path, _, _ in ROUTES if method == "GET"}
    return {
        NAME: {
            "secret_key": config.secret_key,
            "webhook_secrets": [config.webhook_secret],
            "base_url": sandbox.base_url,
            "streams": [spec.stream for spec in SPECS if spec.path in served],
        }
    }
