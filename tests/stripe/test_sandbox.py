"""The Stripe sandbox, driven by the real ``stripe`` SDK as an independent client; every
request and answer is validated against Stripe's OpenAPI description (conftest)."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
import time
from typing import Any

import aiohttp
import pytest
import stripe
from aiohttp import web

from plugins.stripe.sandbox import SandboxConfig, sign_payload, start_sandbox
from tests.stripe.conftest import KEY, WEBHOOK_SECRET, stripe_sdk
from tests.stripe.spec import SpecValidator, fixture_problems, request_problems

FORM = "application/x-www-form-urlencoded"


async def raw(
    sandbox: Any, method: str, path: str, key: str = KEY, **kwargs: Any
) -> tuple[int, Any, Any]:
    """A plain HTTP call (status, JSON, headers) for what the SDK hides."""
    headers = {"Authorization": f"Bearer {key}", **kwargs.pop("headers", {})}
    url = sandbox.base_url + path
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url, headers=headers, **kwargs) as r,
    ):
        return r.status, await r.json(content_type=None), r.headers


# --------------------------------------------------------------------------- customers and lists


async def test_customers_are_created_read_updated_deleted_and_listed(
    stripe_sandbox, spec_validator
):
    async with stripe_sdk(stripe_sandbox) as client:
        created = await client.v1.customers.create_async(
            {"name": "Acme LLC", "email": "ap@acme.example", "metadata": {"client_id": "7"}}
        )
        assert created.id.startswith("cus_") and created.object == "customer"
        assert created.metadata.to_dict() == {"client_id": "7"} and created.livemode is False
        updated = await client.v1.customers.update_async(
            created.id, {"name": "Acme Holdings LLC", "metadata": {"client_id": ""}}
        )
        assert updated.name == "Acme Holdings LLC" and updated.metadata.to_dict() == {}
        assert (await client.v1.customers.retrieve_async(created.id)).name == "Acme Holdings LLC"
        gone = await client.v1.customers.delete_async(created.id)
        assert gone.deleted is True
        with pytest.raises(stripe.InvalidRequestError) as missing:
            await client.v1.customers.retrieve_async(created.id)
    assert missing.value.http_status == 404 and missing.value.code == "resource_missing"
    assert spec_validator.checked == 2 * len(stripe_sandbox.state.requests) == 10


async def test_lists_page_newest_first_in_both_directions(stripe_sandbox):
    stripe_sandbox.state.seed(customers=25)
    async with stripe_sdk(stripe_sandbox) as client:
        every = [
            c.id
            async for c in (await client.v1.customers.list_async({"limit": 7})).auto_paging_iter()
        ]
        assert len(every) == len(set(every)) == 25
        newest = stripe_sandbox.state.table("customer").newest()
        assert every == [c["id"] for c in newest]
        first = await client.v1.customers.list_async({"limit": 10})
        assert first.has_more and [c.id for c in first.data] == every[:10]
        back = await client.v1.customers.list_async({"limit": 3, "ending_before": every[10]})
        assert [c.id for c in back.data] == every[7:10] and back.has_more
        last = await client.v1.customers.list_async({"limit": 100, "starting_after": every[20]})
        assert [c.id for c in last.data] == every[21:] and not last.has_more
        with pytest.raises(stripe.InvalidRequestError) as refused:
            await client.v1.customers.list_async({"limit": 101})
    assert refused.value.param == "limit"


async def test_created_filters_bound_a_list(stripe_sandbox):
    stripe_sandbox.state.seed(customers=10)
    rows = list(stripe_sandbox.state.table("customer").newest())
    low, high = rows[6]["created"], rows[2]["created"]
    async with stripe_sdk(stripe_sandbox) as client:
        page = await client.v1.customers.list_async({"created": {"gte": low, "lt": high}})
    assert [c.id for c in page.data] == [r["id"] for r in rows[3:7]]


def test_two_hundred_thousand_objects_seed_and_page_without_scanning():
    from plugins.stripe._sandbox_billing import BillingLedger

    ledger = BillingLedger()
    ledger.seed(customers=200_000)
    table = ledger.table("customer")
    assert len(table) == 200_000
    ordered = list(table.newest())
    middle = ordered[100_000]["id"]
    seen: list[str] = []

    def keep(customer: dict[str, Any]) -> bool:
        seen.append(customer["id"])
        return True

    page = table.page(100, starting_after=middle, keep=keep)
    assert [c["id"] for c in page.data] == [c["id"] for c in ordered[100_001:100_101]]
    assert page.has_more and len(seen) == 101  # the page and one more: no scan
    seen.clear()
    back = table.page(100, ending_before=middle, keep=keep)
    assert [c["id"] for c in back.data] == [c["id"] for c in ordered[99_900:100_000]]
    assert len(seen) == 101


# --------------------------------------------------------------------------- idempotency


async def test_the_same_idempotency_key_replays_the_first_answer(stripe_sandbox):
    async with stripe_sdk(stripe_sandbox) as client:
        options = {"idempotency_key": "create-acme-1"}
        first = await client.v1.customers.create_async({"name": "Acme"}, options)
        again = await client.v1.customers.create_async({"name": "Acme"}, options)
        assert again.id == first.id
        assert again.last_response.headers["Idempotent-Replayed"] == "true"
        assert len(stripe_sandbox.state.table("customer")) == 1
        with pytest.raises(stripe.IdempotencyError) as mismatch:
            await client.v1.customers.create_async({"name": "Other"}, options)
    assert mismatch.value.http_status == 400
    assert mismatch.value.error.type == "idempotency_error"


async def test_a_request_applied_but_never_answered_is_replayed_by_its_key(stripe_sandbox):
    stripe_sandbox.state.crash_next("/v1/customers")
    async with stripe_sdk(stripe_sandbox, retries=2) as client:
        created = await client.v1.customers.create_async({"name": "Crash Test Co"})
    records = [r for r in stripe_sandbox.state.requests if r.method == "POST"]
    assert [r.status for r in records] == [None, 200] and records[1].replayed
    assert records[0].idempotency_key == records[1].idempotency_key
    assert list(stripe_sandbox.state.table("customer").rows) == [created.id]


# --------------------------------------------------------------------------- errors


async def test_a_wrong_key_is_refused_with_an_authentication_error(stripe_sandbox):
    async with stripe_sdk(stripe_sandbox, key="sk_test_wrong0000000") as client:
        with pytest.raises(stripe.AuthenticationError) as refused:
            await client.v1.customers.list_async()
    assert refused.value.http_status == 401
    status, body, _ = await raw(stripe_sandbox, "GET", "/v1/customers", key="")
    assert status == 401 and body["error"]["type"] == "invalid_request_error"  # as Stripe does


async def test_a_restricted_key_is_refused_what_it_may_not_do():
    key = "rk_test_readonly000"
    config = SandboxConfig(secret_key=KEY, restricted_keys={key: frozenset({"rak_customer_read"})})
    async with await start_sandbox(config) as sandbox, stripe_sdk(sandbox, key=key) as client:
        assert (await client.v1.customers.list_async()).data == []
        with pytest.raises(stripe.PermissionError) as refused:
            await client.v1.customers.create_async({"name": "Nope"})
    assert refused.value.http_status == 403
    assert "rak_customer_write" in refused.value.user_message
    assert refused.value.error.type == "invalid_request_error"  # Stripe's type for a 403


async def test_injected_rate_limits_answer_stripes_429_without_retry_advice(stripe_sandbox):
    stripe_sandbox.state.fail_next("/v1/customers", status=429, times=2)
    async with stripe_sdk(stripe_sandbox, retries=3) as client:
        with pytest.raises(stripe.RateLimitError) as limited:
            await client.v1.customers.list_async()  # the SDK does not retry a plain 429
        assert limited.value.error.code == "rate_limit"
        assert "Stripe-Should-Retry" not in limited.value.headers
        with pytest.raises(stripe.RateLimitError):
            await client.v1.customers.list_async()
        assert (await client.v1.customers.list_async()).data == []


async def test_injected_server_errors_are_retried_by_the_sdk_with_one_key(stripe_sandbox):
    stripe_sandbox.state.fail_next("/v1/customers", status=500, times=1)
    async with stripe_sdk(stripe_sandbox, retries=2) as client:
        await client.v1.customers.create_async({"name": "Retry Co"})
    posts = [r for r in stripe_sandbox.state.requests if r.method == "POST"]
    assert [r.status for r in posts] == [500, 200]
    assert posts[0].idempotency_key == posts[1].idempotency_key


async def test_unknown_parameters_and_paths_get_stripes_400_and_404(stripe_sandbox, spec_validator):
    status, body, _ = await raw(stripe_sandbox, "GET", "/v1/nothing")
    assert status == 404 and body["error"]["type"] == "invalid_request_error"
    status, body, _ = await raw(stripe_sandbox, "POST", "/v1/prices", data={"currency": "usd"})
    assert status == 400 and body["error"]["param"] in {"unit_amount", "product"}
    spec_validator.problems.clear()  # the spec rightly refuses that request: not the point here


# --------------------------------------------------------------------------- events


async def test_every_change_writes_an_event_listed_newest_first(stripe_sandbox):
    async with stripe_sdk(stripe_sandbox) as client:
        created = await client.v1.customers.create_async(
            {"name": "Events Co"}, {"idempotency_key": "k1"}
        )
        await client.v1.customers.update_async(created.id, {"email": "a@events.example"})
        await client.v1.customers.delete_async(created.id)
        events = (await client.v1.events.list_async()).data
        assert [e.type for e in events] == [
            "customer.deleted",
            "customer.updated",
            "customer.created",
        ]
        assert events[1].data.previous_attributes.to_dict() == {"email": None}
        assert events[1].data.object.email == "a@events.example"
        assert events[2].request.idempotency_key == "k1" and events[2].request.id.startswith("req_")
        oldest_first = [
            e.id
            async for e in (
                await client.v1.events.list_async({"ending_before": events[2].id, "limit": 1})
            ).auto_paging_iter()
        ]
        assert oldest_first == [events[1].id, events[0].id]
        only = await client.v1.events.list_async({"type": "customer.updated"})
        assert [e.id for e in only.data] == [events[1].id]


async def test_events_older_than_thirty_days_are_no_longer_listed(stripe_sandbox):
    async with stripe_sdk(stripe_sandbox) as client:
        old = await client.v1.customers.create_async({"name": "Old Co"})
        stripe_sandbox.state.advance(29 * 86400)
        await client.v1.customers.update_async(old.id, {"name": "Newer Co"})
        (first, second) = (await client.v1.events.list_async()).data
        stripe_sandbox.state.advance(2 * 86400)
        assert [e.id for e in (await client.v1.events.list_async()).data] == [first.id]
        with pytest.raises(stripe.InvalidRequestError) as expired:
            await client.v1.events.list_async({"ending_before": second.id})
        assert expired.value.code == "resource_missing" and expired.value.param == "ending_before"
        with pytest.raises(stripe.InvalidRequestError):
            await client.v1.events.retrieve_async(second.id)


# --------------------------------------------------------------------------- webhooks


async def webhook_receiver() -> tuple[web.AppRunner, str, list[tuple[bytes, str]]]:
    """A local endpoint that keeps what it receives."""
    received: list[tuple[bytes, str]] = []

    async def receive(request: web.Request) -> web.Response:
        received.append((await request.read(), request.headers["Stripe-Signature"]))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", receive)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}/hook", received


async def test_webhooks_are_signed_as_stripe_signs_them(stripe_sandbox):
    runner, url, received = await webhook_receiver()
    try:
        async with stripe_sdk(stripe_sandbox) as client:
            await client.v1.customers.create_async({"name": "Hook Co"})
            await client.v1.customers.create_async({"name": "Hook Two"})
            events = [e.to_dict() for e in (await client.v1.events.list_async()).data]
        await stripe_sandbox.send_event(events[0], url=url, duplicate=True)
        await stripe_sandbox.send_events(events, url=url)  # oldest last: out of order
        await stripe_sandbox.send_event(events[0], url=url, tamper=True)
        await stripe_sandbox.send_event(events[0], url=url, timestamp=int(time.time()) - 600)
        await stripe_sandbox.send_event(events[0], url=url, secret="whsec_other")
    finally:
        await runner.cleanup()
    good = [stripe.Webhook.construct_event(body, sig, WEBHOOK_SECRET) for body, sig in received[:4]]
    assert [e.id for e in good] == [
        events[0]["id"],
        events[0]["id"],
        events[1]["id"],
        events[0]["id"],
    ]
    for body, signature in received[4:]:
        with pytest.raises(stripe.SignatureVerificationError):
            stripe.Webhook.construct_event(body, signature, WEBHOOK_SECRET)


async def test_a_configured_webhook_url_gets_every_event_in_order():
    runner, url, received = await webhook_receiver()
    try:
        config = SandboxConfig(secret_key=KEY, webhook_secret=WEBHOOK_SECRET, webhook_url=url)
        async with await start_sandbox(config) as sandbox, stripe_sdk(sandbox) as client:
            created = await client.v1.customers.create_async({"name": "Pushed Co"})
            await client.v1.customers.update_async(created.id, {"name": "Pushed Again"})
            await sandbox.delivered()
    finally:
        await runner.cleanup()
    events = [stripe.Webhook.construct_event(b, s, WEBHOOK_SECRET) for b, s in received]
    assert [e.type for e in events] == ["customer.created", "customer.updated"]
    assert events[0].pending_webhooks == 1


def test_signatures_are_hmac_sha256_of_timestamp_and_payload():
    header = sign_payload(b'{"id": "evt_1"}', "whsec_x", timestamp=1700000000)
    stamp, v1 = header.split(",")
    assert stamp == "t=1700000000"
    stripe.WebhookSignature.verify_header(b'{"id": "evt_1"}', header, "whsec_x", tolerance=None)
    assert len(v1.removeprefix("v1=")) == 64


# --------------------------------------------------------------------------- the spec harness


def test_the_spec_harness_refuses_what_stripe_refuses():
    assert request_problems("POST", "/v1/customers", "", b"name=A&metadata[k]=v", FORM) == []
    bad = request_problems("POST", "/v1/customers", "", b"name=A&bogus=1&balance=x", FORM)
    assert any("bogus" in p for p in bad) and any("balance" in p for p in bad)
    query = request_problems("GET", "/v1/customers", "limit=x&created[gte]=y&foo=1", b"", "")
    assert len(query) == 3
    items = b"customer=cus_1&items[0][price]=price_1&items[0][quantity]=2&expand[0]=latest_invoice"
    assert request_problems("POST", "/v1/subscriptions", "", items, FORM) == []
    wrong = items.replace(b"quantity]=2", b"quantity]=two")
    assert request_problems("POST", "/v1/subscriptions", "", wrong, FORM) != []
    clash = request_problems("POST", "/v1/customers", "", b"metadata=x&metadata[k]=v", FORM)
    assert clash and "form encoding" in clash[0]
    assert fixture_problems("/v1/products", {"object": "product", "name": 5}) != []
    assert fixture_problems("/v1/products", {"object": "product", "colour": "red"}) != []


async def test_a_sandbox_answer_that_breaks_the_spec_is_reported():
    validator = SpecValidator()
    config = SandboxConfig(secret_key=KEY, validator=validator)
    async with await start_sandbox(config) as sandbox:
        sandbox.state.seed(customers=1)
        (customer,) = sandbox.state.table("customer").rows.values()
        customer["created"] = "yesterday"  # not an integer: not Stripe's shape
        status, _, _ = await raw(sandbox, "GET", f"/v1/customers/{customer['id']}")
    assert status == 200
    assert any("created" in p for p in validator.problems)


async def test_concurrent_clients_see_consistent_pages(stripe_sandbox):
    stripe_sandbox.state.seed(customers=50)
    async with stripe_sdk(stripe_sandbox) as client:
        pages = await asyncio.gather(
            *(client.v1.customers.list_async({"limit": 50}) for _ in range(5))
        )
    assert len({tuple(c.id for c in p.data) for p in pages}) == 1


# --------------------------------------------------------------------------- billing


async def monthly_price(client: Any, amount: int = 2000, name: str = "Bookkeeping") -> Any:
    """A product with a monthly price of ``amount`` cents."""
    product = await client.v1.products.create_async({"name": name})
    return await client.v1.prices.create_async(
        {
            "product": product.id,
            "unit_amount": amount,
            "currency": "usd",
            "recurring": {"interval": "month"},
        }
    )


async def active_subscription(client: Any, price: Any, method: str = "pm_card_visa") -> Any:
    """A customer paying ``price`` every month with ``method``."""
    customer = await client.v1.customers.create_async(
        {"name": "Subscriber LLC", "invoice_settings": {"default_payment_method": method}}
    )
    return await client.v1.subscriptions.create_async(
        {"customer": customer.id, "items": [{"price": price.id}]}
    )


def event_types(sandbox: Any, since: int = 0) -> list[str]:
    """The types of the events after the first ``since``, oldest first."""
    events = list(sandbox.state.table("event").newest())
    return [e["type"] for e in reversed(events)][since:]


@pytest.mark.parametrize("expansion", ["payment_intent", "confirmation_secret"])
async def test_an_incomplete_subscription_answers_its_first_client_secret(
    stripe_sandbox, expansion
):
    async with stripe_sdk(stripe_sandbox) as client:
        price = await monthly_price(client)
        customer = await client.v1.customers.create_async({"name": "New Client"})
        sub = await client.v1.subscriptions.create_async(
            {
                "customer": customer.id,
                "items": [{"price": price.id, "quantity": 2}],
                "payment_behavior": "default_incomplete",
                "payment_settings": {"save_default_payment_method": "on_subscription"},
                "expand": [f"latest_invoice.{expansion}"],
            }
        )
        assert sub.status == "incomplete" and sub["items"].data[0].quantity == 2
        invoice = sub.latest_invoice
        assert invoice.status == "open" and invoice.amount_due == 4000
        secret = invoice[expansion].client_secret
        intent_id = secret.split("_secret_")[0]
        assert secret.startswith("pi_")
        paid = await client.v1.payment_intents.confirm_async(
            intent_id, {"payment_method": "pm_card_visa"}
        )
        assert paid.status == "succeeded"
        assert (await client.v1.subscriptions.retrieve_async(sub.id)).status == "active"
        assert (await client.v1.invoices.retrieve_async(invoice.id)).status == "paid"
    types = event_types(stripe_sandbox)
    assert types.index("customer.subscription.created") < types.index("invoice.paid")
    assert types[-1] == "customer.subscription.updated"


@pytest.mark.parametrize(
    ("method", "code", "decline"),
    [
        ("pm_card_chargeDeclinedInsufficientFunds", "card_declined", "insufficient_funds"),
        ("pm_card_chargeDeclined", "card_declined", "generic_decline"),
        ("pm_card_chargeDeclinedExpiredCard", "expired_card", "expired_card"),
        ("pm_card_chargeDeclinedProcessingError", "processing_error", "processing_error"),
    ],
)
async def test_declining_test_cards_answer_a_402_card_error(stripe_sandbox, method, code, decline):
    async with stripe_sdk(stripe_sandbox) as client:
        intent = await client.v1.payment_intents.create_async({"amount": 1500, "currency": "usd"})
        with pytest.raises(stripe.CardError) as declined:
            await client.v1.payment_intents.confirm_async(intent.id, {"payment_method": method})
        assert declined.value.http_status == 402
        assert (declined.value.code, declined.value.error.decline_code) == (code, decline)
        failed = await client.v1.payment_intents.retrieve_async(intent.id)
        assert failed.status == "requires_payment_method"
        assert failed.last_payment_error.decline_code == decline
        (charge,) = (await client.v1.charges.list_async({"payment_intent": intent.id})).data
        assert charge.status == "failed" and charge.failure_code == code


async def test_a_flagged_customer_fails_error_if_incomplete_with_nothing_created(stripe_sandbox):
    async with stripe_sdk(stripe_sandbox) as client:
        price = await monthly_price(client)
        customer = await client.v1.customers.create_async(
            {"name": "Broke Co", "invoice_settings": {"default_payment_method": "pm_card_visa"}}
        )
        stripe_sandbox.state.decline(customer.id, "insufficient_funds")
        with pytest.raises(stripe.CardError) as declined:
            await client.v1.subscriptions.create_async(
                {
                    "customer": customer.id,
                    "items": [{"price": price.id}],
                    "payment_behavior": "error_if_incomplete",
                }
            )
        assert declined.value.error.decline_code == "insufficient_funds"
        assert (await client.v1.subscriptions.list_async({"status": "all"})).data == []
        allowed = await client.v1.subscriptions.create_async(
            {"customer": customer.id, "items": [{"price": price.id}]}
        )
        assert allowed.status == "incomplete"


async def test_a_plan_change_with_always_invoice_bills_the_proration_at_once(stripe_sandbox):
    async with stripe_sdk(stripe_sandbox) as client:
        basic, premium = await monthly_price(client, 3000), await monthly_price(client, 9000)
        sub = await active_subscription(client, basic)
        first_invoice = sub.latest_invoice
        stripe_sandbox.state.advance(15 * 86400)  # half of the 30-day period is left
        changed = await client.v1.subscriptions.update_async(
            sub.id,
            {
                "items": [{"id": sub["items"].data[0].id, "price": premium.id}],
                "proration_behavior": "always_invoice",
            },
        )
        assert changed["items"].data[0].price.id == premium.id
        assert changed.latest_invoice != first_invoice
        invoice = await client.v1.invoices.retrieve_async(changed.latest_invoice)
        assert invoice.billing_reason == "subscription_update" and invoice.status == "paid"
        amounts = sorted(line.amount for line in invoice.lines.data)
        assert amounts == [-1500, 4500] and invoice.amount_paid == 3000
        assert all(line.proration for line in invoice.lines.data)
        lines = await client.v1.invoices.line_items.list_async(invoice.id)
        assert [line.id for line in lines.data] == [line.id for line in invoice.lines.data]
        updated = [
            e
            for e in (
                await client.v1.events.list_async({"type": "customer.subscription.updated"})
            ).data
        ]
        assert "items" in updated[0].data.previous_attributes


@pytest.mark.parametrize("behavior", ["create_prorations", "none"])
async def test_other_proration_behaviors_wait_for_the_next_invoice(stripe_sandbox, behavior):
    async with stripe_sdk(stripe_sandbox) as client:
        basic, premium = await monthly_price(client, 3000), await monthly_price(client, 9000)
        sub = await active_subscription(client, basic)
        stripe_sandbox.state.advance(15 * 86400)
        item = sub["items"].data[0].id
        changed = await client.v1.subscriptions.update_async(
            sub.id, {"items": [{"id": item, "price": premium.id}], "proration_behavior": behavior}
        )
        assert changed.latest_invoice == sub.latest_invoice
        renewal = stripe_sandbox.state.simulate_renewal(sub.id)
        expected = 9000 + (3000 if behavior == "create_prorations" else 0)
        assert renewal["amount_due"] == expected and renewal["status"] == "paid"


async def test_cancel_now_or_at_the_end_of_the_period(stripe_sandbox):
    async with stripe_sdk(stripe_sandbox) as client:
        price = await monthly_price(client)
        now_sub = await active_subscription(client, price)
        later = await active_subscription(client, price)
        canceled = await client.v1.subscriptions.cancel_async(now_sub.id)
        assert canceled.status == "canceled" and canceled.canceled_at is not None
        pending = await client.v1.subscriptions.update_async(
            later.id, {"cancel_at_period_end": True}
        )
        assert pending.cancel_at_period_end and pending.cancel_at == pending.current_period_end
        assert [s.id for s in (await client.v1.subscriptions.list_async()).data] == [later.id]
        stripe_sandbox.state.simulate_renewal(later.id)
        ended = await client.v1.subscriptions.retrieve_async(later.id)
        assert ended.status == "canceled"
        with pytest.raises(ValueError, match="does not renew"):
            stripe_sandbox.state.simulate_renewal(later.id)
        listed = await client.v1.subscriptions.list_async({"status": "all"})
        assert {s.id for s in listed.data} == {now_sub.id, later.id}
        deleted = await client.v1.events.list_async({"type": "customer.subscription.deleted"})
        assert {e.data.object.id for e in deleted.data} == {now_sub.id, later.id}


async def test_renewals_and_payment_failures_write_invoice_events(stripe_sandbox):
    async with stripe_sdk(stripe_sandbox) as client:
        sub = await active_subscription(client, await monthly_price(client))
        before = len(event_types(stripe_sandbox))
        invoice = stripe_sandbox.state.simulate_renewal(sub.id)
        renewal = event_types(stripe_sandbox, before)
        assert renewal[:4] == [
            "customer.subscription.updated",
            "invoice.created",
            "payment_intent.created",
            "invoice.finalized",
        ]
        assert {"charge.succeeded", "invoice.paid", "invoice.payment_succeeded"} <= set(renewal)
        renewed = await client.v1.subscriptions.retrieve_async(sub.id)
        assert renewed.current_period_start == sub.current_period_end
        assert renewed.latest_invoice == invoice["id"]
        before = len(event_types(stripe_sandbox))
        failed = stripe_sandbox.state.simulate_payment_failure(sub.id)
        failure = event_types(stripe_sandbox, before)
        assert {"charge.failed", "payment_intent.payment_failed", "invoice.payment_failed"} <= set(
            failure
        )
        assert failed["status"] == "open" and failed["attempt_count"] == 1
        past_due = await client.v1.subscriptions.retrieve_async(sub.id)
        assert past_due.status == "past_due"
        assert [
            s.id for s in (await client.v1.subscriptions.list_async({"status": "past_due"})).data
        ] == [sub.id]
        paid = await client.v1.invoices.pay_async(failed["id"])  # the card works again
        assert paid.status == "paid"
        assert (await client.v1.subscriptions.retrieve_async(sub.id)).status == "active"
        lost = stripe_sandbox.state.simulate_payment_failure(sub.id)
        written_off = await client.v1.invoices.mark_uncollectible_async(lost["id"])
        assert written_off.status == "uncollectible"
        (event,) = (
            await client.v1.events.list_async({"type": "invoice.marked_uncollectible"})
        ).data
        assert event.data.object.id == lost["id"]


async def test_refunds_disputes_and_lists_of_payments(stripe_sandbox):
    async with stripe_sdk(stripe_sandbox) as client:
        customer = await client.v1.customers.create_async({"name": "Refund Co"})
        intent = await client.v1.payment_intents.create_async(
            {
                "amount": 5000,
                "currency": "usd",
                "customer": customer.id,
                "payment_method": "pm_card_visa",
                "confirm": True,
            }
        )
        assert intent.status == "succeeded"
        refund = await client.v1.refunds.create_async({"payment_intent": intent.id, "amount": 2000})
        charge = await client.v1.charges.retrieve_async(intent.latest_charge)
        assert (refund.status, charge.amount_refunded, charge.refunded) == (
            "succeeded",
            2000,
            False,
        )
        with pytest.raises(stripe.InvalidRequestError):
            await client.v1.refunds.create_async({"charge": charge.id, "amount": 4000})
        dispute = stripe_sandbox.state.simulate_dispute(charge.id)
        listed = await client.v1.disputes.list_async({"charge": charge.id})
        assert [d.id for d in listed.data] == [dispute["id"]]
        assert [r.id for r in (await client.v1.refunds.list_async()).data] == [refund.id]
        assert [
            p.id
            for p in (await client.v1.payment_intents.list_async({"customer": customer.id})).data
        ] == [intent.id]
        types = [e.type for e in (await client.v1.events.list_async({"limit": 4})).data]
        assert types[:3] == ["charge.dispute.created", "charge.refunded", "refund.created"]


async def test_portal_and_checkout_sessions(stripe_sandbox):
    async with stripe_sdk(stripe_sandbox) as client:
        customer = await client.v1.customers.create_async({"name": "Portal Co"})
        portal = await client.v1.billing_portal.sessions.create_async(
            {"customer": customer.id, "return_url": "https://firm.example/billing"}
        )
        assert portal.url.startswith("https://") and portal.customer == customer.id
        price = await monthly_price(client, 2500)
        checkout = await client.v1.checkout.sessions.create_async(
            {
                "mode": "subscription",
                "customer": customer.id,
                "success_url": "https://firm.example/ok",
                "line_items": [{"price": price.id, "quantity": 2}],
            }
        )
        assert (await client.v1.checkout.sessions.retrieve_async(checkout.id)).status == "open"
        assert checkout.amount_total == 5000
        stripe_sandbox.state.simulate_checkout_completed(checkout.id)
        done = await client.v1.checkout.sessions.retrieve_async(checkout.id)
        assert (done.status, done.payment_status) == ("complete", "paid")
        sub = await client.v1.subscriptions.retrieve_async(done.subscription)
        assert sub.status == "active" and sub.customer == customer.id
        (event,) = (await client.v1.events.list_async({"type": "checkout.session.completed"})).data
        assert event.data.object.subscription == sub.id
        one_off = await client.v1.prices.create_async(
            {"product": price.product, "unit_amount": 700, "currency": "usd"}
        )
        pay = await client.v1.checkout.sessions.create_async(
            {
                "mode": "payment",
                "line_items": [{"price": one_off.id}],
                "success_url": "https://x.example",
            }
        )
        paid = stripe_sandbox.state.simulate_checkout_completed(pay["id"])
        intent = await client.v1.payment_intents.retrieve_async(paid["payment_intent"])
        assert (intent.status, intent.amount) == ("succeeded", 700)
        assert paid["customer"].startswith("cus_")
        with pytest.raises(stripe.InvalidRequestError) as missing:
            await client.v1.billing_portal.sessions.create_async(
                {"customer": "cus_missing", "return_url": "https://firm.example"}
            )
    assert missing.value.param == "customer"


async def test_seeded_billing_lists_and_expands(stripe_sandbox):
    stripe_sandbox.state.seed(customers=40, products=3, subscriptions=12)
    async with stripe_sdk(stripe_sandbox) as client:
        subs = [
            s
            async for s in (
                await client.v1.subscriptions.list_async(
                    {"limit": 5, "expand": ["data.latest_invoice"]}
                )
            ).auto_paging_iter()
        ]
        assert len(subs) == 12 and all(s.status == "active" for s in subs)
        assert all(s.latest_invoice.status == "paid" for s in subs)
        invoices = await client.v1.invoices.list_async({"customer": subs[0].customer})
        assert len(invoices.data) == 1
        items = await client.v1.subscription_items.list_async({"subscription": subs[0].id})
        assert items.data[0].price.unit_amount in {1000, 2000, 3000}
        assert len((await client.v1.prices.list_async({"limit": 100})).data) == 3
        assert len((await client.v1.products.list_async()).data) == 3
        assert len((await client.v1.charges.list_async({"limit": 100})).data) == 12
        assert (await client.v1.events.list_async()).data == []  # seeding writes no events


# --------------------------------------------------------------------------- wire details


async def test_stripes_form_encoding_versions_and_basic_auth(stripe_sandbox):
    form = {
        "name": "Form Co",
        "metadata[client_id]": "42",
        "metadata[firm]": "north",
        "address[city]": "Lyon",
    }
    version = {"Stripe-Version": "2026-08-27.basil"}
    status, created, headers = await raw(
        stripe_sandbox, "POST", "/v1/customers", data=form, headers=version
    )
    assert status == 200 and created["metadata"] == {"client_id": "42", "firm": "north"}
    assert created["address"]["city"] == "Lyon"
    assert headers["Stripe-Version"] == "2026-08-27.basil"
    assert headers["Request-Id"].startswith("req_")
    query = "expand[]=tax_ids&email=nobody%40x.example"
    status, page, _ = await raw(stripe_sandbox, "GET", f"/v1/customers?{query}")
    assert status == 200 and page["data"] == []
    path = f"/v1/customers/{created['id']}?expand[]=tax_ids"
    status, expanded, _ = await raw(stripe_sandbox, "GET", path)
    assert expanded["tax_ids"]["object"] == "list"
    basic = base64.b64encode(f"{KEY}:".encode()).decode()
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            stripe_sandbox.base_url + "/v1/customers", headers={"Authorization": f"Basic {basic}"}
        ) as response,
    ):
        assert response.status == 200


async def test_a_restricted_write_permission_includes_reading_and_unknown_keys_fail():
    writer = "rk_test_writer000"
    config = SandboxConfig(
        secret_key=KEY, restricted_keys={writer: frozenset({"rak_customer_write"})}
    )
    async with await start_sandbox(config) as sandbox:
        async with stripe_sdk(sandbox, key=writer) as client:
            created = await client.v1.customers.create_async({"name": "Writer Co"})
            assert (await client.v1.customers.retrieve_async(created.id)).id == created.id
            with pytest.raises(stripe.PermissionError) as refused:
                await client.v1.events.list_async()
            assert "rak_event_read" in refused.value.user_message
        async with stripe_sdk(sandbox, key="rk_test_unknown000") as client:
            with pytest.raises(stripe.AuthenticationError):
                await client.v1.customers.list_async()


async def test_event_filters_by_type_wildcard_and_created(stripe_sandbox):
    async with stripe_sdk(stripe_sandbox) as client:
        customer = await client.v1.customers.create_async({"name": "Filter Co"})
        await client.v1.products.create_async({"name": "Filter Plan"})
        stripe_sandbox.state.advance(100)
        await client.v1.customers.update_async(customer.id, {"name": "Filtered Co"})
        wildcard = await client.v1.events.list_async({"type": "customer.*"})
        assert [e.type for e in wildcard.data] == ["customer.updated", "customer.created"]
        several = await client.v1.events.list_async(
            {"types": ["product.created", "customer.updated"]}
        )
        assert [e.type for e in several.data] == ["customer.updated", "product.created"]
        recent = await client.v1.events.list_async(
            {"created": {"gte": stripe_sandbox.state.now - 10}}
        )
        assert [e.type for e in recent.data] == ["customer.updated"]
        by_email = await client.v1.customers.list_async({"email": "nobody@filter.example"})
        assert by_email.data == []


async def test_webhook_deliveries_can_wait_and_are_recorded(stripe_sandbox):
    runner, url, received = await webhook_receiver()
    try:
        async with stripe_sdk(stripe_sandbox) as client:
            await client.v1.customers.create_async({"name": "Late Co"})
            (event,) = (await client.v1.events.list_async()).data
        (delivery,) = await stripe_sandbox.send_event(event.to_dict(), url=url, delay=0.01)
    finally:
        await runner.cleanup()
    assert (delivery.status, delivery.event_id) == (200, event.id)
    assert stripe_sandbox.state.deliveries == [delivery]
    assert received == [(delivery.payload, delivery.signature)]


async def test_the_demo_data_is_consistent_and_matches_the_spec(stripe_sandbox):
    stripe_sandbox.state.seed_demo()
    async with stripe_sdk(stripe_sandbox) as client:
        customers = await client.v1.customers.list_async({"limit": 100})
        assert len(customers.data) == 25
        subs = await client.v1.subscriptions.list_async({"limit": 100})
        assert sorted(s.status for s in subs.data) == ["active"] * 9 + ["past_due"]
        assert len((await client.v1.disputes.list_async()).data) == 1
        assert len((await client.v1.refunds.list_async()).data) == 1
        for path in (
            "/v1/invoices",
            "/v1/payment_intents",
            "/v1/charges",
            "/v1/products",
            "/v1/prices",
        ):
            status, page, _ = await raw(stripe_sandbox, "GET", f"{path}?limit=100")
            assert status == 200 and page["data"]
        events = await client.v1.events.list_async({"type": "invoice.payment_failed"})
        assert len(events.data) == 1


def test_the_command_line_serves_demo_data():
    proc = subprocess.Popen(
        [sys.executable, "-m", "plugins.stripe.sandbox", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        ready = json.loads(proc.stdout.readline())

        async def listed() -> int:
            sandbox = type("Remote", (), {"base_url": ready["base_url"]})()
            status, page, _ = await raw(sandbox, "GET", "/v1/customers", key=ready["secret_key"])
            assert status == 200
            return len(page["data"])

        assert asyncio.run(listed()) == 10
    finally:
        proc.terminate()
        proc.wait(timeout=30)


async def test_search_with_stripes_query_language(stripe_sandbox):
    async with stripe_sdk(stripe_sandbox) as client:
        acme = await client.v1.customers.create_async(
            {"name": "Acme Bookkeeping", "email": "ap@acme.example", "metadata": {"client_id": "7"}}
        )
        await client.v1.customers.create_async(
            {"name": "Birch Partners", "email": "b@birch.example"}
        )
        by_metadata = await client.v1.customers.search_async({"query": "metadata['client_id']:'7'"})
        assert [c.id for c in by_metadata.data] == [
            acme.id
        ] and by_metadata.object == "search_result"
        either = await client.v1.customers.search_async(
            {"query": "email:'ap@acme.example' OR name~'birch'"}
        )
        assert len(either.data) == 2
        first = await client.v1.customers.search_async({"query": "created>0", "limit": 1})
        assert first.has_more and first.next_page
        second = await client.v1.customers.search_async(
            {"query": "created>0", "limit": 1, "page": first.next_page}
        )
        assert second.data[0].id != first.data[0].id and not second.has_more
        negated = await client.v1.customers.search_async({"query": "-name:'Acme Bookkeeping'"})
        assert [c.name for c in negated.data] == ["Birch Partners"]
        price = await monthly_price(client)
        prices = await client.v1.prices.search_async({"query": "active:'true' AND currency:'usd'"})
        assert [p.id for p in prices.data] == [price.id]
        await active_subscription(client, price)
        subs = await client.v1.subscriptions.search_async({"query": "status:'active'"})
        assert len(subs.data) == 1
        with pytest.raises(stripe.InvalidRequestError) as refused:
            await client.v1.customers.search_async({"query": "colour:'red'"})
        assert refused.value.param == "query"
        with pytest.raises(stripe.InvalidRequestError):
            await client.v1.customers.search_async({"query": "name:'a' AND email:'b' OR name:'c'"})
