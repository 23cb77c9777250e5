"""SendGrid's signed Event Webhook: verification, parsing and processing after the answer.

SendGrid signs ``timestamp + raw body`` with ECDSA P-256 / SHA-256 and sends the base64 DER
signature in ``X-Twilio-Email-Event-Webhook-Signature`` and the timestamp in
``X-Twilio-Email-Event-Webhook-Timestamp``. The signature is checked against every configured
public key (base64 DER, as the console shows it) before the body is parsed, and the timestamp
must be within ``event_webhook_tolerance`` seconds of now (SendGrid's SDK checks no window).

A batch (a JSON array of events) becomes one :class:`~hub.model.WebhookEvent` per event, keyed
by ``sg_event_id``, so a redelivered batch is not processed twice. Processing: ``bounce``,
``dropped``, ``spamreport``, ``unsubscribe`` and ``group_unsubscribe`` put the address on the
suppression list; ``delivered``, ``open`` and ``click`` (and the rest) update the recipient's
and the send's status.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import time
from typing import TYPE_CHECKING, Any

import orjson
import structlog

from hub.errors import MalformedWebhookError, SignatureError
from hub.model import WebhookEvent

from .mailer import update_rows
from .message import normalise

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec

    from hub.api import TableSession
    from hub.model import HubEvent

    from .mailer import Mailer

log = structlog.get_logger("plugins.sendgrid")

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
SUPPRESSING = frozenset({"bounce", "dropped", "spamreport", "unsubscribe", "group_unsubscribe"})
"""Events after which the address is never sent to again."""
STATUS_OF = {
    "processed": "processed",
    "deferred": "deferred",
    "delivered": "delivered",
    "open": "opened",
    "click": "clicked",
    "bounce": "bounced",
    "dropped": "dropped",
    "spamreport": "spam_reported",
    "unsubscribe": "unsubscribed",
    "group_unsubscribe": "unsubscribed",
}
PROGRESS = ("sent", "processed", "deferred", "delivered", "opened", "clicked")
"""Send statuses in order: an event never moves a send back (an open after a click)."""
MAX_EVENTS = 10_000


@functools.lru_cache(maxsize=32)
def load_key(encoded: str) -> ec.EllipticCurvePublicKey:
    """A public key from its base64 DER form (SendGrid's console), or a PEM text.

    :raise ValueError: not a P-256 public key.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    text = encoded.strip()
    if text.startswith("-----BEGIN"):
        key = serialization.load_pem_public_key(text.encode())
    else:
        key = serialization.load_der_public_key(base64.b64decode(text, validate=True))
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("not a P-256 public key")
    return key


def verify(
    body: bytes,
    signature: str | None,
    timestamp: str | None,
    public_keys: list[str],
    tolerance: int,
    now: float | None = None,
) -> None:
    """Check the batch's signature with any of ``public_keys`` and its timestamp window.

    :raise SignatureError: no key configured, a missing, malformed or wrong signature, or a
        timestamp outside ``tolerance`` seconds.
    """
    if not public_keys:
        raise SignatureError("no event_webhook_public_keys are configured for sendgrid")
    if not signature or not timestamp:
        raise SignatureError(f"missing {SIGNATURE_HEADER} or {TIMESTAMP_HEADER}")
    try:
        der = base64.b64decode(signature.strip(), validate=True)
        signed_at = int(timestamp.strip())
    except (binascii.Error, ValueError):
        raise SignatureError("the event webhook signature or timestamp is malformed") from None
    current = time.time() if now is None else now
    if abs(current - signed_at) > tolerance:
        raise SignatureError(f"the event webhook timestamp is more than {tolerance}s off")
    # imported on the first event batch: start-up stays light
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    signed = timestamp.strip().encode() + body
    for encoded in public_keys:
        try:
            load_key(encoded).verify(der, signed, ec.ECDSA(hashes.SHA256()))
            return
        except InvalidSignature:
            continue
        except ValueError:
            log.warning("an event_webhook_public_keys entry is not a P-256 public key")
    raise SignatureError("the event webhook signature matches no configured key")


def parse(body: bytes) -> list[WebhookEvent]:
    """The events of a verified batch.

    :raise MalformedWebhookError: not a JSON array of event objects, or too many events.
    """
    try:
        payload: Any = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedWebhookError(f"the event batch is not JSON: {exc}") from None
    if not isinstance(payload, list) or not all(isinstance(e, dict) for e in payload):
        raise MalformedWebhookError("the event batch is not a JSON array of objects")
    if len(payload) > MAX_EVENTS:
        raise MalformedWebhookError(f"the event batch has over {MAX_EVENTS} events")
    events = []
    for event in payload:
        if not isinstance(event.get("event"), str) or not isinstance(event.get("email"), str):
            raise MalformedWebhookError("an event has no 'event' or 'email'")
        event_id = event.get("sg_event_id") or _fingerprint(event)
        events.append(WebhookEvent(id=str(event_id), type=f"event.{event['event']}", data=event))
    return events


def _fingerprint(event: dict[str, Any]) -> str:
    return hashlib.sha256(orjson.dumps(event, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]


def message_id_of(event: dict[str, Any]) -> str:
    """The ``X-Message-Id`` of the send an event is about (``sg_message_id`` up to its dot)."""
    return str(event.get("sg_message_id") or "").split(".", 1)[0]


async def process(event: HubEvent, mailer: Mailer) -> None:
    """Apply one stored event: suppress the address, or advance the send's status.
    Idempotent (the same event sets the same rows)."""
    data = dict(event.data)
    kind, email = str(data["event"]), normalise(str(data["email"]))
    if kind in SUPPRESSING:
        reason = str(data.get("reason") or data.get("type") or kind)
        await mailer.suppress([(email, reason, kind)])
        log.info("address suppressed", email=email, kind=kind)
    status = STATUS_OF.get(kind)
    message_id = message_id_of(data)
    if status is None or not message_id:
        return
    at = data.get("timestamp")
    await mailer.tables.upsert(
        "recipient_status",
        [
            {
                "message_id": message_id,
                "email": email,
                "status": status,
                "at": at if isinstance(at, int) else int(time.time()),
            }
        ],
    )
    await mailer.tables.transaction(
        lambda tx: _advance(tx, message_id, str(data.get("hub_send") or ""), status)
    )


def _advance(tx: TableSession, message_id: str, send_id: str, status: str) -> None:
    for row in tx.query("sends", "message_id = ? OR id = ?", [message_id, send_id]):
        current = str(row["status"])
        if status in PROGRESS and (
            current not in PROGRESS or PROGRESS.index(status) <= PROGRESS.index(current)
        ):
            continue  # progress never moves a send back, nor past a bounce or a drop
        update_rows(tx, "sends", "id", [{"id": row["id"], "status": status}])
