"""Settings, error mapping and the unconfigured plugin (no Stripe server needed)."""

from __future__ import annotations

import contextlib

import pytest

from hub.errors import (
    AuthenticationError,
    AuthorizationError,
    ConfigError,
    NetworkError,
    RateLimitError,
    ServerError,
    SignatureError,
    ValidationError,
)
from hub.testing import sync_records
from plugins.stripe.errors import PaymentError, describe, http_status, to_hub_error
from plugins.stripe.settings import HANDLED_EVENTS, StripeSettings

KEY = "sk_test_4eC39HqLyjWDarjtT1zdp7dc"


def stripe_error(kind: str, status: int, **error: str) -> Exception:
    """An exception of the SDK as it raises it for an error answer."""
    import stripe

    cls = getattr(stripe, kind)
    body = {"error": {"type": "card_error", "message": "Stripe says no.", **error}}
    message = body["error"]["message"]
    if kind in {"CardError", "InvalidRequestError"}:  # these take (message, param, code)
        return cls(message, None, error.get("code"), http_status=status, json_body=body)
    exc: Exception = cls(message, json_body=body, http_status=status)
    return exc


def test_defaults_and_derived_values():
    settings = StripeSettings(secret_key=KEY)
    assert settings.api_base_url == "https://api.stripe.com"
    assert (settings.livemode, settings.restricted) == (False, False)
    assert settings.proration_behavior == "always_invoice"
    assert settings.max_network_retries == 2 and settings.page_size == 100
    assert settings.acted_on == frozenset(HANDLED_EVENTS)
    live = StripeSettings(
        secret_key="rk_live_abc123",
        base_url="http://127.0.0.1:1/",
        events=["invoice.paid"],
        webhook_secrets=["whsec_new", "whsec_old"],
    )
    assert (live.livemode, live.restricted) == (True, True)
    assert live.api_base_url == "http://127.0.0.1:1"
    assert live.acted_on == {"invoice.paid"}


async def test_bad_values_name_the_key_and_hide_secrets(make_hub):
    cases = [
        ({"secret_key": "pk_test_123"}, r"integrations\.stripe\.secret_key"),
        ({"secret_key": KEY, "events": ["invoice.paidd"]}, r"integrations\.stripe\.events"),
        ({"secret_key": KEY, "streams": ["custmers"]}, r"integrations\.stripe\.streams"),
        ({"secret_key": KEY, "proration_behavior": "x"}, r"proration_behavior"),
        ({"secret_key": KEY, "api_version": "latest"}, r"integrations\.stripe\.api_version"),
        ({}, r"integrations\.stripe\.secret_key: required"),
    ]
    for section, message in cases:
        with pytest.raises(ConfigError, match=message) as caught:
            await make_hub(config={"integrations": {"stripe": section}})
        assert "pk_test_123" not in str(caught.value)


async def test_without_a_section_the_plugin_loads_disconnected(hub_client):
    client = await hub_client()
    status = await (await client.get("/api/status")).json()
    (stripe,) = [i for i in status["integrations"] if i["name"] == "stripe"]
    assert (stripe["configured"], stripe["status"], stripe["connections"]) == (
        False,
        "disconnected",
        [],
    )
    assert len(stripe["streams"]) == 9
    (plugin,) = [p for p in status["plugins"] if p["name"] == "stripe"]
    assert plugin["origin"] == "built-in" and plugin["error"] is None
    answer = await client.post("/api/billing/customers", json={"client_id": 1})
    assert answer.status == 409 and "not configured" in (await answer.json())["error"]


@pytest.mark.parametrize(
    ("code", "decline", "message"),
    [
        ("card_declined", "generic_decline", "The card was declined."),
        ("card_declined", "insufficient_funds", "The card has insufficient funds."),
        ("expired_card", None, "The card has expired."),
        ("processing_error", None, "An error occurred while processing the card."),
        ("incorrect_cvc", None, "The payment could not be completed."),
    ],
)
def test_card_errors_get_a_plain_message_and_an_action(code, decline, message):
    error = {"code": code} | ({"decline_code": decline} if decline else {})
    mapped = to_hub_error(stripe_error("CardError", 402, **error), "POST /v1/subscriptions")
    assert isinstance(mapped, PaymentError) and str(mapped) == message and mapped.advice
    answer = describe(mapped)
    assert answer == {
        "error": message,
        "action": mapped.advice,
        "type": "payment",
        "code": code,
        "decline_code": decline,
    }
    assert http_status(mapped) == 402


def test_stripe_errors_map_to_hub_errors():
    denied = (
        "The provided key 'rk_test_***abcd' does not have the required permissions for this "
        "endpoint on account 'acct_1'. Having the 'rak_customer_write' permission would allow "
        "this request to continue."
    )
    cases = [
        ("AuthenticationError", 401, {}, AuthenticationError),
        ("PermissionError", 403, {"message": denied}, AuthorizationError),
        ("RateLimitError", 429, {}, RateLimitError),
        ("InvalidRequestError", 404, {"code": "resource_missing"}, ValidationError),
        ("IdempotencyError", 400, {}, ValidationError),
        ("APIError", 500, {}, ServerError),
    ]
    for kind, status, error, expected in cases:
        mapped = to_hub_error(stripe_error(kind, status, **error), "GET /v1/customers")
        assert type(mapped) is expected, kind
        assert str(mapped).startswith("GET /v1/customers: ")
    permission = to_hub_error(stripe_error("PermissionError", 403, message=denied), "x")
    assert "rak_customer_write" in permission.advice
    import stripe

    offline = to_hub_error(stripe.APIConnectionError("connection refused"), "GET /v1/events")
    assert isinstance(offline, NetworkError)
    signature = to_hub_error(stripe.SignatureVerificationError("bad", "t=1"), "webhook")
    assert isinstance(signature, SignatureError)
    assert http_status(to_hub_error(ValueError("boom"), "x")) == 502


async def test_the_demo_serves_a_sandbox_the_integration_syncs(make_hub):
    import plugins.stripe

    async with contextlib.AsyncExitStack() as stack:
        settings = await plugins.stripe.demo(stack=stack)
        hub = await make_hub(config={"integrations": settings})
        records = await sync_records(hub, "stripe")
        assert len(records["customers"]) == 25 and len(records["subscriptions"]) == 10
        assert len(settings["stripe"]["streams"]) == 9
