"""Ledger's change notifications: verified before the answer, processed after it.

Ledger posts ``{"events": [{"id", "type": "<object>.<operation>", "data": {"id"}}]}`` and
signs the raw body: ``X-Ledger-Signature`` is its hex HMAC-SHA256 keyed with the webhook
secret, compared in constant time before anything is parsed. Each event becomes a
:class:`~hub.model.WebhookEvent` of type ``webhook.<object>.<operation>`` (stored as
``custom_accounting.webhook.…``) for the configured account.

Processing (the ``process`` hook) re-fetches the record through the client and stores it
with ``hub.write_records``, or tombstones it on a deletion (or when Ledger no longer has it),
then emits ``custom_accounting.<stream>.<operation>``. Whatever the order or the number of
deliveries, the stored record ends as Ledger has it now: processing is idempotent.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import TYPE_CHECKING, Any

import orjson
import structlog

from hub.errors import MalformedWebhookError, SignatureError
from hub.model import WebhookEvent

from .client import client_for
from .settings import NAME

if TYPE_CHECKING:
    from hub.api import HubAPI
    from hub.model import HubEvent

    from .settings import LedgerSettings

log = structlog.get_logger("custom_accounting")

SIGNATURE_HEADER = "X-Ledger-Signature"
STREAM_OF = {"account": "accounts", "transaction": "transactions"}
"""The stream each Ledger object type is synced into."""
OPERATIONS = frozenset({"created", "updated", "deleted"})


def sign(body: bytes, secret: str) -> str:
    """The signature Ledger sends for ``body``."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def parse(
    body: bytes, signature: str | None, settings: LedgerSettings | None
) -> list[WebhookEvent]:
    """Verify ``signature`` in constant time, then parse the event list of the configured
    account.

    :raise SignatureError: no secret configured, no signature, or a wrong one.
    :raise MalformedWebhookError: not a Ledger event list.
    """
    if settings is None or settings.webhook_secret is None:
        raise SignatureError("no webhook_secret is configured for custom_accounting")
    secret = settings.webhook_secret.get_secret_value()
    presented = (signature or "").strip().lower().encode("utf-8", "surrogateescape")
    if not presented or not hmac.compare_digest(sign(body, secret).encode(), presented):
        raise SignatureError("bad or missing X-Ledger-Signature")
    try:
        payload: Any = orjson.loads(body)
        return [
            WebhookEvent(
                id=str(e["id"]),
                type=f"webhook.{e['type']}",
                data=e,
                connection_key=settings.account,
            )
            for e in payload["events"]
        ]
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise MalformedWebhookError(f"not a Ledger event list: {exc}") from None


async def process(event: HubEvent, settings: LedgerSettings, hub: HubAPI) -> None:
    """Apply one stored event: re-fetch or tombstone the record, then emit the hub event.

    An event about an object the hub does not sync, or for an account that has no connection,
    is logged and skipped (retrying would not change it). Provider errors propagate: the
    dispatcher retries the event with backoff.
    """
    kind, _, operation = str(event.data.get("type", "")).partition(".")
    data = event.data.get("data")
    record_id = str(data.get("id") or "") if isinstance(data, dict) else ""
    stream = STREAM_OF.get(kind)
    if (
        stream is None
        or operation not in OPERATIONS
        or not record_id
        or stream not in hub.streams_for(NAME)
    ):
        log.info("Ledger event the hub does not sync; ignored", type=event.data.get("type"))
        return
    connections = await hub.find_connections(NAME, event.connection_key)
    if not connections:
        log.info("Ledger event for an account that is not connected", account=event.connection_key)
        return
    connection = await hub.authenticate(connections[0])
    record = None
    if operation != "deleted":
        record = await client_for(connection, settings, hub).record(stream, record_id)
    deleted = [] if record else [record_id]
    await hub.write_records(connection, stream, [record] if record else [], deleted)
    await hub.emit(
        f"{NAME}.{stream}.{operation}",
        {
            "connection": connection.id,
            "stream": stream,
            "id": record_id,
            "operation": operation,
            "record": record,
            "deleted": deleted,
            "webhook_event": event.id,
        },
        source=NAME,
    )
