"""``POST /webhooks/{source}``: verify with the owning plugin, store durably, then answer.

Answers: 200 stored (with counts; duplicates of a known provider event id are acknowledged
and not processed again), 401 bad or missing signature (nothing stored), 404 unknown source,
400 malformed (event data the store cannot write, such as JSON nested deeper than
``MAX_JSON_DEPTH``, included), 405 wrong method, 413 body over ``webhooks.max_body_bytes``
(as sent or once decoded), 415 a content coding other than gzip or deflate, 503 with
``Retry-After`` when the ingest is full (nothing read or stored; providers retry) or the
database cannot be written (disk full, read-only: nothing stored). Bad input never gets a 5xx.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import orjson
import structlog
from aiohttp import hdrs, web

from hub.errors import HubError, MalformedWebhookError, SignatureError, UnknownSourceError
from hub.model import WebhookEvent
from hub.plugins import await_maybe
from hub.store.inbox import NewEvent, Stored, WebhookDelivery
from hub.store.writable import unwritable
from hub.web.api import json_response
from hub.web.body import read_body
from hub.web.keys import HUB
from hub.web.params import unstorable

if TYPE_CHECKING:
    from hub.core import Hub
    from hub.webhooks.ingest import Ticket

log = structlog.get_logger("hub.webhooks")
routes = web.RouteTableDef()

DROPPED_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization", "x-api-key"})
MAX_EVENTS = 1000
RETRY_AFTER_S = 5
"""What a refused request is told to wait: about the time a full queue takes to drain."""


def _reject(status: int, reason: str) -> web.Response:
    return json_response({"error": reason}, status=status)


def storable(text: str) -> str:
    """``text`` as valid UTF-8 for the store: a header's undecodable bytes (which aiohttp keeps
    as surrogate escapes, rejected by orjson and SQLite) become ``\\udcNN`` escapes."""
    return text if text.isascii() else text.encode("utf-8", "backslashreplace").decode("utf-8")


def kept_headers(request: web.Request) -> dict[str, str]:
    """The request headers stored with the body: all but credentials."""
    return {
        storable(str(k)): storable(v)
        for k, v in request.headers.items()
        if k.lower() not in DROPPED_HEADERS
    }


@routes.post("/webhooks/{source}", name="webhook")
@routes.post("/webhooks/{source}/{path:.+}", name="webhook_path")
async def receive(request: web.Request) -> web.Response:
    """Verify, store and acknowledge one webhook request."""
    hub = request.app[HUB]
    source = request.match_info["source"]
    metrics = hub.metrics
    if not hub.plugins.has_owner_hook(source, "webhook"):
        return _reject(404, f"no webhook source {source!r}")
    if hub.disabled(source):
        return _reject(404, f"webhook source {source!r} is disabled in the configuration")
    limit = hub.settings.webhooks.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        metrics.webhook(source, "too_large")
        return _reject(413, f"body over {limit} bytes")
    declared = limit if request.content_length is None else request.content_length
    if hdrs.CONTENT_ENCODING in request.headers:
        declared += limit  # its decoded form, held beside it, may be as large as the limit
    ticket = hub.ingest.admission.admit(declared)
    if ticket is None:
        metrics.webhooks_rejected.labels("overloaded").inc()
        return _overloaded(hub)
    try:
        return await _receive(request, hub, source, ticket)
    finally:
        ticket.release()  # nothing if the committer released it with its group


async def _receive(request: web.Request, hub: Hub, source: str, ticket: Ticket) -> web.Response:
    metrics = hub.metrics
    try:
        body = await read_body(request)
    except web.HTTPRequestEntityTooLarge as exc:
        metrics.webhook(source, "too_large")
        return _reject(413, exc.text or "body too large")
    except web.HTTPClientError as exc:  # not valid gzip or deflate, or another coding
        metrics.webhook(source, "malformed")
        return _reject(exc.status, exc.text or "malformed body")
    sent = await request.read()  # the body as sent: cached, held until the request ends
    ticket.resize(len(body) if sent is body else len(sent) + len(body))
    try:
        parsed = hub.plugins.call_owner_raw(source, "webhook", request=request, body=body)
        if not isinstance(parsed, list):  # a list is the common, synchronous answer
            parsed = await await_maybe(parsed)
        events = _validated(parsed)
    except SignatureError as exc:
        metrics.webhook(source, "bad_signature")
        log.warning("webhook signature rejected", source=source, reason=str(exc))
        return _reject(401, str(exc) or "bad signature")
    except UnknownSourceError as exc:
        metrics.webhook(source, "unknown_source")
        return _reject(404, str(exc))
    except HubError as exc:
        metrics.webhook(source, "malformed")
        return _reject(400, str(exc) or "malformed webhook")
    except Exception as exc:  # a parser tripping over bad input is still bad input
        metrics.webhook(source, "malformed")
        log.warning("webhook could not be parsed", source=source, error=repr(exc)[:300])
        return _reject(400, "malformed webhook")
    new_events = [_stored_event(source, event) for event in events]
    try:
        delivery = WebhookDelivery.build(source, kept_headers(request), body, new_events)
    except orjson.JSONEncodeError as exc:  # whatever parsed it, the store must write it
        metrics.webhook(source, "malformed")
        return _reject(400, f"event data cannot be stored as JSON: {unstorable(exc)}")
    try:
        stored = await hub.ingest.store(delivery, ticket)
    except Exception as exc:
        if not unwritable(exc):
            raise
        metrics.webhooks_rejected.labels("unwritable").inc()
        return _retry_later(
            f"the hub cannot store webhooks now ({exc}); retry in {RETRY_AFTER_S} s"
        )
    if stored.created:
        hub.dispatcher.wake()
    _warn_conflicts(source, stored)
    metrics.webhook(source, "accepted")
    return json_response({"received": stored.created, "duplicates": stored.duplicates})


def _overloaded(hub: Hub) -> web.Response:
    admission = hub.ingest.admission
    return _retry_later(
        f"the hub is busy: {admission.requests} webhook requests ({admission.bytes} bytes) are "
        f"being stored (webhooks.queue_max_requests = {admission.max_requests}, "
        f"webhooks.queue_max_bytes = {admission.max_bytes}); retry in {RETRY_AFTER_S} s",
    )


def _retry_later(reason: str) -> web.Response:
    """503 with ``Retry-After``: nothing was stored, and every provider sends it again."""
    response = _reject(503, reason)
    response.headers["Retry-After"] = str(RETRY_AFTER_S)
    return response


def _warn_conflicts(source: str, stored: Stored) -> None:
    """Log each event stored new because its id was known with other content (a replayed
    body under a reused id, or a sender reusing ids): never the body."""
    for event_id, stored_as in stored.conflicts:
        log.warning(
            "webhook event id known with other content; stored as a new event",
            source=source,
            event_id=event_id,
            stored_as=stored_as,
        )


def _stored_event(source: str, event: WebhookEvent) -> NewEvent:
    return NewEvent(
        source=source,
        event_id=storable(str(event.id)),  # ids may come from headers (generic: webhook-id)
        type=storable(f"{source}.{event.type}"),
        data=event.data if isinstance(event.data, dict) else dict(event.data),
        connection_key=None if event.connection_key is None else storable(event.connection_key),
    )


def _validated(parsed: object) -> Sequence[WebhookEvent]:
    if parsed is None:
        return []
    if not isinstance(parsed, list | tuple) or not all(isinstance(e, WebhookEvent) for e in parsed):
        raise TypeError("the webhook hook must return a list of WebhookEvent")
    if len(parsed) > MAX_EVENTS:
        raise MalformedWebhookError(f"more than {MAX_EVENTS} events in one request")
    for event in parsed:
        if not event.id or not event.type:
            raise MalformedWebhookError("an event has no id or type")
    return parsed
