"""Stripe errors as hub errors, each with a plain message and a suggested action.

:func:`to_hub_error` classifies an exception of the ``stripe`` SDK: an authentication
failure becomes :class:`~hub.errors.AuthenticationError` (the hub marks the connection
disconnected), a restricted key lacking a permission an
:class:`~hub.errors.AuthorizationError` naming the permission, a declined card a
:class:`PaymentError` with a message a person understands. The ``advice`` of each is what a
person can do; it shows beside the connection's last error and in API answers
(:func:`describe`). The SDK is only inspected by class name, so this module does not import it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from hub.errors import (
    AuthenticationError,
    AuthorizationError,
    HubError,
    NetworkError,
    ProviderError,
    RateLimitError,
    ServerError,
    SignatureError,
    ValidationError,
)

CARD_MESSAGES: dict[str, tuple[str, str]] = {
    "card_declined": (
        "The card was declined.",
        "Ask the customer to use another card or to contact their bank.",
    ),
    "insufficient_funds": (
        "The card has insufficient funds.",
        "Ask the customer to use another card or another payment method.",
    ),
    "expired_card": (
        "The card has expired.",
        "Ask the customer to update their card details.",
    ),
    "processing_error": (
        "An error occurred while processing the card.",
        "Try the payment again in a moment; if it keeps failing, use another card.",
    ),
}
"""Plain message and suggested action per decline code or card error code."""
DEFAULT_CARD_MESSAGE = (
    "The payment could not be completed.",
    "Ask the customer to try another payment method.",
)
PERMISSION_RE = re.compile(r"'(rak_[a-z_]+)'")
"""The permission Stripe names when a restricted key may not make a call."""


class PaymentError(ValidationError):
    """A payment was refused (a declined card and the like): not a fault of the hub.

    :param code: Stripe's error code (``card_declined``, ``expired_card``, …).
    :param decline_code: the issuer's reason, when there is one (``insufficient_funds``).
    """

    error_class = "payment"

    def __init__(
        self, message: str, *, code: str, decline_code: str | None, advice: str, status: int
    ) -> None:
        super().__init__(message, status=status, advice=advice)
        self.code = code
        self.decline_code = decline_code


def _error_body(exc: Exception) -> Mapping[str, Any]:
    body = getattr(exc, "json_body", None)
    error = body.get("error") if isinstance(body, Mapping) else None
    return error if isinstance(error, Mapping) else {}


def card_message(code: str | None, decline_code: str | None) -> tuple[str, str]:
    """The plain message and suggested action for a card error (decline code first)."""
    for name in (decline_code, code):
        if name in CARD_MESSAGES:
            return CARD_MESSAGES[name]
    return DEFAULT_CARD_MESSAGE


def to_hub_error(exc: Exception, where: str) -> HubError:
    """The hub error for an exception the ``stripe`` SDK raised during ``where``.

    Anything that is not a Stripe error is returned as a :class:`ServerError` naming it.
    """
    kind = type(exc).__name__
    error = _error_body(exc)
    status = getattr(exc, "http_status", None)
    message = str(error.get("message") or getattr(exc, "user_message", None) or exc or kind)
    text = f"{where}: {message}"
    if kind == "SignatureVerificationError":
        return SignatureError(f"Stripe-Signature: {message}")
    if kind == "AuthenticationError":
        return AuthenticationError(
            text,
            status=status,
            advice="Stripe refused the API key: set a valid integrations.stripe.secret_key",
        )
    if kind == "PermissionError":
        found = PERMISSION_RE.search(message)
        missing = found.group(1) if found else None
        advice = (
            f"give the restricted key the {missing} permission in the Stripe dashboard"
            if missing
            else "give the restricted key the permission this call needs in the Stripe dashboard"
        )
        return AuthorizationError(text, status=status, advice=advice)
    if kind == "CardError":
        code = str(error.get("code") or getattr(exc, "code", None) or "card_declined")
        decline = error.get("decline_code")
        plain, action = card_message(code, str(decline) if decline else None)
        return PaymentError(
            plain,
            code=code,
            decline_code=str(decline) if decline else None,
            advice=action,
            status=status or 402,
        )
    if kind == "RateLimitError":
        return RateLimitError(
            text, status=status or 429, advice="Stripe is throttling: retry later"
        )
    if kind == "APIConnectionError":
        return NetworkError(text, advice="check the network path to Stripe (or base_url)")
    if kind in {"InvalidRequestError", "IdempotencyError"}:
        return ValidationError(text, status=status)
    if kind == "APIError" or (isinstance(status, int) and status >= 500):
        return ServerError(text, status=status, advice="Stripe had a problem: retry later")
    return ServerError(f"{where}: {kind}: {exc}"[:500], status=status)


def describe(exc: HubError) -> dict[str, Any]:
    """The JSON body an API answer carries for ``exc``: the plain message, the suggested
    action and, for a payment, Stripe's codes."""
    out: dict[str, Any] = {"error": str(exc), "action": exc.advice, "type": exc.error_class}
    if isinstance(exc, PaymentError):
        out |= {"code": exc.code, "decline_code": exc.decline_code}
    return out


def http_status(exc: HubError) -> int:
    """The status a hub route answers for ``exc``: never 5xx for what the caller can fix."""
    if isinstance(exc, PaymentError):
        return 402
    if isinstance(exc, AuthenticationError | AuthorizationError | NetworkError | ServerError):
        return 502
    if isinstance(exc, RateLimitError):
        return 503
    if isinstance(exc, ProviderError) and exc.status == 404:
        return 404
    return 400
