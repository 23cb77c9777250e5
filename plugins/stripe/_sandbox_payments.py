"""Payments in the Stripe sandbox (package private): payment intents, charges, refunds and
disputes, with Stripe's declining test cards.

Payments succeed unless the payment method is one of Stripe's declining test methods
(``pm_card_chargeDeclinedInsufficientFunds``, ``pm_card_chargeDeclinedExpiredCard``, ...) or
the customer is flagged with :meth:`PaymentsLedger.decline`; a failure is Stripe's 402
``card_error`` for direct calls (invoices record it as a failed payment).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from ._sandbox_objects import Ledger, card_error, equal_to, known, text
from ._sandbox_store import JSON, Page, StripeError, as_bool, as_int, invalid, metadata_update

PAYMENT_ROUTES: tuple[tuple[str, str, str, str], ...] = (
    ("GET", "/v1/payment_intents", "list_payment_intents", "payment_intent"),
    ("POST", "/v1/payment_intents", "create_payment_intent", "payment_intent"),
    ("GET", "/v1/payment_intents/{id}", "get:payment_intent", "payment_intent"),
    ("POST", "/v1/payment_intents/{id}/confirm", "confirm_payment_intent", "payment_intent"),
    ("GET", "/v1/charges", "list_charges", "charge"),
    ("GET", "/v1/charges/{id}", "get:charge", "charge"),
    ("GET", "/v1/refunds", "list_refunds", "refund"),
    ("POST", "/v1/refunds", "create_refund", "refund"),
    ("GET", "/v1/refunds/{id}", "get:refund", "refund"),
    ("GET", "/v1/disputes", "list_disputes", "dispute"),
    ("GET", "/v1/disputes/{id}", "get:dispute", "dispute"),
)
"""The payment endpoints (the same shape as :data:`plugins.stripe.sandbox.ROUTES`)."""

DECLINES: dict[str, tuple[str, str, str]] = {
    "generic_decline": ("card_declined", "generic_decline", "Your card was declined."),
    "insufficient_funds": (
        "card_declined",
        "insufficient_funds",
        "Your card has insufficient funds.",
    ),
    "lost_card": ("card_declined", "lost_card", "Your card was declined."),
    "expired_card": ("expired_card", "expired_card", "Your card has expired."),
    "incorrect_cvc": ("incorrect_cvc", "incorrect_cvc", "Your card's security code is incorrect."),
    "processing_error": (
        "processing_error",
        "processing_error",
        "An error occurred while processing your card. Try again in a little bit.",
    ),
}
"""Decline reason -> (error code, decline code, message), as Stripe answers them."""
TEST_METHODS = {
    "pm_card_visa": None,
    "pm_card_mastercard": None,
    "pm_card_chargeDeclined": "generic_decline",
    "pm_card_chargeDeclinedInsufficientFunds": "insufficient_funds",
    "pm_card_chargeDeclinedLostCard": "lost_card",
    "pm_card_chargeDeclinedExpiredCard": "expired_card",
    "pm_card_chargeDeclinedIncorrectCvc": "incorrect_cvc",
    "pm_card_chargeDeclinedProcessingError": "processing_error",
}
"""Stripe's test payment methods -> the decline they cause (None: they pay)."""


class PaymentsLedger(Ledger):
    """The ledger with payment intents, charges, refunds and disputes."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.declines: dict[str, str] = {}

    # ---- test controls

    def decline(self, customer_id: str, reason: str | None = "insufficient_funds") -> None:
        """Make every payment of ``customer_id`` fail with ``reason`` (a key of
        :data:`DECLINES`); None: pay again."""
        if reason is None:
            self.declines.pop(customer_id, None)
        elif reason not in DECLINES:
            raise ValueError(f"unknown decline reason {reason!r}: one of {sorted(DECLINES)}")
        else:
            self.declines[customer_id] = reason

    def _failure(self, customer_id: str | None, method: str | None) -> str | None:
        """The decline reason of a payment, None when it succeeds."""
        if customer_id in self.declines:
            return self.declines[str(customer_id)]
        return TEST_METHODS.get(method or "")

    def _method_of(self, customer_id: str | None, given: str | None = None) -> str | None:
        """The payment method a payment uses: the given one, else the customer's default."""
        if given:
            return given
        customer = self.tables["customer"].rows.get(customer_id or "")
        if customer is None:
            return None
        method: str | None = customer["invoice_settings"]["default_payment_method"]
        return method

    # ---- payments

    def payment_intent_object(self, amount: int, currency: str, customer: str | None) -> JSON:
        """A new payment intent waiting for a payment method (not stored)."""
        intent = self.base("payment_intent")
        secret = hashlib.sha256(intent["id"].encode()).hexdigest()[:24]
        intent |= {
            "amount": amount,
            "amount_capturable": 0,
            "amount_received": 0,
            "application": None,
            "application_fee_amount": None,
            "automatic_payment_methods": None,
            "canceled_at": None,
            "cancellation_reason": None,
            "capture_method": "automatic",
            "client_secret": f"{intent['id']}_secret_{secret}",
            "confirmation_method": "automatic",
            "currency": currency,
            "customer": customer,
            "description": None,
            "last_payment_error": None,
            "latest_charge": None,
            "metadata": {},
            "next_action": None,
            "on_behalf_of": None,
            "payment_method": None,
            "payment_method_types": ["card"],
            "processing": None,
            "receipt_email": None,
            "review": None,
            "setup_future_usage": None,
            "shipping": None,
            "statement_descriptor": None,
            "statement_descriptor_suffix": None,
            "status": "requires_payment_method",
            "transfer_data": None,
            "transfer_group": None,
        }
        return intent

    def _charge(self, intent: JSON, method: str, failure: str | None) -> JSON:
        """A charge of ``intent`` with ``method``: succeeded, or failed with ``failure``."""
        charge = self.base("charge")
        code = DECLINES[failure] if failure else None
        charge |= {
            "amount": intent["amount"],
            "amount_captured": 0 if failure else intent["amount"],
            "amount_refunded": 0,
            "application": None,
            "application_fee": None,
            "application_fee_amount": None,
            "balance_transaction": None,
            "billing_details": {
                "address": None,
                "email": None,
                "name": None,
                "phone": None,
            },
            "calculated_statement_descriptor": "SANDBOX",
            "captured": failure is None,
            "currency": intent["currency"],
            "customer": intent["customer"],
            "description": intent["description"],
            "disputed": False,
            "failure_balance_transaction": None,
            "failure_code": code[0] if code else None,
            "failure_message": code[2] if code else None,
            "fraud_details": {},
            "metadata": {},
            "on_behalf_of": None,
            "outcome": {
                "network_status": "declined_by_network" if failure else "approved_by_network",
                "reason": code[1] if code else None,
                "seller_message": "The bank did not return any further details with this decline."
                if failure
                else "Payment complete.",
                "type": "issuer_declined" if failure else "authorized",
            },
            "paid": failure is None,
            "payment_intent": intent["id"],
            "payment_method": method,
            "receipt_email": None,
            "receipt_number": None,
            "receipt_url": None,
            "refunded": False,
            "review": None,
            "shipping": None,
            "source_transfer": None,
            "statement_descriptor": None,
            "statement_descriptor_suffix": None,
            "status": "failed" if failure else "succeeded",
            "transfer_data": None,
            "transfer_group": None,
        }
        return self.insert(charge, "charge.failed" if failure else "charge.succeeded")

    def _attempt(self, intent: JSON, method: str) -> str | None:
        """Charge ``intent`` once; the decline reason when it failed, else None."""
        failure = self._failure(intent["customer"], method)
        charge = self._charge(intent, method, failure)
        changes: JSON = {"payment_method": method, "latest_charge": charge["id"]}
        if failure is None:
            changes |= {"status": "succeeded", "amount_received": intent["amount"]}
            changes["last_payment_error"] = None
            self.change(intent, changes, "payment_intent.succeeded")
            return None
        code, decline, message = DECLINES[failure]
        error = {"type": "card_error", "code": code, "decline_code": decline, "message": message}
        changes |= {"status": "requires_payment_method", "last_payment_error": error}
        self.change(intent, changes, "payment_intent.payment_failed")
        return failure

    def _decline_error(self, intent: JSON, failure: str) -> StripeError:
        code, decline, message = DECLINES[failure]
        return card_error(
            code, decline, message, charge=intent["latest_charge"], payment_intent=intent
        )

    def create_payment_intent(self, params: Mapping[str, Any]) -> JSON:
        """``POST /v1/payment_intents`` (``confirm=true`` pays at once)."""
        allowed = {"amount", "currency", "customer", "payment_method", "confirm", "metadata"}
        known(params, frozenset(allowed | {"description", "payment_method_types", "off_session"}))
        amount = as_int(params, "amount")
        if amount is None or amount < 1:
            raise invalid("Missing required param: amount.", param="amount")
        currency = str(text(params, "currency", required=True)).lower()
        customer = text(params, "customer")
        if customer is not None:
            self.ref("customer", customer, "customer")
        intent = self.payment_intent_object(amount, currency, customer)
        intent["description"] = text(params, "description")
        intent["metadata"] = metadata_update({}, params.get("metadata") or {})
        method = text(params, "payment_method")
        if method:
            intent |= {"payment_method": method, "status": "requires_confirmation"}
        self.insert(intent, "payment_intent.created")
        if as_bool(params, "confirm"):
            return self.confirm_payment_intent(intent["id"], {})
        return intent

    def confirm_payment_intent(self, oid: str, params: Mapping[str, Any]) -> JSON:
        """``POST /v1/payment_intents/{id}/confirm``: pay, or 402 with the decline."""
        known(params, frozenset({"payment_method", "off_session", "return_url"}))
        intent = self.get("payment_intent", oid)
        if intent["status"] == "succeeded":
            raise invalid(
                "You cannot confirm this PaymentIntent because it has already succeeded.",
                code="payment_intent_unexpected_state",
            )
        method = text(params, "payment_method") or intent["payment_method"]
        method = method or self._method_of(intent["customer"])
        if not method:
            raise invalid(
                "You cannot confirm this PaymentIntent because it's missing a payment method.",
                code="payment_intent_unexpected_state",
            )
        failure = self._attempt(intent, method)
        self.attempted(intent, failure)
        if failure is not None:
            raise self._decline_error(intent, failure)
        return intent

    def attempted(self, intent: JSON, failure: str | None) -> None:
        """After a confirmation of ``intent`` (``failure``: its decline reason, or None);
        billing records it on the invoice the intent pays."""

    def list_payment_intents(self, params: Mapping[str, Any], limit: int) -> Page:
        """``GET /v1/payment_intents`` (``customer`` filter)."""
        return self.page("payment_intent", params, limit, keep=equal_to(params, ("customer",)))

    def list_charges(self, params: Mapping[str, Any], limit: int) -> Page:
        """``GET /v1/charges`` (``customer``, ``payment_intent`` filters)."""
        keep = equal_to(params, ("customer", "payment_intent"))
        return self.page("charge", params, limit, keep=keep)

    def create_refund(self, params: Mapping[str, Any]) -> JSON:
        """``POST /v1/refunds``: all or part of a charge (or a payment intent's charge)."""
        known(params, frozenset({"charge", "payment_intent", "amount", "reason", "metadata"}))
        if params.get("payment_intent"):
            intent = self.ref("payment_intent", params["payment_intent"], "payment_intent")
            charge = self.ref("charge", intent["latest_charge"], "payment_intent")
        else:
            charge = self.ref("charge", params.get("charge"), "charge")
        left = charge["amount_captured"] - charge["amount_refunded"]
        amount = as_int(params, "amount", left)
        assert amount is not None
        if not 0 < amount <= left:
            message = (
                f"Refund amount ({amount}) is greater than unrefunded amount on charge ({left})"
            )
            raise invalid(message, param="amount", code="amount_too_large")
        refund = self.base("refund")
        del refund["livemode"]  # refunds have none
        refund |= {
            "amount": amount,
            "balance_transaction": None,
            "charge": charge["id"],
            "currency": charge["currency"],
            "customer": charge["customer"],
            "metadata": metadata_update({}, params.get("metadata") or {}),
            "payment_intent": charge["payment_intent"],
            "payment_method": charge["payment_method"],
            "reason": text(params, "reason"),
            "receipt_number": None,
            "source_transfer_reversal": None,
            "status": "succeeded",
            "transfer_reversal": None,
        }
        self.insert(refund, "refund.created")
        refunded = charge["amount_refunded"] + amount
        changes = {"amount_refunded": refunded, "refunded": refunded == charge["amount_captured"]}
        self.change(charge, changes, "charge.refunded")
        return refund

    def list_refunds(self, params: Mapping[str, Any], limit: int) -> Page:
        """``GET /v1/refunds`` (``charge``, ``payment_intent`` filters)."""
        return self.page(
            "refund", params, limit, keep=equal_to(params, ("charge", "payment_intent"))
        )

    def simulate_dispute(self, charge_id: str, reason: str = "fraudulent") -> JSON:
        """The cardholder disputes a charge: ``charge.dispute.created``."""
        charge = self.get("charge", charge_id)
        dispute = self.base("dispute")
        dispute |= {
            "amount": charge["amount"],
            "balance_transactions": [],
            "charge": charge_id,
            "currency": charge["currency"],
            "evidence": {"customer_name": None, "product_description": None, "receipt": None},
            "evidence_details": {
                "due_by": self.now + 7 * 86400,
                "has_evidence": False,
                "past_due": False,
                "submission_count": 0,
            },
            "is_charge_refundable": False,
            "metadata": {},
            "payment_intent": charge["payment_intent"],
            "reason": reason,
            "status": "needs_response",
        }
        self.change(charge, {"disputed": True}, None)
        return self.insert(dispute, "charge.dispute.created")

    def list_disputes(self, params: Mapping[str, Any], limit: int) -> Page:
        """``GET /v1/disputes`` (``charge``, ``payment_intent`` filters)."""
        return self.page(
            "dispute", params, limit, keep=equal_to(params, ("charge", "payment_intent"))
        )
