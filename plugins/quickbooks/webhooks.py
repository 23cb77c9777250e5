"""Intuit's webhooks: signature check, both payload formats, and processing after the answer.

``intuit-signature`` is the base64 HMAC-SHA256 of the raw body keyed with the app's verifier
token; it is compared in constant time before the body is parsed. Two formats arrive at the
same URL: the classic ``{"eventNotifications": [{"realmId", "dataChangeEvent": {"entities":
[{"name", "id", "operation", "lastUpdated", "deletedId"?}]}}]}`` and the CloudEvents array
(``type`` ``qbo.<entity>.<operation>.v1``, ``intuitaccountid`` the realm, ``intuitentityid``,
``data.deletedid`` on a merge). Both become :class:`~hub.model.WebhookEvent` objects of type
``webhook.<entity>.<operation>`` (stored as ``quickbooks.webhook.…``) keyed by realm.

Processing (the ``process`` hook, after the hub answered Intuit) re-fetches the entity by id
and stores it, or tombstones it on a deletion or merge (or when it is gone), then emits the
hub event ``quickbooks.<entity>.<operation>`` carrying the stored record.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import orjson
import structlog

from hub.errors import MalformedWebhookError, SignatureError
from hub.model import WebhookEvent

from .oauth import NAME, client_for
from .sync import BY_ENTITY_LOWER

if TYPE_CHECKING:
    from hub.api import HubAPI
    from hub.model import Connection, HubEvent

log = structlog.get_logger("plugins.quickbooks")

SIGNATURE_HEADER = "intuit-signature"
EVENT_PREFIX = "webhook."
OPERATIONS = {
    "create": "created",
    "update": "updated",
    "delete": "deleted",
    "merge": "merged",
    "void": "voided",
    "emailed": "emailed",
}
"""Classic operations and CloudEvents verbs, both mapped to the past-tense verb."""
OPERATIONS |= {verb: verb for verb in OPERATIONS.values()}


def sign(body: bytes, verifier_token: str) -> str:
    """The ``intuit-signature`` Intuit sends for ``body``."""
    digest = hmac.new(verifier_token.encode(), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def verify(body: bytes, signature: str | None, verifier_token: str | None) -> None:
    """Check ``signature`` in constant time.

    :raise SignatureError: no verifier token configured, no signature, or a wrong one.
    """
    if not verifier_token:
        raise SignatureError("no webhook_verifier_token is configured for quickbooks")
    if not signature:
        raise SignatureError(f"missing {SIGNATURE_HEADER} header")
    try:
        given = base64.b64decode(signature.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError(f"{SIGNATURE_HEADER} is not base64") from None
    expected = hmac.new(verifier_token.encode(), body, hashlib.sha256).digest()
    if not hmac.compare_digest(expected, given):
        raise SignatureError(f"{SIGNATURE_HEADER} does not match the body")


def parse(body: bytes, signature: str | None, verifier_token: str | None) -> list[WebhookEvent]:
    """Verify, then parse either payload format into events (one per entity change).

    :raise SignatureError: see :func:`verify` (checked before anything is parsed).
    :raise MalformedWebhookError: the body is neither format.
    """
    verify(body, signature, verifier_token)
    try:
        payload: Any = orjson.loads(body)
        if isinstance(payload, list):
            return [_event(change) for change in _cloudevents(payload)]
        if isinstance(payload, dict) and "eventNotifications" in payload:
            return [_event(change) for change in _classic(payload["eventNotifications"])]
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise MalformedWebhookError(f"not an Intuit webhook payload: {exc!r}") from None
    raise MalformedWebhookError("neither eventNotifications nor a CloudEvents array")


def _classic(notifications: list[Any]) -> Iterator[dict[str, Any]]:
    for notification in notifications:
        realm = str(notification["realmId"])
        for entity in notification["dataChangeEvent"]["entities"]:
            yield {
                "format": "classic",
                "realm_id": realm,
                "entity": str(entity["name"]),
                "entity_id": str(entity["id"]),
                "operation": str(entity["operation"]),
                "last_updated": entity.get("lastUpdated"),
                "deleted_id": entity.get("deletedId"),
            }


def _cloudevents(events: list[Any]) -> Iterator[dict[str, Any]]:
    for event in events:
        parts = str(event["type"]).split(".")
        if len(parts) < 3 or parts[0] != "qbo":
            raise KeyError(f"type {event['type']!r}")
        data = event.get("data") if isinstance(event.get("data"), Mapping) else {}
        yield {
            "format": "cloudevents",
            "cloudevent_id": event.get("id"),
            "realm_id": str(event["intuitaccountid"]),
            "entity": parts[1],
            "entity_id": str(event["intuitentityid"]),
            "operation": parts[2],
            "last_updated": event.get("time"),
            "deleted_id": data.get("deletedid") or data.get("deletedId"),
        }


def _event(change: dict[str, Any]) -> WebhookEvent:
    spec = BY_ENTITY_LOWER.get(change["entity"].lower())
    entity = spec.entity if spec else change["entity"]
    operation = OPERATIONS.get(change["operation"].lower(), change["operation"].lower())
    data = {**change, "entity": entity, "operation": operation}
    fingerprint = "|".join(
        str(change.get(k)) for k in ("realm_id", "entity", "entity_id", "operation", "last_updated")
    )
    event_id = change.get("cloudevent_id") or hashlib.sha256(fingerprint.encode()).hexdigest()[:32]
    return WebhookEvent(
        id=str(event_id),
        type=f"{EVENT_PREFIX}{entity.lower()}.{operation}",
        data={k: v for k, v in data.items() if v is not None},
        connection_key=change["realm_id"],
    )


async def _connection_for(hub: HubAPI, realm: str | None) -> Connection | None:
    if not realm:
        return None
    try:
        return await hub.connection(f"{NAME}:{realm}")
    except LookupError:
        return None


async def process(event: HubEvent, hub: HubAPI) -> None:
    """Apply one stored change notification: re-fetch or tombstone, then emit the hub event.

    Idempotent (it stores the entity's current state). An unknown realm is logged and
    skipped, not an error; an entity the hub does not sync is only announced.
    """
    data = event.data
    connection = await _connection_for(hub, event.connection_key)
    if connection is None:
        log.info("webhook for a company that is not connected; ignored", realm=event.connection_key)
        return
    entity, operation, entity_id = data["entity"], data["operation"], str(data["entity_id"])
    spec = BY_ENTITY_LOWER.get(entity.lower())
    record: dict[str, Any] | None = None
    deleted: list[str] = []
    if spec is not None and spec.stream in hub.streams_for(NAME):
        connection = await hub.authenticate(connection)
        if data.get("deleted_id"):
            deleted.append(str(data["deleted_id"]))
        if operation != "deleted":
            record = await client_for(hub, connection).read(spec.entity, entity_id)
        if record is None:
            deleted.append(entity_id)
        stored = spec.stored([record]) if record else []
        await hub.write_records(connection, spec.stream, stored, deleted)
    await hub.emit(
        f"{NAME}.{entity.lower()}.{operation}",
        {
            "connection": connection.id,
            "realm_id": connection.key,
            "entity": entity,
            "id": entity_id,
            "operation": operation,
            "record": record,
            "deleted": deleted,
            "webhook_event": event.id,
        },
        source=NAME,
    )
