"""Billing in the Stripe sandbox (package private): subscriptions with items, invoices with
lines, checkout and portal sessions; renewals and payment failures without test clocks; bulk
seeding. Invoices are paid through :mod:`plugins.stripe._sandbox_payments`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._sandbox_objects import card_error, equal_to, known, recurring, text
from ._sandbox_payments import DECLINES, PaymentsLedger
from ._sandbox_store import JSON, Page, as_bool, as_int, invalid, metadata_update

BILLING_ROUTES: tuple[tuple[str, str, str, str], ...] = (
    ("GET", "/v1/subscriptions", "list_subscriptions", "subscription"),
    ("POST", "/v1/subscriptions", "create_subscription", "subscription"),
    ("GET", "/v1/subscriptions/search", "search_subscriptions", "subscription"),
    ("GET", "/v1/subscriptions/{id}", "get:subscription", "subscription"),
    ("POST", "/v1/subscriptions/{id}", "update_subscription", "subscription"),
    ("DELETE", "/v1/subscriptions/{id}", "cancel_subscription", "subscription"),
    ("GET", "/v1/subscription_items", "list_subscription_items", "subscription"),
    ("GET", "/v1/subscription_items/{id}", "get:subscription_item", "subscription"),
    ("GET", "/v1/invoices", "list_invoices", "invoice"),
    ("GET", "/v1/invoices/{id}", "get:invoice", "invoice"),
    ("GET", "/v1/invoices/{id}/lines", "list_invoice_lines", "invoice"),
    ("POST", "/v1/invoices/{id}/finalize", "finalize_invoice", "invoice"),
    ("POST", "/v1/invoices/{id}/pay", "pay_invoice", "invoice"),
    ("POST", "/v1/invoices/{id}/void", "void_invoice", "invoice"),
    ("POST", "/v1/invoices/{id}/mark_uncollectible", "mark_uncollectible_invoice", "invoice"),
    ("POST", "/v1/checkout/sessions", "create_checkout_session", "checkout_session"),
    ("GET", "/v1/checkout/sessions/{id}", "get:checkout.session", "checkout_session"),
    ("POST", "/v1/billing_portal/sessions", "create_portal_session", "billing_portal_session"),
)
"""The billing endpoints (the same shape as :data:`plugins.stripe.sandbox.ROUTES`)."""
_PERIOD = {"day": 86400, "week": 7 * 86400, "month": 30 * 86400, "year": 365 * 86400}
_SUBSCRIPTION_FIELDS = frozenset(
    {"customer", "items", "payment_behavior", "default_payment_method", "metadata"}
    | {"payment_settings", "proration_behavior", "cancel_at_period_end", "description"}
    | {"collection_method", "days_until_due", "off_session"}
)
_BEHAVIORS = (
    "allow_incomplete",
    "default_incomplete",
    "error_if_incomplete",
    "pending_if_incomplete",
)
_PRORATIONS = ("always_invoice", "create_prorations", "none")
_NAMES = ("Acme", "Birch", "Cedar", "Delta", "Elm", "Fjord", "Granite", "Harbor", "Iris", "Juniper")
_SUFFIXES = ("LLC", "Inc.", "Partners", "& Co.", "Group", "Bookkeeping")


def _list(data: list[JSON], url: str) -> JSON:
    """A nested list object (``items``, ``lines``) as Stripe embeds it: at most 10 shown."""
    return {
        "object": "list",
        "data": data[:10],
        "has_more": len(data) > 10,
        "total_count": len(data),
        "url": url,
    }


class BillingLedger(PaymentsLedger):
    """The ledger with Stripe Billing's objects and flows."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.pending_prorations: dict[str, list[JSON]] = {}
        self._session_items: dict[str, list[tuple[JSON, int]]] = {}
        self._all_lines: dict[str, list[JSON]] = {}
        self._all_items: dict[str, list[JSON]] = {}

    def included(self, obj: JSON, field: str) -> Any:
        """Also an invoice's ``confirmation_secret`` (its payment intent's client secret)."""
        if obj.get("object") == "invoice" and field == "confirmation_secret":
            intent = self.tables["payment_intent"].rows.get(obj["payment_intent"] or "")
            if intent is None:
                return None  # nothing to pay
            return {"client_secret": intent["client_secret"], "type": "payment_intent"}
        return super().included(obj, field)

    def attempted(self, intent: JSON, failure: str | None) -> None:
        """A confirmed payment intent of an invoice pays it (or fails to)."""
        for invoice in self.tables["invoice"].newest():
            if invoice["payment_intent"] == intent["id"]:
                self._settle(invoice, intent, failure)
                return

    # ---- invoices

    def _line(
        self, sub: JSON, item: JSON, amount: int, period: JSON, proration: bool, label: str
    ) -> JSON:
        line = self.base("line_item")
        line |= {
            "amount": amount,
            "amount_excluding_tax": amount,
            "currency": item["price"]["currency"],
            "description": label,
            "discount_amounts": [],
            "discountable": not proration,
            "discounts": [],
            "metadata": {},
            "period": period,
            "price": item["price"],
            "proration": proration,
            "proration_details": {"credited_items": None},
            "quantity": item["quantity"],
            "subscription": sub["id"],
            "subscription_item": item["id"],
            "tax_amounts": [],
            "tax_rates": [],
            "type": "invoiceitem" if proration else "subscription",
            "unit_amount_excluding_tax": str(item["price"]["unit_amount"]),
        }
        del line["created"]  # invoice lines have no creation time
        return line

    def _invoice(self, sub: JSON, lines: list[JSON], reason: str) -> JSON:
        """A draft invoice of ``sub`` with ``lines`` (``invoice.created``), then finalized."""
        invoice = self.base("invoice")
        customer = self.tables["customer"].rows.get(sub["customer"], {})
        total = sum(line["amount"] for line in lines)
        for line in lines:
            line["invoice"] = invoice["id"]
        self._all_lines[invoice["id"]] = lines
        invoice |= {
            "account_country": "US",
            "account_name": "Sandbox Account",
            "amount_due": max(total, 0),
            "amount_paid": 0,
            "amount_remaining": max(total, 0),
            "amount_shipping": 0,
            "application": None,
            "attempt_count": 0,
            "attempted": False,
            "auto_advance": True,
            "automatic_tax": {"enabled": False, "status": None},
            "billing_reason": reason,
            "charge": None,
            "collection_method": sub["collection_method"],
            "currency": sub["currency"],
            "customer": sub["customer"],
            "customer_email": customer.get("email"),
            "customer_name": customer.get("name"),
            "default_payment_method": None,
            "default_tax_rates": [],
            "description": None,
            "discount": None,
            "due_date": None,
            "ending_balance": None,
            "hosted_invoice_url": None,
            "invoice_pdf": None,
            "lines": _list(lines, f"/v1/invoices/{invoice['id']}/lines"),
            "metadata": {},
            "next_payment_attempt": None,
            "number": None,
            "paid": False,
            "paid_out_of_band": False,
            "payment_intent": None,
            "payment_settings": {
                "default_mandate": None,
                "payment_method_options": None,
                "payment_method_types": None,
            },
            "period_end": sub["current_period_end"],
            "period_start": sub["current_period_start"],
            "post_payment_credit_notes_amount": 0,
            "pre_payment_credit_notes_amount": 0,
            "starting_balance": 0,
            "status": "draft",
            "status_transitions": {
                "finalized_at": None,
                "marked_uncollectible_at": None,
                "paid_at": None,
                "voided_at": None,
            },
            "subscription": sub["id"],
            "subtotal": total,
            "subtotal_excluding_tax": total,
            "tax": None,
            "total": total,
            "total_excluding_tax": total,
            "total_tax_amounts": [],
        }
        self.insert(invoice, "invoice.created")
        return self._finalize(invoice)

    def _finalize(self, invoice: JSON) -> JSON:
        """Draft -> open, with a number and (when something is due) a payment intent."""
        count = sum(1 for i in self.tables["invoice"].rows.values() if i["number"])
        changes: JSON = {
            "status": "open",
            "number": f"SBX-{count + 1:04d}",
            "ending_balance": 0,
            "hosted_invoice_url": f"https://invoice.stripe.com/i/sandbox/{invoice['id']}",
            "status_transitions": {**invoice["status_transitions"], "finalized_at": self.now},
        }
        if invoice["amount_due"] > 0:
            intent = self.payment_intent_object(
                invoice["amount_due"], invoice["currency"], invoice["customer"]
            )
            intent["description"] = "Subscription creation"
            self.insert(intent, "payment_intent.created")
            changes["payment_intent"] = intent["id"]
        self.change(invoice, changes, "invoice.finalized")
        if invoice["amount_due"] == 0:
            self._mark_paid(invoice)
        return invoice

    def _mark_paid(self, invoice: JSON) -> None:
        changes = {
            "status": "paid",
            "paid": True,
            "amount_paid": invoice["amount_due"],
            "amount_remaining": 0,
            "attempted": True,
            "status_transitions": {**invoice["status_transitions"], "paid_at": self.now},
        }
        self.change(invoice, changes, "invoice.paid")
        self.emit("invoice.payment_succeeded", invoice)

    def _collect(self, invoice: JSON, method: str | None) -> str | None:
        """Try to pay an open invoice; the decline reason when it failed (``no_method`` when
        there is nothing to pay with), None when it is paid."""
        if invoice["status"] != "open":
            return None
        intent = self.tables["payment_intent"].rows.get(invoice["payment_intent"] or "")
        if intent is None:
            return None
        method = self._method_of(invoice["customer"], method)
        if method is None:
            return "no_method"
        failure = self._attempt(intent, method)
        self._settle(invoice, intent, failure)
        return failure

    def _settle(self, invoice: JSON, intent: JSON, failure: str | None) -> None:
        """Record a payment attempt of ``invoice`` and move its subscription along."""
        attempt = {"attempted": True, "attempt_count": invoice["attempt_count"] + 1}
        self.change(invoice, attempt | {"charge": intent["latest_charge"]}, "invoice.updated")
        sub = self.tables["subscription"].rows.get(invoice["subscription"] or "")
        if failure is None:
            self._mark_paid(invoice)
            if sub is not None and sub["status"] in ("incomplete", "past_due", "unpaid"):
                self.change(sub, {"status": "active"}, "customer.subscription.updated")
            return
        self.change(invoice, {"next_payment_attempt": self.now + 3 * 86400}, None)
        self.emit("invoice.payment_failed", invoice)
        if sub is not None and sub["status"] in ("active", "trialing"):
            self.change(sub, {"status": "past_due"}, "customer.subscription.updated")

    def list_invoices(self, params: Mapping[str, Any], limit: int) -> Page:
        """``GET /v1/invoices`` (``customer``, ``subscription``, ``status`` filters)."""
        keep = equal_to(params, ("customer", "subscription", "status"))
        return self.page("invoice", params, limit, keep=keep)

    def list_invoice_lines(self, oid: str, params: Mapping[str, Any], limit: int) -> Page:
        """``GET /v1/invoices/{id}/lines``: every line, in order."""
        self.get("invoice", oid)
        lines = self._all_lines.get(oid, [])
        return _offset_page(lines, params, limit)

    def finalize_invoice(self, oid: str, params: Mapping[str, Any]) -> JSON:
        """``POST /v1/invoices/{id}/finalize``."""
        invoice = self.get("invoice", oid)
        if invoice["status"] != "draft":
            raise invalid("This invoice is already finalized.", code="invoice_not_editable")
        return self._finalize(invoice)

    def pay_invoice(self, oid: str, params: Mapping[str, Any]) -> JSON:
        """``POST /v1/invoices/{id}/pay``: charge it now (402 on a decline)."""
        known(params, frozenset({"payment_method", "paid_out_of_band", "off_session"}))
        invoice = self.get("invoice", oid)
        if invoice["status"] != "open":
            raise invalid(f"Invoice is already {invoice['status']}.", code="invoice_not_open")
        if as_bool(params, "paid_out_of_band"):
            self.change(invoice, {"paid_out_of_band": True}, None)
            self._mark_paid(invoice)
            return invoice
        failure = self._collect(invoice, text(params, "payment_method"))
        if failure == "no_method":
            raise invalid("This customer has no attached payment source or default payment method.")
        if failure is not None:
            raise self._decline_error(
                self.get("payment_intent", invoice["payment_intent"]), failure
            )
        return invoice

    def void_invoice(self, oid: str, params: Mapping[str, Any]) -> JSON:
        """``POST /v1/invoices/{id}/void``."""
        invoice = self.get("invoice", oid)
        if invoice["status"] != "open":
            raise invalid("You can only void an open invoice.", code="invoice_not_open")
        transitions = {**invoice["status_transitions"], "voided_at": self.now}
        return self.change(
            invoice, {"status": "void", "status_transitions": transitions}, "invoice.voided"
        )

    def mark_uncollectible_invoice(self, oid: str, params: Mapping[str, Any]) -> JSON:
        """``POST /v1/invoices/{id}/mark_uncollectible``."""
        invoice = self.get("invoice", oid)
        if invoice["status"] != "open":
            raise invalid(
                "You can only mark an open invoice uncollectible.", code="invoice_not_open"
            )
        transitions = {**invoice["status_transitions"], "marked_uncollectible_at": self.now}
        changes = {"status": "uncollectible", "status_transitions": transitions}
        return self.change(invoice, changes, "invoice.marked_uncollectible")

    # ---- subscriptions

    def _item(self, sub_id: str, price: JSON, quantity: int) -> JSON:
        item = self.base("subscription_item")
        item |= {
            "billing_thresholds": None,
            "metadata": {},
            "price": price,
            "quantity": quantity,
            "subscription": sub_id,
            "tax_rates": [],
        }
        self.tables["subscription_item"].add(item, self.serial())
        return item

    def _items(self, sub: JSON, items: list[JSON]) -> None:
        self._all_items[sub["id"]] = items
        sub["items"] = _list(items, f"/v1/subscription_items?subscription={sub['id']}")

    def _price_param(self, entry: Mapping[str, Any], at: int) -> tuple[JSON, int]:
        price = self.ref("price", entry.get("price"), f"items[{at}][price]")
        if price["recurring"] is None:
            raise invalid(
                "The price specified is set to `type=one_time` but this field only accepts "
                "prices with `type=recurring`.",
                param=f"items[{at}][price]",
            )
        quantity = as_int(entry, "quantity", 1)
        if quantity is None or quantity < 0:
            raise invalid("Invalid quantity", param=f"items[{at}][quantity]")
        return price, quantity

    def create_subscription(self, params: Mapping[str, Any]) -> JSON:
        """``POST /v1/subscriptions``: the first invoice is created, finalized and (unless
        ``payment_behavior=default_incomplete``) paid with the default payment method."""
        known(params, _SUBSCRIPTION_FIELDS)
        customer = self.ref("customer", params.get("customer"), "customer")
        entries = params.get("items")
        if not isinstance(entries, list) or not entries:
            raise invalid("Missing required param: items.", param="items")
        prices = [self._price_param(entry, at) for at, entry in enumerate(entries)]
        behavior = text(params, "payment_behavior") or "allow_incomplete"
        if behavior not in _BEHAVIORS:
            raise invalid(f"Invalid payment_behavior: {behavior}", param="payment_behavior")
        method = self._method_of(customer["id"], text(params, "default_payment_method"))
        if behavior == "error_if_incomplete":
            failure = self._failure(customer["id"], method) if method else "no_method"
            if failure == "no_method":
                raise invalid(
                    "This customer has no attached payment source or default payment method."
                )
            if failure is not None:
                code, decline, message = DECLINES[failure]
                raise card_error(code, decline, message)
        sub = self._subscription_object(customer["id"], prices[0][0])
        sub["default_payment_method"] = text(params, "default_payment_method")
        sub["metadata"] = metadata_update({}, params.get("metadata") or {})
        sub["description"] = text(params, "description")
        sub["cancel_at_period_end"] = as_bool(params, "cancel_at_period_end")
        settings = params.get("payment_settings")
        if isinstance(settings, dict) and settings.get("save_default_payment_method"):
            sub["payment_settings"]["save_default_payment_method"] = settings[
                "save_default_payment_method"
            ]
        self._items(sub, [self._item(sub["id"], price, qty) for price, qty in prices])
        self.insert(sub, "customer.subscription.created")
        invoice = self._invoice(sub, self._period_lines(sub), "subscription_create")
        self.change(sub, {"latest_invoice": invoice["id"]}, None)
        if invoice["status"] == "paid":
            self.change(sub, {"status": "active"}, "customer.subscription.updated")
        elif behavior != "default_incomplete":
            self._collect(invoice, method)
        return sub

    def _subscription_object(self, customer: str, price: JSON) -> JSON:
        sub = self.base("subscription")
        interval = price["recurring"]
        length = _PERIOD[interval["interval"]] * interval["interval_count"]
        sub |= {
            "application": None,
            "application_fee_percent": None,
            "automatic_tax": {"enabled": False},
            "billing_cycle_anchor": sub["created"],
            "billing_thresholds": None,
            "cancel_at": None,
            "cancel_at_period_end": False,
            "canceled_at": None,
            "cancellation_details": {"comment": None, "feedback": None, "reason": None},
            "collection_method": "charge_automatically",
            "currency": price["currency"],
            "current_period_end": sub["created"] + length,
            "current_period_start": sub["created"],
            "customer": customer,
            "days_until_due": None,
            "default_payment_method": None,
            "default_source": None,
            "default_tax_rates": [],
            "description": None,
            "discount": None,
            "ended_at": None,
            "latest_invoice": None,
            "metadata": {},
            "next_pending_invoice_item_invoice": None,
            "on_behalf_of": None,
            "pause_collection": None,
            "payment_settings": {
                "payment_method_options": None,
                "payment_method_types": None,
                "save_default_payment_method": "off",
            },
            "pending_invoice_item_interval": None,
            "pending_setup_intent": None,
            "pending_update": None,
            "schedule": None,
            "start_date": sub["created"],
            "status": "incomplete",
            "test_clock": None,
            "transfer_data": None,
            "trial_end": None,
            "trial_settings": None,
            "trial_start": None,
        }
        return sub

    def _period_lines(self, sub: JSON) -> list[JSON]:
        period = {"start": sub["current_period_start"], "end": sub["current_period_end"]}
        lines = [
            self._line(
                sub,
                item,
                item["price"]["unit_amount"] * item["quantity"],
                period,
                False,
                f"{item['quantity']} x {item['price']['nickname'] or item['price']['product']}",
            )
            for item in self._all_items.get(sub["id"], [])
        ]
        return [*self.pending_prorations.pop(sub["id"], []), *lines]

    def update_subscription(self, oid: str, params: Mapping[str, Any]) -> JSON:
        """``POST /v1/subscriptions/{id}``: items (plan changes with ``proration_behavior``),
        ``cancel_at_period_end``, metadata, default payment method."""
        known(params, _SUBSCRIPTION_FIELDS - {"customer"})
        sub = self.get("subscription", oid)
        if sub["status"] in ("canceled", "incomplete_expired"):
            raise invalid(
                "A canceled subscription can only update its cancellation_details and metadata."
            )
        proration = text(params, "proration_behavior") or "create_prorations"
        if proration not in _PRORATIONS:
            raise invalid(f"Invalid proration_behavior: {proration}", param="proration_behavior")
        changes: JSON = {}
        if "metadata" in params:
            changes["metadata"] = metadata_update(sub["metadata"], params["metadata"])
        if "default_payment_method" in params:
            changes["default_payment_method"] = text(params, "default_payment_method") or None
        if "description" in params:
            changes["description"] = text(params, "description") or None
        if "cancel_at_period_end" in params:
            at_end = as_bool(params, "cancel_at_period_end")
            changes["cancel_at_period_end"] = at_end
            changes["cancel_at"] = sub["current_period_end"] if at_end else None
            reason = "cancellation_requested" if at_end else None
            changes["cancellation_details"] = {**sub["cancellation_details"], "reason": reason}
        prorations: list[JSON] = []
        if "items" in params:
            prorations = self._change_items(sub, params["items"], changes)
        self.change(sub, changes, "customer.subscription.updated")
        if prorations and proration == "always_invoice":
            invoice = self._invoice(sub, prorations, "subscription_update")
            self.change(sub, {"latest_invoice": invoice["id"]}, None)
            self._collect(invoice, sub["default_payment_method"])
        elif prorations and proration == "create_prorations":
            self.pending_prorations.setdefault(sub["id"], []).extend(prorations)
        return sub

    def _change_items(self, sub: JSON, entries: Any, changes: JSON) -> list[JSON]:
        """Apply ``items[n][id|price|quantity|deleted]``; the proration lines of the change."""
        if not isinstance(entries, list):
            raise invalid("Invalid items: must be an array", param="items")
        items = list(self._all_items.get(sub["id"], []))
        by_id = {item["id"]: item for item in items}
        span = max(sub["current_period_end"] - sub["current_period_start"], 1)
        left = max(sub["current_period_end"] - self.now, 0) / span
        period = {"start": self.now, "end": sub["current_period_end"]}
        lines: list[JSON] = []
        for at, entry in enumerate(entries):
            if not isinstance(entry, dict):
                raise invalid("Invalid items", param=f"items[{at}]")
            old = by_id.get(entry["id"]) if entry.get("id") else None
            if entry.get("id") and old is None:
                raise invalid(
                    f"No such subscription item: '{entry['id']}'", param=f"items[{at}][id]"
                )
            if old is not None:
                credit = -round(old["price"]["unit_amount"] * old["quantity"] * left)
                lines.append(self._line(sub, old, credit, period, True, "Unused time"))
            if as_bool(entry, "deleted"):
                if old is not None:
                    items.remove(old)
                    self.tables["subscription_item"].remove(old["id"])
                continue
            if old is None:
                price, quantity = self._price_param(entry, at)
                new = self._item(sub["id"], price, quantity)
                items.append(new)
            else:
                named = entry.get("price") or old["price"]["id"]
                price = self.ref("price", named, f"items[{at}][price]")
                quantity = as_int(entry, "quantity", old["quantity"]) or 0
                new = {**old, "price": price, "quantity": quantity}  # the old one stays intact
                items[items.index(old)] = new
                self.tables["subscription_item"].rows[old["id"]] = new
            debit = round(new["price"]["unit_amount"] * new["quantity"] * left)
            lines.append(self._line(sub, new, debit, period, True, "Remaining time"))
        self._all_items[sub["id"]] = items
        changes["items"] = _list(items, f"/v1/subscription_items?subscription={sub['id']}")
        return lines

    def cancel_subscription(self, oid: str, params: Mapping[str, Any]) -> JSON:
        """``DELETE /v1/subscriptions/{id}``: canceled now (``customer.subscription.deleted``)."""
        sub = self.get("subscription", oid)
        if sub["status"] == "canceled":
            raise invalid(f"No such subscription: '{oid}'", code="resource_missing")
        return self._end(sub, "cancellation_requested")

    def _end(self, sub: JSON, reason: str) -> JSON:
        details = {**sub["cancellation_details"], "reason": reason}
        changes = {
            "status": "canceled",
            "canceled_at": self.now,
            "ended_at": self.now,
            "cancellation_details": details,
        }
        return self.change(sub, changes, "customer.subscription.deleted")

    def list_subscriptions(self, params: Mapping[str, Any], limit: int) -> Page:
        """``GET /v1/subscriptions``: not canceled ones unless ``status`` says (``all``)."""
        status = text(params, "status")
        wanted = equal_to(params, ("customer",))
        price = text(params, "price")

        def keep(sub: JSON) -> bool:
            if status is None and sub["status"] in ("canceled", "incomplete_expired"):
                return False
            if status not in (None, "all") and sub["status"] != status:
                return False
            if price and all(i["price"]["id"] != price for i in sub["items"]["data"]):
                return False
            return wanted is None or wanted(sub)

        return self.page("subscription", params, limit, keep=keep)

    def search_subscriptions(self, params: Mapping[str, Any], limit: int) -> Page:
        """``GET /v1/subscriptions/search``."""
        return self.search("subscription", params, limit)

    def list_subscription_items(self, params: Mapping[str, Any], limit: int) -> Page:
        """``GET /v1/subscription_items?subscription=...``."""
        sub = self.ref("subscription", text(params, "subscription", required=True), "subscription")
        return _offset_page(self._all_items.get(sub["id"], []), params, limit)

    def simulate_renewal(self, sub_id: str) -> JSON:
        """The subscription's period ends (no test clock needed): the next period starts and
        its invoice is created, finalized and paid (``invoice.*`` events) and returned; or,
        when ``cancel_at_period_end`` was set, the subscription ends and is returned."""
        sub = self.get("subscription", sub_id)
        if sub["status"] not in ("active", "past_due", "trialing", "unpaid"):
            # an incomplete one expires rather than renews; a canceled one has ended
            raise ValueError(f"subscription {sub_id} is {sub['status']}: it does not renew")
        if sub["cancel_at_period_end"]:
            return self._end(sub, "cancellation_requested")
        price = sub["items"]["data"][0]["price"]["recurring"]
        length = _PERIOD[price["interval"]] * price["interval_count"]
        period = {
            "current_period_start": sub["current_period_end"],
            "current_period_end": sub["current_period_end"] + length,
        }
        self.change(sub, period, "customer.subscription.updated")
        invoice = self._invoice(sub, self._period_lines(sub), "subscription_cycle")
        self.change(sub, {"latest_invoice": invoice["id"]}, None)
        failure = self._collect(invoice, sub["default_payment_method"])
        if failure == "no_method":
            self._settle(invoice, self.get("payment_intent", invoice["payment_intent"]), failure)
        return invoice

    def simulate_payment_failure(self, sub_id: str, reason: str = "insufficient_funds") -> JSON:
        """A renewal whose payment is declined (``invoice.payment_failed``; the
        subscription becomes ``past_due``); the customer's later payments succeed again."""
        sub = self.get("subscription", sub_id)
        before = self.declines.get(sub["customer"])
        self.decline(sub["customer"], reason)
        try:
            if sub["default_payment_method"] is None and self._method_of(sub["customer"]) is None:
                sub["default_payment_method"] = "pm_card_visa"
            return self.simulate_renewal(sub_id)
        finally:
            self.decline(sub["customer"], before)

    # ---- sessions

    def create_checkout_session(self, params: Mapping[str, Any]) -> JSON:
        """``POST /v1/checkout/sessions`` (minimal: mode, customer, urls, line items)."""
        allowed = {"mode", "customer", "success_url", "cancel_url", "line_items", "metadata"}
        known(params, frozenset(allowed | {"client_reference_id"}))
        mode = text(params, "mode", required=True)
        if mode not in ("payment", "setup", "subscription"):
            raise invalid(f"Invalid mode: {mode}", param="mode")
        customer = text(params, "customer")
        if customer is not None:
            self.ref("customer", customer, "customer")
        entries = params.get("line_items") or []
        if not isinstance(entries, list) or (mode != "setup" and not entries):
            raise invalid("Missing required param: line_items.", param="line_items")
        items = [self._checkout_item(entry, at) for at, entry in enumerate(entries)]
        total = sum(price["unit_amount"] * quantity for price, quantity in items)
        session = self.base("checkout.session")
        self._session_items[session["id"]] = items
        session |= {
            "amount_subtotal": total if items else None,
            "amount_total": total if items else None,
            "cancel_url": text(params, "cancel_url"),
            "client_reference_id": text(params, "client_reference_id"),
            "currency": items[0][0]["currency"] if items else None,
            "customer": customer,
            "expires_at": session["created"] + 86400,
            "metadata": metadata_update({}, params.get("metadata") or {}),
            "mode": mode,
            "payment_intent": None,
            "payment_status": "unpaid",
            "status": "open",
            "subscription": None,
            "success_url": text(params, "success_url"),
            "url": f"https://checkout.stripe.com/c/pay/{session['id']}",
        }
        return self.insert(session, None)

    def _checkout_item(self, entry: Any, at: int) -> tuple[JSON, int]:
        if not isinstance(entry, dict):
            raise invalid("Invalid line_items", param=f"line_items[{at}]")
        price = self.ref("price", entry.get("price"), f"line_items[{at}][price]")
        quantity = as_int(entry, "quantity", 1)
        if quantity is None or quantity < 1:
            raise invalid("Invalid quantity", param=f"line_items[{at}][quantity]")
        return price, quantity

    def simulate_checkout_completed(self, session_id: str, method: str = "pm_card_visa") -> JSON:
        """The customer completes the checkout page paying with ``method``: the customer
        (made when the session named none), the paid subscription or payment intent, then
        ``checkout.session.completed``. A declining ``method`` raises the 402 card error."""
        session = self.get("checkout.session", session_id)
        if session["status"] != "open":
            raise ValueError(f"checkout session {session_id} is {session['status']}")
        customer = session["customer"]
        if customer is None:
            made = {"name": "Checkout Customer", "payment_method": method}
            customer = self.create_customer(made)["id"]
        items = self._session_items.get(session_id, [])
        changes: JSON = {"customer": customer, "status": "complete", "payment_status": "paid"}
        if session["mode"] == "subscription":
            lines = [{"price": price["id"], "quantity": str(n)} for price, n in items]
            sub = self.create_subscription(
                {"customer": customer, "items": lines, "default_payment_method": method}
            )
            changes["subscription"] = sub["id"]
        elif session["mode"] == "payment":
            payment = {"amount": str(session["amount_total"]), "currency": session["currency"]}
            payment |= {"customer": customer, "payment_method": method, "confirm": "true"}
            changes["payment_intent"] = self.create_payment_intent(payment)["id"]
        else:
            changes["payment_status"] = "no_payment_required"
        return self.change(session, changes, "checkout.session.completed")

    def create_portal_session(self, params: Mapping[str, Any]) -> JSON:
        """``POST /v1/billing_portal/sessions``: a customer-portal URL."""
        known(params, frozenset({"customer", "return_url", "configuration", "locale", "flow_data"}))
        customer = self.ref("customer", params.get("customer"), "customer")
        session = self.base("billing_portal.session")
        session |= {
            "configuration": "bpc_sandbox",
            "customer": customer["id"],
            "flow": None,
            "locale": None,
            "on_behalf_of": None,
            "return_url": text(params, "return_url"),
            "url": f"https://billing.stripe.com/p/session/test_{session['id'][4:]}",
        }
        return self.insert(session, None)

    # ---- seeding

    def seed(
        self,
        customers: int = 0,
        products: int = 0,
        subscriptions: int = 0,
    ) -> dict[str, int]:
        """Bulk objects without events, created in the past, oldest first: ``customers``,
        ``products`` (a monthly price each) and ``subscriptions`` (active, paid: each with
        its invoice, payment intent and charge, for the first customers). 200,000 customers
        take a couple of seconds."""
        start = self.now - 86400 - customers
        first = self._serial + 1
        made = [
            self.customer_object(
                name=f"{_NAMES[n % 10]} {_SUFFIXES[n % 6]} {n}",
                email=f"billing{n}@client{n}.example",
                created=start + n,
                invoice_settings={
                    "custom_fields": None,
                    "default_payment_method": "pm_card_visa",
                    "footer": None,
                    "rendering_options": None,
                },
            )
            for n in range(customers)
        ]
        self.tables["customer"].extend(made, first)  # one serial each, from ``first`` on
        self.recording = False
        try:
            self._seed_billing(products, subscriptions)
        finally:
            self.recording = True
        return {"customers": customers, "products": products, "subscriptions": subscriptions}

    def seed_demo(self) -> None:
        """Data for the offline demo: 25 customers, 3 monthly plans, 10 paid subscriptions,
        one of them past due after a declined renewal, and a refunded and a disputed charge
        (those write events, as they would on Stripe)."""
        self.seed(customers=25, products=3, subscriptions=10)
        subscriptions = list(self.tables["subscription"].newest())
        self.simulate_payment_failure(subscriptions[0]["id"])
        paid = [c for c in self.tables["charge"].newest() if c["status"] == "succeeded"]
        self.create_refund({"charge": paid[0]["id"], "amount": "500"})
        self.simulate_dispute(paid[1]["id"])

    def _seed_billing(self, products: int, subscriptions: int) -> None:
        prices = []
        for n in range(products):
            product = self.insert(self.product_object(f"Plan {n + 1}"))
            price = self.price_object(product["id"], 1000 * (n + 1), "usd", recurring())
            price["nickname"] = f"Plan {n + 1} monthly"
            prices.append(self.insert(price))
            self.change(product, {"default_price": price["id"]}, None)
        if subscriptions and not prices:
            product = self.insert(self.product_object("Plan"))
            prices.append(self.insert(self.price_object(product["id"], 1000, "usd", recurring())))
        owners = list(self.tables["customer"].rows)
        for n in range(min(subscriptions, len(owners))):
            price = prices[n % len(prices)]
            sub = self._subscription_object(owners[n], price)
            self._items(sub, [self._item(sub["id"], price, 1)])
            self.insert(sub)
            invoice = self._invoice(sub, self._period_lines(sub), "subscription_create")
            sub["latest_invoice"] = invoice["id"]
            self._collect(invoice, "pm_card_visa")


def _offset_page(rows: list[JSON], params: Mapping[str, Any], limit: int) -> Page:
    """A page of a short list kept in order (items, lines): after ``starting_after``."""
    after = params.get("starting_after")
    start = 0
    if after is not None:
        ids = [row["id"] for row in rows]
        if after not in ids:
            raise invalid(
                f"No such object: '{after}'", param="starting_after", code="resource_missing"
            )
        start = ids.index(after) + 1
    return Page(rows[start : start + limit], start + limit < len(rows))
