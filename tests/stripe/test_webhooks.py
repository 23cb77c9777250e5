"""Webhooks: locally signed events, signature faults, deduplication, ordering, processing.

A small scripted API (``objects``) answers the re-fetches, so each test decides what Stripe
"has now"; the sandbox's own webhook deliveries are exercised in test_sync.py.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import pytest
from aiohttp import web

from hub.errors import MalformedWebhookError, SignatureError
from hub.testing import deliver_webhook, hub_of, stored_records
from plugins.stripe import webhooks
from plugins.stripe.settings import StripeSettings

KEY = "sk_test_webhooks123"
SECRET = "whsec_current"
OLD_SECRET = "whsec_before_rotation"
CONNECTION = "stripe:default"
URL = "/webhooks/stripe"


def signed(body: bytes, secret: str = SECRET, at: int | None = None) -> dict[str, str]:
    """The ``Stripe-Signature`` header Stripe would send for ``body``."""
    import stripe

    header = stripe.WebhookSignature.generate_signature_header(body.decode(), secret, at)
    return {"Stripe-Signature": header, "Content-Type": "application/json"}


def event(
    kind: str, obj: dict[str, Any], event_id: str = "evt_1", created: int = 1_700_000_000
) -> bytes:
    """A Stripe event body (test mode)."""
    return orjson.dumps(
        {
            "id": event_id,
            "object": "event",
            "type": kind,
            "created": created,
            "livemode": False,
            "api_version": "2026-10-28.endive",
            "data": {"object": obj},
        }
    )


def customer(customer_id: str = "cus_1", **fields: Any) -> dict[str, Any]:
    """A customer object."""
    base = {"id": customer_id, "object": "customer", "created": 1_700_000_000, "livemode": False}
    details = {"name": "Willow Books LLC", "email": "ap@willow.example", "metadata": {}}
    return base | details | fields


Objects = dict[str, Any]


@pytest.fixture
async def objects(aiohttp_server) -> Objects:
    """What the scripted API answers per path: an object, a list (answered in turn, the
    last one repeated) or absent (404). ``objects["_requests"]`` lists the paths asked."""
    served: Objects = {"_requests": []}

    async def answer(request: web.Request) -> web.Response:
        served["_requests"].append(request.path)
        found = served.get(request.path)
        if isinstance(found, list):
            found = found.pop(0) if len(found) > 1 else found[0]
        if found is None:
            error = {"type": "invalid_request_error", "code": "resource_missing"}
            return web.json_response({"error": error | {"message": "No such object"}}, status=404)
        return web.json_response(found)

    app = web.Application()
    app.router.add_get("/{tail:.*}", answer)
    server = await aiohttp_server(app)
    served["_base_url"] = str(server.make_url("")).rstrip("/")
    return served


Client = Callable[..., Awaitable[Any]]


async def stripe_client(hub_client: Client, objects: Objects, **settings: Any) -> Any:
    """A hub client with Stripe pointed at the scripted API."""
    section = {
        "secret_key": KEY,
        "webhook_secrets": [SECRET],
        "base_url": objects["_base_url"],
        "max_network_retries": 0,
        **settings,
    }
    return await hub_client(config={"integrations": {"stripe": section}})


async def hub_events(client: Any, prefix: str = "stripe.") -> list[tuple[str, dict[str, Any]]]:
    """The hub events emitted with ``prefix`` (not the stored webhooks), oldest first."""
    hub = hub_of(client)
    await hub.dispatcher.drain()
    rows = await hub.store.db.read(
        lambda db: db.execute(
            "SELECT type, data FROM events WHERE type LIKE ? AND type NOT LIKE 'stripe.webhook.%' "
            "ORDER BY id",
            [f"{prefix}%"],
        ).fetchall()
    )
    return [(kind, orjson.loads(data)) for kind, data in rows]


async def stored_webhooks(client: Any) -> int:
    """How many Stripe webhook events the inbox holds."""
    rows = await hub_of(client).store.db.read(
        lambda db: db.execute("SELECT count(*) FROM events WHERE source = 'stripe'").fetchone()
    )
    return int(rows[0])


def test_parse_verifies_before_parsing_and_drops_what_is_not_acted_on():
    settings = StripeSettings(secret_key=KEY, webhook_secrets=[SECRET])
    body = event("customer.created", customer())
    (parsed,) = webhooks.parse(body, signed(body)["Stripe-Signature"], settings)
    assert (parsed.id, parsed.type, parsed.connection_key) == (
        "evt_1",
        "webhook.customer.created",
        "default",
    )
    assert parsed.data["object"]["id"] == "cus_1" and parsed.data["created"] == 1_700_000_000
    with pytest.raises(SignatureError, match="no webhook_secrets"):
        webhooks.parse(body, signed(body)["Stripe-Signature"], None)
    not_json = b"{nope"
    with pytest.raises(MalformedWebhookError):
        webhooks.parse(not_json, signed(not_json)["Stripe-Signature"], settings)
    other = event("product.created", {"id": "prod_1", "object": "product"})
    assert webhooks.parse(other, signed(other)["Stripe-Signature"], settings) == []
    live = body.replace(b'"livemode":false,"api', b'"livemode":true,"api')
    assert webhooks.parse(live, signed(live)["Stripe-Signature"], settings) == []
    only_invoices = StripeSettings(
        secret_key=KEY, webhook_secrets=[SECRET], events=["invoice.paid"]
    )
    assert webhooks.parse(body, signed(body)["Stripe-Signature"], only_invoices) == []


async def test_signature_faults_are_refused_and_nothing_is_stored(hub_client, objects):
    client = await stripe_client(hub_client, objects)
    body = event("customer.created", customer())
    good = signed(body)
    cases = [
        ("bad signature", body, signed(body, "whsec_someone_else"), 401),
        ("missing header", body, {}, 401),
        ("expired timestamp", body, signed(body, at=int(time.time()) - 301), 401),
        ("a secret from before rotation", body, signed(body, OLD_SECRET), 401),
        ("tampered body", body.replace(b"Willow", b"Wallow"), good, 401),
        ("garbled header", body, {"Stripe-Signature": "t=x,v1="}, 401),
        ("signed, but not an event", b'{"id": 1}', signed(b'{"id": 1}'), 400),
    ]
    for name, payload, headers, status in cases:
        response = await client.post(URL, data=payload, headers=headers)
        assert response.status == status, name
        assert "error" in await response.json(), name
    assert await stored_webhooks(client) == 0
    assert objects["_requests"] == []


async def test_rotation_accepts_both_secrets_while_both_are_listed(hub_client, objects):
    objects["/v1/customers/cus_1"] = customer()
    client = await stripe_client(hub_client, objects, webhook_secrets=[SECRET, OLD_SECRET])
    for number, secret in enumerate((OLD_SECRET, SECRET)):
        body = event("customer.updated", customer(), event_id=f"evt_{number}")
        status, answer = await deliver_webhook(client, URL, body, signed(body, secret))
        assert (status, answer["received"]) == (200, 1)


async def test_the_same_event_twice_is_processed_once(hub_client, objects):
    objects["/v1/customers/cus_1"] = customer()
    client = await stripe_client(hub_client, objects)
    body = event("customer.created", customer())
    first = await deliver_webhook(client, URL, body, signed(body))
    again = await deliver_webhook(client, URL, body, signed(body))
    assert first == (200, {"received": 1, "duplicates": 0})
    assert again == (200, {"received": 0, "duplicates": 1})
    assert objects["_requests"] == ["/v1/customers/cus_1"]
    assert [kind for kind, _ in await hub_events(client)] == ["stripe.customer.created"]
    records = await stored_records(hub_of(client), "stripe", CONNECTION)
    assert records["customers"]["cus_1"]["email"] == "ap@willow.example"


def subscription(price: str, status: str = "active") -> dict[str, Any]:
    """A subscription with one item on ``price``."""
    item = {"id": "si_1", "object": "subscription_item", "price": {"id": price}}
    return {
        "id": "sub_1",
        "object": "subscription",
        "customer": "cus_1",
        "status": status,
        "created": 1_700_000_000,
        "livemode": False,
        "items": {"object": "list", "data": [item], "has_more": False},
    }


async def test_an_older_update_delivered_after_a_newer_one_changes_nothing(hub_client, objects):
    client = await stripe_client(hub_client, objects)
    newer, older = subscription("price_gold"), subscription("price_basic")
    path = "/v1/subscriptions/sub_1"
    objects[path] = [newer, older]  # what each re-fetch sees: the older one was slow
    body = event("customer.subscription.updated", newer, "evt_new", created=1_700_000_200)
    await deliver_webhook(client, URL, body, signed(body))
    late = event("customer.subscription.updated", older, "evt_old", created=1_700_000_100)
    status, answer = await deliver_webhook(client, URL, late, signed(late))
    assert (status, answer["received"]) == (200, 1)
    records = await stored_records(hub_of(client), "stripe", CONNECTION)
    assert records["subscriptions"]["sub_1"]["items"]["data"][0]["price"]["id"] == "price_gold"
    announced = await hub_events(client)
    assert [(kind, data["webhook_event"]) for kind, data in announced] == [
        ("stripe.customer.subscription.updated", "evt_new")
    ]


async def test_a_deleted_customer_is_tombstoned_and_a_later_old_update_ignored(hub_client, objects):
    objects["/v1/customers/cus_1"] = customer()
    client = await stripe_client(hub_client, objects)
    created = event("customer.created", customer(), "evt_a", created=1_700_000_000)
    await deliver_webhook(client, URL, created, signed(created))
    deleted = event("customer.deleted", customer(), "evt_b", created=1_700_000_050)
    await deliver_webhook(client, URL, deleted, signed(deleted))
    stale = event("customer.updated", customer(), "evt_c", created=1_700_000_010)
    await deliver_webhook(client, URL, stale, signed(stale))
    records = await stored_records(hub_of(client), "stripe", CONNECTION)
    assert "cus_1" not in records["customers"]
    kinds = [kind for kind, _ in await hub_events(client)]
    assert kinds == ["stripe.customer.created", "stripe.customer.deleted"]


async def test_a_failed_payment_carries_what_the_email_plugin_needs(hub_client, objects):
    objects["/v1/customers/cus_1"] = customer()
    invoice = {
        "id": "in_1",
        "object": "invoice",
        "customer": "cus_1",
        "customer_email": "ap@willow.example",
        "customer_name": "Willow Books LLC",
        "status": "open",
        "amount_due": 4900,
        "amount_remaining": 4900,
        "currency": "usd",
        "attempt_count": 1,
        "next_payment_attempt": 1_700_086_400,
        "hosted_invoice_url": "https://invoice.stripe.com/i/acct_1/test_in_1",
        "created": 1_700_000_000,
        "livemode": False,
        "lines": {"object": "list", "data": [], "has_more": False},
    }
    objects["/v1/invoices/in_1"] = invoice
    client = await stripe_client(hub_client, objects)
    first = event("customer.created", customer(), "evt_c")
    await deliver_webhook(client, URL, first, signed(first))
    body = event("invoice.payment_failed", invoice, "evt_f")
    await deliver_webhook(client, URL, body, signed(body))
    failed = [data for kind, data in await hub_events(client) if kind.endswith("payment_failed")]
    (facts,) = failed
    (linked,) = [c for c in await hub_of(client).store.clients.list() if c["links"]]
    assert facts["client_id"] == linked["id"]
    assert {k: facts[k] for k in ("customer", "amount_due", "currency", "hosted_invoice_url")} == {
        "customer": "cus_1",
        "amount_due": 4900,
        "currency": "usd",
        "hosted_invoice_url": invoice["hosted_invoice_url"],
    }
    assert facts["record"]["id"] == "in_1" and facts["webhook_event"] == "evt_f"


async def test_a_checkout_session_refetches_its_customer_and_subscription(hub_client, objects):
    objects["/v1/customers/cus_1"] = customer()
    objects["/v1/subscriptions/sub_1"] = subscription("price_gold")
    client = await stripe_client(hub_client, objects)
    session = {
        "id": "cs_1",
        "object": "checkout.session",
        "customer": "cus_1",
        "subscription": "sub_1",
        "mode": "subscription",
    }
    body = event("checkout.session.completed", session, "evt_s")
    await deliver_webhook(client, URL, body, signed(body))
    records = await stored_records(hub_of(client), "stripe", CONNECTION)
    assert set(records["customers"]) == {"cus_1"} and set(records["subscriptions"]) == {"sub_1"}
    ((kind, data),) = await hub_events(client)
    assert kind == "stripe.checkout.session.completed" and data["session"]["id"] == "cs_1"


async def test_a_deleted_subscription_is_kept_as_canceled(hub_client, objects):
    objects["/v1/subscriptions/sub_1"] = subscription("price_gold", status="canceled")
    client = await stripe_client(hub_client, objects)
    body = event("customer.subscription.deleted", subscription("price_gold"), "evt_d")
    await deliver_webhook(client, URL, body, signed(body))
    records = await stored_records(hub_of(client), "stripe", CONNECTION)
    assert records["subscriptions"]["sub_1"]["status"] == "canceled"
