"""Every hook of the ``advisoros_hub`` plugin contract, in one place.

Hook calls are keyword-only; an implementation may accept only the arguments it needs and may
be a plain function or return an awaitable (the hub awaits through :func:`hub.plugins.await_maybe`).

*Per-integration* hooks (``configure``, ``authenticate``, ``sync``, ``webhook``, ``process``,
``health``, ``diagnostics``, ``key_figures``) are called only on the plugin whose ``register``
declared the integration, so no implementation filters by name, and receive that integration's
validated ``settings`` (None when ``[integrations.NAME]`` is absent or incomplete).
*Broadcast* hooks are called on every plugin that implements them, each call isolated: one
plugin's exception is logged and never stops another's.
``hub`` is always the :class:`~hub.api.HubAPI`.

Authentication failures follow one rule in every hook: raise
:class:`hub.errors.AuthenticationError`; the hub marks the connection ``disconnected``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Sequence
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from contextlib import AsyncExitStack

    from aiohttp import web

    from hub.api import HubAPI
    from hub.model import (
        Alert,
        Batch,
        Connection,
        ConnectionSpec,
        HealthReport,
        HubEvent,
        Integration,
        IntegrationSettings,
        KeyFigures,
        Migration,
        StoredDocument,
        SyncMode,
        WebhookEvent,
    )

PROJECT = "advisoros_hub"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

# --------------------------------------------------------------------------- declaration


@hookspec
def register() -> Integration | None:
    """Declare the integration this plugin provides (name, title, settings model, streams,
    default schedule). Called once at start.

    :return: an :class:`~hub.model.Integration`, or None for a plugin that only supports others
        (an alert channel, an event handler).
    """


@hookspec
def routes(hub: HubAPI) -> Sequence[web.AbstractRouteDef] | None:
    """Add HTTP routes (OAuth connect/callback, actions) to the hub's aiohttp app.

    Called once while the app is built. Routes under ``/api/`` and ``/admin`` require the admin
    token like the core's own; a route elsewhere that needs it calls
    :meth:`HubAPI.require_admin <hub.api.HubAPI.require_admin>`.

    :return: aiohttp route definitions (``web.get(...)``), or None.
    """


@hookspec
def migrations() -> Sequence[Migration]:
    """Declare this plugin's own tables: its versioned forward migrations, oldest first.

    Called once at start, before ``startup``. The hub applies, in order and each in its own
    transaction, the versions its database has not recorded yet for the plugin; a failing one
    disables this plugin only. Read and write the tables through ``hub.tables(__name__)``.

    :return: :class:`~hub.model.Migration` objects, versions strictly increasing from 1.
    """
    raise NotImplementedError


# --------------------------------------------------------------------------- per integration


@hookspec
def configure(settings: IntegrationSettings | None, hub: HubAPI) -> Sequence[ConnectionSpec] | None:
    """Return the connections this integration's configuration defines (an API key gives one).

    Called at start for an enabled, configured integration (``settings`` is then never None).
    The hub creates or updates each connection by
    its key and stores the credentials encrypted. OAuth integrations return None: their
    connections come from the connect flow.
    """


@hookspec
def authenticate(
    connection: Connection, settings: IntegrationSettings | None, hub: HubAPI
) -> Awaitable[Connection] | Connection | None:
    """Make ``connection`` ready for API calls: refresh an expiring token, persist rotation.

    Called before every sync and health check. At most one refresh may run per connection at a
    time (use ``hub.single_flight``); a rotated refresh token is persisted with
    ``hub.save_credentials`` before the new access token is used.

    :return: the connection with current credentials (or None when nothing changed).
    :raise hub.errors.AuthenticationError: the credentials are revoked or missing.
    """


@hookspec
def sync(
    connection: Connection,
    streams: Sequence[str],
    cursors: dict[str, Any],
    mode: SyncMode,
    settings: IntegrationSettings | None,
    hub: HubAPI,
) -> AsyncIterator[Batch]:
    """Read the provider and yield :class:`~hub.model.Batch` objects (stream, records, cursor).

    One form: the call itself returns the async iterator. Write an async generator
    (``async def`` with ``yield``) or a plain ``def`` returning one; a coroutine (``async def``
    with ``return``) fails the run. Raising ``AuthenticationError`` ends the run ``failed``
    and marks the connection ``disconnected``.

    The hub commits each batch's records and cursor in one transaction; plugins never write
    synced records themselves. ``cursors`` maps each requested stream to its last committed
    cursor (absent when there is none, or when ``mode`` is full). A crash resumes from those
    cursors, so make each cursor mean "everything before this point is stored". A full sync
    that was interrupted is resumed by the next run, which passes ``incremental`` with the
    cursor the full pass reached (the hub still tombstones what that pass did not see when it
    ends): make a cursor say which kind of pass wrote it if your full and incremental reads
    differ.

    :param streams: the streams to sync (the integration's, or a configured subset).
    :param mode: ``full`` (start over; the hub tombstones records not seen) or ``incremental``.
    """
    raise NotImplementedError


@hookspec
def webhook(
    request: web.Request, body: bytes, settings: IntegrationSettings | None, hub: HubAPI
) -> Sequence[WebhookEvent]:
    """Verify a ``POST /webhooks/{source}`` request for this plugin's source and parse it into
    events; nothing is handled here (``process`` handles each event once it is stored).

    :param body: the request body (already read and decoded per its ``Content-Encoding``,
        within the size limit).
    :return: the verified events, each with the provider's event id. An id stored before
        is a duplicate only with the same ``data``: other data makes a new event, so keep
        what changes between redeliveries (attempt counters, send times) out of ``data``.
    :raise hub.errors.SignatureError: bad or missing signature (401, nothing stored).
    :raise hub.errors.MalformedWebhookError: unparseable body (400, nothing stored).
    """
    raise NotImplementedError


@hookspec
def process(
    event: HubEvent, settings: IntegrationSettings | None, hub: HubAPI
) -> Awaitable[None] | None:
    """Handle one verified, stored webhook event of this plugin's source (re-fetch, write
    records, emit), after the HTTP answer; ``webhook`` verified and parsed it.

    Called by the dispatcher, at least once per event: make it idempotent (``event.id`` is the
    provider's event id, ``event.attempt`` the attempt number). An event that came under an id
    already stored with other data has the id ``<provider id>#<32 hex digits>`` (of the
    SHA-256 of its data), so it is never taken for the first one. Raising schedules a retry with
    backoff; after ``webhooks.max_attempts`` the event is dead-lettered and alerted.
    ``event.connection_key`` names the provider account, when the webhook said. Raising
    :class:`~hub.errors.AuthenticationError` also marks that account's connection
    disconnected (needs re-authentication).
    """


@hookspec
def health(
    connection: Connection, settings: IntegrationSettings | None, hub: HubAPI
) -> Awaitable[HealthReport] | HealthReport:
    """Check ``connection``: token present, token valid, API reachable, and so on.

    Called by the health schedule, ``/api/status`` and ``advisoros-hub check``, after
    ``authenticate``.

    What the hub already knows is in ``hub.connection_state(connection.id)``: last success,
    last error, failures. When its ``proven_by_sync`` is true, a sync succeeded within the
    last ``health.interval`` seconds: do not call the provider again for what that sync
    proved (API reachable with these credentials); report it from the state.

    :return: a :class:`~hub.model.HealthReport` with status, message and checks.
    :raise hub.errors.AuthenticationError: the provider refused the credentials; the hub
        marks the connection ``disconnected`` (do not return that status yourself).
        Any other exception counts as ``error``.
    """
    raise NotImplementedError


@hookspec
def diagnostics(
    connection: Connection, settings: IntegrationSettings | None, hub: HubAPI
) -> Awaitable[dict[str, Any]] | dict[str, Any]:
    """Dump what helps troubleshoot ``connection``, for a bug report.

    Called by ``GET /api/connections/{id}/diagnostics`` and ``advisoros-hub check
    --verbose``. Include the troubleshooting checks: credentials present, token valid and when
    it expires, API reachable, last errors, rate-limit state. The hub redacts the dump (the
    integration's ``secret_fields``, secret-looking key names and the connection's secret
    values) and adds the connection's state beside it.

    :return: a JSON-ready dict.
    """
    raise NotImplementedError


@hookspec
def key_figures(
    connection: Connection, settings: IntegrationSettings | None, hub: HubAPI
) -> Awaitable[KeyFigures | None] | KeyFigures | None:
    """The connection's financial key figures, from what its last syncs stored.

    Called by ``GET /api/connections/{id}/financials`` and by other plugins through
    ``hub.key_figures`` (client insights, say). Read the plugin's own tables; do not call the
    provider here.

    :return: a :class:`~hub.model.KeyFigures`, or None when there is nothing to compute them
        from yet (no reports synced).
    """


# --------------------------------------------------------------------------- broadcast


@hookspec
def event(event: HubEvent, hub: HubAPI) -> Awaitable[None] | None:
    """React to a hub event (``sync.completed``, ``health.changed``, ``<integration>.*``).

    A plugin whose ``Integration`` says ``events_when_configured`` gets them only while its
    integration is configured and on.
    """


@hookspec
def alert(alert: Alert, hub: HubAPI) -> Awaitable[None] | None:
    """Deliver an alert (a connection's health changed, or a reminder that it is still bad).

    Every implementation receives every alert: e-mail, chat, the built-in log channel.
    """


@hookspec
def read_document(
    document_id: str, max_bytes: int, hub: HubAPI
) -> Awaitable[StoredDocument | None] | StoredDocument | None:
    """Give the stored document ``document_id``, if this plugin stores it (documents).

    Called by :meth:`HubAPI.read_document <hub.api.HubAPI.read_document>` on each implementer
    in turn until one returns a document; a plugin that does not know the id returns None.
    Read the content only when the document's size is at most ``max_bytes`` (else return it
    with ``content=None``) and check it against its checksum.

    :raise hub.errors.ProviderError: the document is known but its content cannot be read
        (storage unreachable, blob missing or corrupt); the message says why.
    """


@hookspec
def startup(hub: HubAPI) -> Awaitable[None] | None:
    """Called once when the hub has opened its store and before it serves requests."""


@hookspec
def shutdown(hub: HubAPI) -> Awaitable[None] | None:
    """Called once when the hub stops, after in-flight work was finished or cancelled."""


@hookspec
def demo(stack: AsyncExitStack) -> Awaitable[dict[str, dict[str, Any]] | None] | None:
    """For ``advisoros-hub demo``: start this plugin's local sandbox and connect to it.

    Register the sandbox's cleanup on ``stack``.

    :return: ``{integration name: settings}`` pointing the integration at the sandbox, merged
        into ``[integrations]``; or None if the plugin has no sandbox.
    """


PER_INTEGRATION_HOOKS = frozenset(
    {
        "configure",
        "authenticate",
        "sync",
        "webhook",
        "process",
        "health",
        "diagnostics",
        "key_figures",
    }
)
"""Hooks called only on the plugin that owns the integration."""
