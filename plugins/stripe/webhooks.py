"""Stripe's webhooks: signature check on the raw body, then processing after the answer.

``Stripe-Signature`` (``t=<time>,v1=<HMAC-SHA256 of "<time>.<body>">``) is checked with the
SDK's ``WebhookSignature.verify_header`` against each configured signing secret in turn (a
rotation keeps both secrets listed for a while), with Stripe's 300-second tolerance: an old
timestamp (a replay) is refused like a wrong signature, 401 and nothing stored. Nothing is
parsed before the signature matched. An event of a type not acted on, or of the other mode
(a test event at a live key), is answered 200 and dropped. The hub deduplicates redeliveries
by the event id. Each event becomes a :class:`~hub.model.WebhookEvent` ``webhook.<type>``
(stored as ``stripe.webhook.<type>``) for the configured account.

Processing (``process``) treats the event as a change notice: it re-fetches the object (a
checkout session's customer and subscription) and stores it, or tombstones it when it was
deleted, then emits ``stripe.<type>``. Per object the ``created`` time of the newest event
applied is kept (plugin table ``applied``): an older event arriving later (Stripe does not
keep order) changes nothing and announces nothing, so the stored state stays the newer one.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
import structlog

from hub.errors import MalformedWebhookError, SignatureError
from hub.model import WebhookEvent

from .client import JSON, StripeApi, client_for
from .settings import NAME
from .sync import BY_OBJECT, BY_STREAM, Spec, deletes, refetch

if TYPE_CHECKING:
    from hub.api import HubAPI, Value
    from hub.model import Connection, HubEvent

    from .settings import StripeSettings

log = structlog.get_logger("plugins.stripe")

SIGNATURE_HEADER = "Stripe-Signature"
TOLERANCE_S = 300
EVENT_PREFIX = "webhook."
LOCK_STRIPES = 64
"""Objects are applied under one of this many locks per connection (by a hash of the id)."""


def verify(body: bytes, header: str | None, secrets: list[str]) -> None:
    """Check ``header`` against each secret (any may match) within the tolerance.

    :raise SignatureError: no secret configured, no header, a wrong signature or a
        timestamp older than 300 seconds.
    """
    if not secrets:
        raise SignatureError("no webhook_secrets are configured for stripe")
    if not header:
        raise SignatureError(f"missing {SIGNATURE_HEADER} header")
    import stripe  # the SDK is loaded when the integration is first used

    reasons = []
    for secret in secrets:
        try:
            stripe.WebhookSignature.verify_header(body, header, secret, tolerance=TOLERANCE_S)
            return
        except stripe.SignatureVerificationError as exc:
            reasons.append(str(exc.user_message or exc))
        except UnicodeDecodeError:
            raise SignatureError("the body is not UTF-8 text") from None
    expired = [r for r in reasons if "tolerance" in r]
    reason = expired[0] if expired else reasons[-1]
    raise SignatureError(f"{SIGNATURE_HEADER} refused: {reason}")


def parse(body: bytes, header: str | None, settings: StripeSettings | None) -> list[WebhookEvent]:
    """Verify, then parse one Stripe event into at most one hub webhook event.

    :raise SignatureError: see :func:`verify` (checked before anything is parsed).
    :raise MalformedWebhookError: the body is not a Stripe event.
    """
    secrets = [s.get_secret_value() for s in settings.webhook_secrets] if settings else []
    verify(body, header, secrets)
    assert settings is not None  # verify refuses without secrets
    try:
        event = orjson.loads(body)
        kind, event_id, created = str(event["type"]), str(event["id"]), int(event["created"])
        obj = event["data"]["object"]
        if event.get("object") != "event" or not isinstance(obj, dict) or not obj.get("id"):
            raise KeyError("data.object")
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise MalformedWebhookError(f"not a Stripe event: {exc!r}") from None
    if kind not in settings.acted_on:
        log.debug("stripe event type not acted on; dropped", type=kind, event_id=event_id)
        return []
    if bool(event.get("livemode")) != settings.livemode:
        log.warning("stripe event of the other mode than the key; dropped", event_id=event_id)
        return []
    data = {
        "event_type": kind,
        "created": created,
        "object": obj,
        "previous_attributes": (event["data"].get("previous_attributes") or None),
    }
    return [
        WebhookEvent(
            id=event_id,
            type=f"{EVENT_PREFIX}{kind}",
            data={k: v for k, v in data.items() if v is not None},
            connection_key=settings.account,
        )
    ]


@dataclass(frozen=True)
class Applied:
    """What processing did to one object: its stored copy (None when tombstoned), or
    ``stale`` when a newer event had been applied already."""

    spec: Spec
    object_id: str
    record: JSON | None
    stale: bool = False


def targets(event_type: str, obj: Mapping[str, Any]) -> list[tuple[Spec, str, bool]]:
    """The synced objects an event concerns: (spec, id, deleted)."""
    if obj.get("object") == "checkout.session":
        wanted = (("customers", obj.get("customer")), ("subscriptions", obj.get("subscription")))
        return [(BY_STREAM[s], str(i), False) for s, i in wanted if isinstance(i, str)]
    spec = BY_OBJECT.get(str(obj.get("object", "")))
    if spec is None:
        return []
    return [(spec, str(obj["id"]), deletes(event_type, spec))]


async def apply(
    hub: HubAPI,
    api: StripeApi,
    connection: Connection,
    target: tuple[Spec, str, bool],
    event_id: str,
    created: int,
) -> Applied:
    """Re-fetch and store (or tombstone) one object unless a newer event was applied."""
    spec, object_id, deleted = target
    tables = hub.tables(__name__)
    stripe_lock = zlib.crc32(object_id.encode()) % LOCK_STRIPES
    async with hub.single_flight(f"{NAME}:apply:{connection.id}:{stripe_lock}"):
        marker = await tables.get("applied", (connection.id, object_id))
        if marker is not None and int(marker["event_created"]) > created:
            log.info("older stripe event after a newer one; not applied", event_id=event_id)
            return Applied(spec, object_id, None, stale=True)
        record = None if deleted else await refetch(api, spec, object_id)
        if spec.stream in hub.streams_for(NAME):
            gone = [] if record is not None else [object_id]
            await hub.write_records(connection, spec.stream, [record] if record else [], gone)
        row: dict[str, Value] = {
            "connection_id": connection.id,
            "object_id": object_id,
            "stream": spec.stream,
            "event_id": event_id,
            "event_created": created,
        }
        await tables.upsert("applied", [row])
        return Applied(spec, object_id, record)


async def payment_failed_facts(
    hub: HubAPI, connection: Connection, invoice: Mapping[str, Any]
) -> dict[str, Any]:
    """What a payment-failed notice needs: customer, amount and currency, the hosted invoice
    page, and the hub client the customer is linked to (None if not linked)."""
    customer = invoice.get("customer")
    customer_id = customer.get("id") if isinstance(customer, Mapping) else customer
    client_id = None
    if isinstance(customer_id, str):
        client_id = await hub.clients.client_of(NAME, connection.id, customer_id)
    return {
        "customer": customer_id,
        "customer_email": invoice.get("customer_email"),
        "customer_name": invoice.get("customer_name"),
        "amount_due": invoice.get("amount_due"),
        "amount_remaining": invoice.get("amount_remaining"),
        "currency": invoice.get("currency"),
        "hosted_invoice_url": invoice.get("hosted_invoice_url"),
        "attempt_count": invoice.get("attempt_count"),
        "next_payment_attempt": invoice.get("next_payment_attempt"),
        "client_id": client_id,
    }


async def process(event: HubEvent, settings: StripeSettings, hub: HubAPI) -> None:
    """Apply one stored event: re-fetch or tombstone its objects, then emit ``stripe.<type>``.

    Idempotent (it stores the objects' current state); an event older than the newest one
    applied to its object is skipped. An unknown account is logged and skipped.
    """
    data = event.data
    try:
        connection = await hub.connection(f"{NAME}:{event.connection_key}")
    except LookupError:
        log.info("stripe webhook for an account not connected; ignored", key=event.connection_key)
        return
    kind, created, obj = str(data["event_type"]), int(data["created"]), data["object"]
    api = client_for(hub, connection, settings)
    done = [
        await apply(hub, api, connection, target, event.id, created)
        for target in targets(kind, obj)
    ]
    await hub.tables(__name__).upsert(
        "webhooks_seen",
        [
            {
                "connection_id": connection.id,
                "event_id": event.id,
                "event_type": kind,
                "seen_at": time.time(),
            }
        ],
    )
    if any(applied.stale for applied in done):
        return
    record = next((a.record for a in done if a.object_id == obj.get("id")), None)
    facts: dict[str, Any] = {
        "connection": connection.id,
        "account": connection.key,
        "type": kind,
        "object": obj.get("object"),
        "id": obj.get("id"),
        "record": record,
        "deleted": [a.object_id for a in done if a.record is None],
        "created": created,
        "webhook_event": event.id,
    }
    if kind == "invoice.payment_failed":
        facts |= await payment_failed_facts(hub, connection, record or obj)
    if obj.get("object") == "checkout.session":
        facts["session"] = obj
    await hub.emit(f"{NAME}.{kind}", facts, source=NAME)
