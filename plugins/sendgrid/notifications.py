"""Notifications: hub events to the people they concern, and ``POST /api/notifications``.

Hub events (the ``event`` hook) the plugin e-mails:

- ``document.analyzed`` / ``document.analysis_failed`` → the uploader. Expected data:
  ``uploader_email`` (required; the event is ignored without it), ``uploader_name``,
  ``document_id``, ``document_name``, ``client_name`` and, when it failed, ``error``.
- ``stripe.invoice.payment_failed`` → the firm's ``billing_contact``. Read from the data, or
  from its ``invoice`` object: ``customer_name``, ``customer_email``, ``amount_due`` (integer
  minor units), ``currency``, ``invoice_id`` (or ``id``), ``hosted_invoice_url``.

Each is sent with its template when one is configured (the fields above as template data),
else as plain text.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import structlog

from .mailer import recipients_of
from .message import Message, Recipient

if TYPE_CHECKING:
    from hub.model import HubEvent

    from .mailer import Mailer

log = structlog.get_logger("plugins.sendgrid")
DOCUMENT_FIELDS = (
    "uploader_email",
    "uploader_name",
    "document_id",
    "document_name",
    "client_name",
    "error",
)
INVOICE_FIELDS = (
    "customer_name",
    "customer_email",
    "amount_due",
    "currency",
    "invoice_id",
    "hosted_invoice_url",
)


def _pick(data: Mapping[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    return {f: data[f] for f in fields if data.get(f) is not None}


def document_message(event: HubEvent, mailer: Mailer) -> Message | None:
    """The "document processed" e-mail of a ``document.*`` event (None: no uploader)."""
    data = _pick(event.data, DOCUMENT_FIELDS)
    email = data.get("uploader_email")
    if not isinstance(email, str) or "@" not in email:
        log.info("document event without uploader_email; no e-mail", event=event.type)
        return None
    ok = event.type == "document.analyzed"
    name = data.get("document_name") or data.get("document_id") or "your document"
    templates = mailer.settings.templates
    subject = f"{name} was processed" if ok else f"{name} could not be processed"
    text = f"Hello {data.get('uploader_name') or ''},\n\n".replace(" ,", ",")
    text += (
        f"{name} has been analysed and is ready in {mailer.settings.firm_name}'s portal.\n"
        if ok
        else f"{name} could not be analysed: {data.get('error') or 'unknown error'}.\n"
    )
    return Message(
        kind="document_processed" if ok else "document_failed",
        subject=subject,
        text=text,
        recipients=(Recipient(email, str(data.get("uploader_name") or "")),),
        template_id=templates.document_processed if ok else templates.document_failed,
        data={**data, "success": ok, "firm": mailer.settings.firm_name},
    )


def payment_failed_message(event: HubEvent, mailer: Mailer) -> Message | None:
    """The billing contact's notice of a failed invoice payment (None: no contact set)."""
    contact = mailer.settings.billing_contact
    if contact is None:
        log.info("no billing_contact configured; payment failure not e-mailed")
        return None
    invoice = event.data.get("invoice")
    source = {**(invoice if isinstance(invoice, Mapping) else {}), **event.data}
    source.setdefault("invoice_id", source.get("id"))
    data = _pick(source, INVOICE_FIELDS)
    amount = data.get("amount_due")
    shown = (
        f"{int(amount) // 100}.{int(amount) % 100:02d} {str(data.get('currency', '')).upper()}"
        if isinstance(amount, int)
        else "an amount"
    )
    who = data.get("customer_name") or data.get("customer_email") or "a customer"
    text = f"The payment of {shown} by {who} failed (invoice {data.get('invoice_id', '?')}).\n"
    if data.get("hosted_invoice_url"):
        text += f"Invoice: {data['hosted_invoice_url']}\n"
    return Message(
        kind="payment_failed",
        subject=f"Payment failed: {who}",
        text=text,
        recipients=recipients_of([contact]),
        template_id=mailer.settings.templates.payment_failed,
        data={**data, "amount": shown, "firm": mailer.settings.firm_name},
    )


BUILDERS = {
    "document.analyzed": document_message,
    "document.analysis_failed": document_message,
    "stripe.invoice.payment_failed": payment_failed_message,
}


async def on_event(event: HubEvent, mailer: Mailer) -> None:
    """E-mail the people a hub event concerns (other events are ignored)."""
    builder = BUILDERS.get(event.type)
    message = builder(event, mailer) if builder else None
    if message is None:
        return
    batch = f"event:{event.id}" if event.id else None
    # events arrive at least once: a redelivered event finds its send recorded
    if batch and await mailer.tables.query("sends", "batch = ?", [batch], limit=1):
        return
    await mailer.send(message, batch=batch)
