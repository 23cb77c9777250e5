"""E-mail: SendGrid (v3 mail send, signed Event Webhook, suppressions) and an SMTP channel.

Only hook implementations live here: the settings are in ``settings.py``, the SendGrid API
calls in ``client.py``, the SMTP channel in ``smtp.py``, the outbox (record, send, fall back,
retry) in ``mailer.py``, the alert e-mails in ``alerts.py``, the hub-event notifications in
``notifications.py``, the ``/api/notifications`` routes in ``routes.py``, the Event Webhook in
``webhooks.py``, the suppression reconcile in ``sync.py``, health and diagnostics in
``health.py``, the plugin's tables in ``tables.py`` and a local fake of SendGrid in
``sandbox.py``.
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
    Alert,
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
from . import notifications, runtime, tables, webhooks
from .routes import NotificationRoutes
from .settings import NAME, SendGridSettings, settings_of
from .sync import STREAMS, reconcile


def _runtime(hub: HubAPI) -> runtime.Runtime:
    running = runtime.runtime_of(hub)
    if running is None:
        raise AuthenticationError("e-mail is not configured: set [integrations.sendgrid]")
    return running


@hookimpl
def register() -> Integration:
    """Declare the e-mail integration: settings, SendGrid's suppression lists as streams
    (reconciled every 6 hours)."""
    return Integration(
        name=NAME,
        title="E-mail (SendGrid / SMTP)",
        settings=SendGridSettings,
        streams=STREAMS,
        default_sync_interval=6 * 3600,
        secret_fields=frozenset({"api_key", "password"}),
        events_when_configured=True,
    )


@hookimpl
def migrations() -> Sequence[Migration]:
    """Sends, recipient events, suppressions and alert state (``tables.py``)."""
    return tables.MIGRATIONS


@hookimpl
def configure(settings: IntegrationSettings | None) -> list[ConnectionSpec]:
    """One connection: SendGrid's API key, or the SMTP server when it is the only channel."""
    mail = settings_of(settings)
    if mail is None:
        return []
    if mail.api_key is not None:
        return [
            ConnectionSpec(
                key="sendgrid",
                title=f"SendGrid ({mail.from_email})",
                credentials={"api_key": mail.api_key.get_secret_value()},
            )
        ]
    assert mail.smtp is not None  # the settings require one of the two
    return [ConnectionSpec(key="smtp", title=f"SMTP {mail.smtp.host} ({mail.from_email})")]


@hookimpl
def sync(streams: Sequence[str], hub: HubAPI) -> AsyncIterator[Batch]:
    """Read SendGrid's suppression lists and align the plugin's suppression list with them
    (nothing to read when SMTP is the only channel)."""
    mailer = _runtime(hub).mailer
    return reconcile(mailer.sendgrid, mailer, streams)


@hookimpl
def webhook(
    request: web.Request, body: bytes, settings: IntegrationSettings | None
) -> list[WebhookEvent]:
    """Verify the Event Webhook's ECDSA signature and timestamp, then parse the batch."""
    mail = settings_of(settings)
    keys = mail.verification_keys if mail else []
    webhooks.verify(
        body,
        request.headers.get(webhooks.SIGNATURE_HEADER),
        request.headers.get(webhooks.TIMESTAMP_HEADER),
        keys,
        mail.event_webhook_tolerance if mail else 0,
    )
    return webhooks.parse(body)


@hookimpl
async def process(event: HubEvent, hub: HubAPI) -> None:
    """Suppress the address of a bounce, drop, spam report or unsubscribe; advance the send's
    status on delivered, open and click."""
    await webhooks.process(event, _runtime(hub).mailer)


@hookimpl
async def health(connection: Connection, hub: HubAPI) -> HealthReport:
    """API key valid, sender verified, last send, resends waiting, suppressions, SMTP."""
    return await checks.diagnose(_runtime(hub).mailer)


@hookimpl
async def diagnostics(connection: Connection, hub: HubAPI) -> dict[str, Any]:
    """Channels, API host, rate-limit state, the health checks and sends by status."""
    return await checks.dump(_runtime(hub).mailer)


@hookimpl
def routes(hub: HubAPI) -> list[web.RouteDef]:
    """``/api/notifications``: send, batches, sends and the suppression list."""
    return NotificationRoutes(hub).routes()


@hookimpl
async def event(event: HubEvent, hub: HubAPI) -> None:
    """E-mail document-processed notices to uploaders and failed payments to billing."""
    running = runtime.runtime_of(hub)
    if running is not None:
        await notifications.on_event(event, running.mailer)


@hookimpl
async def alert(alert: Alert, hub: HubAPI) -> None:
    """E-mail the admins about failing connections (coalesced, at most one per connection
    per ``alert_min_interval``)."""
    running = runtime.runtime_of(hub)
    if running is not None:
        await running.alerts.on_alert(alert)


@hookimpl
def startup(hub: HubAPI) -> None:
    """Start the mailer and its background pass when e-mail is configured."""
    mail = settings_of(hub.settings_for(NAME))
    if mail is not None:
        runtime.install(hub, mail)


@hookimpl
async def shutdown(hub: HubAPI) -> None:
    """Stop the background pass and bulk sends (unsent rows stay due)."""
    await runtime.uninstall(hub)


@hookimpl
async def demo(stack: AsyncExitStack) -> dict[str, dict[str, Any]]:
    """Start a local SendGrid sandbox (it captures every message) and send to it."""
    from .sandbox import SandboxConfig, start_sandbox

    sandbox = await start_sandbox(SandboxConfig())
    stack.push_async_callback(sandbox.close)
    return {
        NAME: {
            "api_key": sandbox.state.config.api_key,
            "base_url": sandbox.base_url,
            "from_email": "hub@demo.test",
            "firm_name": "Demo Books LLC",
            "alert_recipients": ["admin@demo.test"],
            "event_webhook_public_keys": [sandbox.state.public_key],
        }
    }
