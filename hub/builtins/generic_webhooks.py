"""The built-in ``generic`` webhook source: tools such as Zapier or in-house scripts post
signed JSON to ``/webhooks/generic/<sender>``.

Each sender is configured under ``[webhooks.generic.<sender>]`` with its shared secret and its
``scheme``:

* ``hmac`` (the default): the HMAC-SHA256 of the body in the configured header (a ``sha256=``
  prefix is accepted), encoded ``hex`` or ``base64``. The event id is ``<sender>:`` plus the
  request's ``webhook-id``, ``X-Event-Id`` or ``Idempotency-Key`` header, else the SHA-256 of
  the body (a resent body is a duplicate). The signature does not cover that header: a
  captured body can be re-sent under any id (the inbox stores it as a new event, and never
  lets it suppress a real event with other content under that id).
* ``standard``: Standard Webhooks (:mod:`hub.webhooks.signing`): ``webhook-signature`` signs
  ``webhook-id``, ``webhook-timestamp`` and the body, and a timestamp more than ``tolerance``
  seconds away is refused, so a captured request cannot be re-sent under another id or
  later. The event id is ``<sender>:`` plus ``webhook-id``.

An accepted delivery becomes the hub event ``generic.<sender>.received`` with the JSON body as
its data.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
from typing import Any

import orjson
from aiohttp import web

from hub.config import GenericSender
from hub.core import Hub
from hub.errors import MalformedWebhookError, SignatureError, UnknownSourceError
from hub.hookspecs import hookimpl
from hub.model import (
    Connection,
    HealthCheck,
    HealthReport,
    HealthStatus,
    Integration,
    WebhookEvent,
)
from hub.webhooks import signing

NAME = "generic"
ID_HEADERS = ("webhook-id", "X-Event-Id", "Idempotency-Key")


@functools.cache
def _keyed_hmac(secret: str) -> hmac.HMAC:
    """An HMAC-SHA256 already keyed with ``secret``: copying it skips the key set-up."""
    return hmac.new(secret.encode(), digestmod=hashlib.sha256)


def expected_signature(sender: GenericSender, body: bytes) -> bytes:
    """The signature ``sender`` must send for ``body``, encoded as configured."""
    mac = _keyed_hmac(sender.secret.get_secret_value()).copy()
    mac.update(body)
    digest = mac.digest()
    return digest.hex().encode() if sender.encoding == "hex" else base64.b64encode(digest)


def signature_matches(sender: GenericSender, body: bytes, presented: str | None) -> bool:
    """Constant-time check of a presented signature; never raises, whatever its length."""
    if not presented:
        return False
    value = presented.strip()
    if value[:7].lower() == "sha256=":
        value = value[7:]
    if sender.encoding == "hex":
        value = value.lower()
    return hmac.compare_digest(
        expected_signature(sender, body), value.encode("utf-8", "surrogateescape")
    )


def _event_id(request: web.Request) -> str | None:
    for name in ID_HEADERS:
        value = request.headers.get(name)
        if value:
            return value
    return None


def verified_event_id(sender: GenericSender, request: web.Request, body: bytes) -> str:
    """Check the request's signature by ``sender``'s scheme; return the sender's event id.

    :raise SignatureError: a missing or wrong signature, or (``standard``) a missing header
        or a timestamp outside the tolerance; the message says which.
    """
    if sender.scheme == "standard":
        signing.verify(sender.secret.get_secret_value(), request.headers, body, sender.tolerance)
        return request.headers[signing.HEADER_ID]
    if not signature_matches(sender, body, request.headers.get(sender.header)):
        raise SignatureError(f"bad or missing {sender.header} signature")
    return _event_id(request) or hashlib.sha256(body).hexdigest()


@hookimpl
def register() -> Integration:
    """Declare the generic source (no streams: it only receives webhooks)."""
    return Integration(name=NAME, title="Signed webhooks (generic)", default_sync_interval=None)


@hookimpl
async def startup(hub: Hub) -> None:
    """One connection per configured sender, so the admin page lists them."""
    for sender in hub.settings.webhooks.generic:
        await hub.add_connection(NAME, sender, f"sender {sender}", {}, origin="config")


@hookimpl
def health(connection: Connection, hub: Hub) -> HealthReport:
    """A sender is healthy while it is configured."""
    configured = connection.key in hub.settings.webhooks.generic
    check = HealthCheck("secret configured", configured)
    if not configured:
        return HealthReport(HealthStatus.DISCONNECTED, "sender removed from the config", [check])
    path = f"/webhooks/generic/{connection.key}"
    return HealthReport(HealthStatus.HEALTHY, f"accepting signed webhooks at {path}", [check])


@hookimpl
def webhook(request: web.Request, body: bytes, hub: Hub) -> list[WebhookEvent]:
    """Verify the sender's signature and accept the JSON body as one event."""
    name = request.match_info.get("path", "")
    sender = hub.settings.webhooks.generic.get(name)
    if sender is None:
        raise UnknownSourceError(f"no generic sender {name!r} (configure webhooks.generic.{name})")
    event_id = verified_event_id(sender, request, body)
    try:
        data: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise MalformedWebhookError("the body is not JSON") from None
    return [
        WebhookEvent(
            id=f"{name}:{event_id}"[:300],  # senders' ids are their own: never each other's dups
            type=f"{name}.received",
            data=data if isinstance(data, dict) else {"body": data},
            connection_key=name,
        )
    ]
