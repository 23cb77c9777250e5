"""Billing actions: idempotency keys across 429s and crashes, mapped refusals, the flow.

A scripted Stripe (:class:`Scripted`) answers like Stripe does for the calls the actions
make, replays the first answer for a known ``Idempotency-Key`` and injects the faults a test
asks for (429, a decline, a missing permission, a request that never gets its answer).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from hub.store.client_match import normalise_name
from hub.testing import hub_of, stored_records
from plugins.stripe.sandbox import RunningSandbox
from tests.daemon import Daemon
from tests.stripe.conftest import KEY as SANDBOX_KEY
from tests.stripe.conftest import stripe_sdk

KEY = "sk_test_actions123"
CONNECTION = "stripe:default"


@dataclass
class Scripted:
    """A scripted Stripe: ``faults[path]`` lists what the next POSTs to ``path`` get."""

    base_url: str = ""
    requests: list[tuple[str, str, str | None, dict[str, str]]] = field(default_factory=list)
    faults: dict[str, list[str]] = field(default_factory=dict)
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    answers: dict[str, dict[str, Any]] = field(default_factory=dict)
    hung: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def posts(self, path: str) -> list[tuple[str | None, dict[str, str]]]:
        """(idempotency key, form) of every POST to ``path``, in order."""
        return [
            (key, form) for method, p, key, form in self.requests if (method, p) == ("POST", path)
        ]

    def updated(self, path: str, form: dict[str, str]) -> dict[str, Any]:
        """Apply a plan change or ``cancel_at_period_end`` to a stored subscription."""
        found = self.objects[path]
        if "items[0][price]" in form:
            found["items"]["data"][0]["price"] = {"id": form["items[0][price]"]}
        if form.get("cancel_at_period_end") == "true":
            found["cancel_at_period_end"] = True
        return found

    def created(self, path: str, form: dict[str, str]) -> dict[str, Any]:
        number = next(self.ids)
        if path == "/v1/customers":
            return {
                "id": f"cus_{number}",
                "object": "customer",
                "name": form.get("name"),
                "email": form.get("email"),
                "metadata": {"client_id": form.get("metadata[client_id]")},
                "created": 1_700_000_000,
                "livemode": False,
            }
        if path == "/v1/subscriptions":
            return {
                "id": f"sub_{number}",
                "object": "subscription",
                "customer": form["customer"],
                "status": "incomplete",
                "created": 1_700_000_000,
                "livemode": False,
                "items": {
                    "object": "list",
                    "data": [{"id": f"si_{number}", "price": {"id": form["items[0][price]"]}}],
                    "has_more": False,
                },
                "latest_invoice": {
                    "id": f"in_{number}",
                    "object": "invoice",
                    "confirmation_secret": {"client_secret": f"pi_{number}_secret_x"},
                },
            }
        return {"id": f"obj_{number}", "object": "billing_portal.session", "url": "https://x"}


def error(status: int, kind: str, **fields: str) -> web.Response:
    return web.json_response({"error": {"type": kind, "message": "no", **fields}}, status=status)


@pytest.fixture
async def scripted(aiohttp_server) -> AsyncIterator[Scripted]:
    """The scripted Stripe on a local port."""
    state = Scripted()

    async def handle(request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        key = request.headers.get("Idempotency-Key")
        state.requests.append((request.method, request.path, key, form))
        if request.method == "GET":
            found = state.objects.get(request.path)
            return web.json_response(found) if found else error(404, "invalid_request_error")
        fault = (state.faults.get(request.path) or [None]).pop(0)
        if fault == "429":
            return error(429, "invalid_request_error", code="rate_limit")
        if fault == "decline":
            return error(402, "card_error", code="card_declined", decline_code="insufficient_funds")
        if fault == "permission":
            message = "Having the 'rak_subscription_write' permission would allow this request."
            return web.json_response(
                {"error": {"type": "invalid_request_error", "message": message}}, status=403
            )
        if fault == "hang":  # Stripe acts, the answer never reaches the hub
            state.answers.setdefault(str(key), state.created(request.path, form))
            state.hung.set()
            await state.release.wait()
        if request.path in state.objects:  # an update of an existing object
            return web.json_response(state.updated(request.path, form))
        answer = state.answers.setdefault(str(key), state.created(request.path, form))
        state.objects[f"{request.path}/{answer['id']}"] = answer
        return web.json_response(answer)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    server = await aiohttp_server(app)
    state.base_url = str(server.make_url("")).rstrip("/")
    yield state
    state.release.set()


def section(scripted: Scripted, **extra: Any) -> dict[str, Any]:
    """``[integrations.stripe]`` pointing at the scripted Stripe."""
    return {
        "secret_key": KEY,
        "base_url": scripted.base_url,
        "max_network_retries": 0,
        "retry_base_delay": 0.001,
        **extra,
    }


async def billing(hub_client: Any, scripted: Scripted, **extra: Any) -> Any:
    return await hub_client(config={"integrations": {"stripe": section(scripted, **extra)}})


SUBSCRIBE = {"customer": "cus_9", "price": "price_gold"}


async def test_a_429_is_retried_with_the_same_idempotency_key(hub_client, scripted):
    client = await billing(hub_client, scripted, rate_limit_attempts=3)
    scripted.faults["/v1/subscriptions"] = ["429", "429"]
    response = await client.post("/api/billing/subscriptions", json=SUBSCRIBE)
    assert response.status == 200, await response.text()
    answer = await response.json()
    assert answer["client_secret"] == "pi_1_secret_x"
    keys = [key for key, _ in scripted.posts("/v1/subscriptions")]
    assert len(keys) == 3 and len(set(keys)) == 1 and keys[0]
    form = scripted.posts("/v1/subscriptions")[0][1]
    assert form["payment_behavior"] == "default_incomplete"
    assert form["expand[0]"] == "latest_invoice.confirmation_secret"


async def test_429s_past_the_bound_answer_the_mapped_error(hub_client, scripted):
    client = await billing(hub_client, scripted, rate_limit_attempts=2)
    scripted.faults["/v1/subscriptions"] = ["429", "429", "429"]
    response = await client.post("/api/billing/subscriptions", json=SUBSCRIBE)
    assert response.status == 503
    assert (await response.json())["type"] == "rate_limit"
    assert len(scripted.posts("/v1/subscriptions")) == 2


async def test_a_declined_card_answers_the_plain_message(hub_client, scripted):
    client = await billing(hub_client, scripted)
    scripted.faults["/v1/subscriptions"] = ["decline"]
    response = await client.post("/api/billing/subscriptions", json=SUBSCRIBE)
    assert response.status == 402
    assert await response.json() == {
        "error": "The card has insufficient funds.",
        "action": "Ask the customer to use another card or another payment method.",
        "type": "payment",
        "code": "card_declined",
        "decline_code": "insufficient_funds",
    }


async def test_a_timeout_answers_a_network_error_and_the_retry_reuses_the_key(hub_client, scripted):
    client = await billing(hub_client, scripted, timeout=0.2)
    scripted.faults["/v1/subscriptions"] = ["hang"]
    response = await client.post("/api/billing/subscriptions", json=SUBSCRIBE)
    assert response.status == 502 and (await response.json())["type"] == "network"
    again = await client.post("/api/billing/subscriptions", json=SUBSCRIBE)
    assert again.status == 200
    (first, _), (retry, _) = scripted.posts("/v1/subscriptions")
    assert first == retry


async def test_a_missing_permission_of_a_restricted_key_is_named(hub_client, scripted):
    client = await billing(hub_client, scripted, secret_key="rk_test_limited")
    scripted.faults["/v1/subscriptions"] = ["permission"]
    response = await client.post("/api/billing/subscriptions", json=SUBSCRIBE)
    answer = await response.json()
    assert response.status == 502 and answer["type"] == "authorization"
    assert "rak_subscription_write" in answer["action"]


async def test_bad_input_gets_a_4xx_with_the_reason(hub_client, scripted):
    client = await billing(hub_client, scripted)
    cases = [
        ("/api/billing/subscriptions", b"not json", 400, "JSON"),
        ("/api/billing/subscriptions", b'{"customer": "cus_1"}', 400, "price"),
        ("/api/billing/subscriptions", b'{"price": "p", "quantity": -1}', 400, "quantity"),
        ("/api/billing/customers", b'{"client_id": "7"}', 400, "client_id"),
        ("/api/billing/customers", b'{"client_id": 424242}', 404, "no client"),
        ("/api/billing/portal", b'{"customer": "cus_1"}', 400, "return_url"),
        ("/api/billing/subscriptions/sub_none/cancel", b"{}", 404, "no subscription"),
    ]
    for path, body, status, reason in cases:
        response = await client.post(path, data=body)
        assert response.status == status, (path, body)
        assert reason in (await response.json())["error"]
    assert scripted.posts("/v1/subscriptions") == []


async def add_client(hub: Any, name: str, email: str) -> int:
    """A client in the hub's registry (as another integration's match would create it)."""

    def write(db: Any) -> int:
        cursor = db.conn.execute(
            "INSERT INTO clients (name, name_key, email, created_at, updated_at) "
            "VALUES (?, ?, ?, '2026-01-01', '2026-01-01')",
            [name, normalise_name(name), email],
        )
        return int(cursor.lastrowid)

    result: int = await hub.store.db.write(write)
    return result


async def test_customer_create_or_find_plan_change_cancel_and_portal(hub_client, scripted):
    client = await billing(hub_client, scripted, portal_return_url="https://firm.example/back")
    hub = hub_of(client)
    await add_client(hub, "Willow Books LLC", "books@willow.example")  # a namesake
    client_id = await add_client(hub, "Willow Books LLC", "ap@willow.example")
    first = await (
        await client.post("/api/billing/customers", json={"client_id": client_id})
    ).json()
    customer = first["customer"]
    assert customer["metadata"] == {"client_id": str(client_id)}
    again = await (
        await client.post("/api/billing/customers", json={"client_id": client_id})
    ).json()
    assert again["customer"]["id"] == customer["id"]
    assert len(scripted.posts("/v1/customers")) == 1  # found, not created twice
    (linked,) = [c for c in await hub.store.clients.list() if c["id"] == client_id]
    assert [(link["provider_id"], link["matched_by"]) for link in linked["links"]] == [
        (customer["id"], "client_id")  # by the metadata the action wrote, as a sync matches it
    ]

    body = {"client_id": client_id, "price": "price_basic"}
    created = await (await client.post("/api/billing/subscriptions", json=body)).json()
    subscription = created["subscription"]
    assert created["client_secret"].startswith("pi_") and subscription["customer"] == customer["id"]
    path = f"/api/billing/subscriptions/{subscription['id']}"
    changed = await client.post(f"{path}/plan", json={"price": "price_gold"})
    assert changed.status == 200
    (_, plan_form) = scripted.posts(f"/v1/subscriptions/{subscription['id']}")[0]
    assert plan_form["proration_behavior"] == "always_invoice"
    assert plan_form["items[0][price]"] == "price_gold"
    cancel = await client.post(f"{path}/cancel", json={"at_period_end": True})
    assert cancel.status == 200
    (_, cancel_form) = scripted.posts(f"/v1/subscriptions/{subscription['id']}")[1]
    assert cancel_form == {"cancel_at_period_end": "true"}
    portal = await (await client.post("/api/billing/portal", json={"client_id": client_id})).json()
    assert portal["url"] == "https://x"
    (_, portal_form) = scripted.posts("/v1/billing_portal/sessions")[0]
    assert portal_form == {"customer": customer["id"], "return_url": "https://firm.example/back"}
    records = await stored_records(hub, "stripe", CONNECTION)
    assert set(records["subscriptions"]) == {subscription["id"]}
    assert records["subscriptions"][subscription["id"]]["latest_invoice"] == "in_2"
    rows = await hub.store.db.read(
        lambda db: db.execute(
            "SELECT operation, state FROM plugin_stripe__requests ORDER BY created_at"
        ).fetchall()
    )
    assert [tuple(r) for r in rows] == [
        ("create_customer", "done"),
        ("create_subscription", "done"),
        ("change_plan", "done"),
        ("cancel_at_period_end", "done"),
        ("portal_session", "done"),
    ]


@pytest.mark.slow
async def test_a_crash_before_the_answer_then_the_retry_reuses_the_key(
    tmp_path, scripted, reap_daemons
):
    config = "[integrations.stripe]\n" + "".join(
        f"{k} = {v!r}\n" if isinstance(v, str) else f"{k} = {v}\n"
        for k, v in section(scripted).items()
        if k != "secret_key"
    )
    env = {"HUB_INTEGRATIONS__STRIPE__SECRET_KEY": KEY}
    scripted.faults["/v1/subscriptions"] = ["hang"]
    async with aiohttp.ClientSession() as session:
        daemon = Daemon(tmp_path, config, env)
        await daemon.ready(session)
        pending = asyncio.ensure_future(
            daemon.api(session, "POST", "/api/billing/subscriptions", json=SUBSCRIBE)
        )
        await scripted.hung.wait()  # Stripe has the request; the hub waits for the answer
        daemon.kill()
        with pytest.raises(aiohttp.ClientError):
            await pending
        daemon = Daemon(tmp_path, config, env, port=daemon.port)
        await daemon.ready(session)
        status, answer = await daemon.api(
            session, "POST", "/api/billing/subscriptions", json=SUBSCRIBE
        )
        assert status == 200, answer
        assert daemon.stop() == 0
    (first, _), (retry, _) = scripted.posts("/v1/subscriptions")
    assert first == retry and first is not None
    assert answer["subscription"]["id"] == "sub_1"  # Stripe's first (and only) subscription


# --------------------------------------------------------------------------- against the sandbox


async def sandbox_client(hub_client: Any, sandbox: RunningSandbox) -> Any:
    """A hub client with Stripe pointed at the sandbox (its API version, for its shapes)."""
    section = {
        "secret_key": SANDBOX_KEY,
        "base_url": sandbox.base_url,
        "api_version": sandbox.state.config.api_version,
        "max_network_retries": 0,
        "retry_base_delay": 0.001,
        "portal_return_url": "https://firm.example/back",
    }
    return await hub_client(config={"integrations": {"stripe": section}})


async def monthly_prices(sandbox: RunningSandbox, *amounts: int) -> list[str]:
    """Monthly USD prices of one product, made the way a person would."""
    async with stripe_sdk(sandbox) as sdk:
        product = await sdk.v1.products.create_async({"name": "Monthly bookkeeping"})
        return [
            (
                await sdk.v1.prices.create_async(
                    {
                        "product": product.id,
                        "currency": "usd",
                        "unit_amount": amount,
                        "recurring": {"interval": "month"},
                    }
                )
            ).id
            for amount in amounts
        ]


def posts_to(sandbox: RunningSandbox, path: str) -> list[Any]:
    """The sandbox's records of the POSTs to ``path``."""
    return [r for r in sandbox.state.requests if r.method == "POST" and r.path == path]


async def test_the_billing_flow_against_the_sandbox(hub_client, stripe_sandbox):
    basic, gold = await monthly_prices(stripe_sandbox, 4900, 12900)
    client = await sandbox_client(hub_client, stripe_sandbox)
    client_id = await add_client(hub_of(client), "Cedar Partners", "ap@cedar.example")
    hub_requests = len(stripe_sandbox.state.requests)
    found = await client.post("/api/billing/customers", json={"client_id": client_id})
    customer = (await found.json())["customer"]
    body = {"client_id": client_id, "price": basic}
    created = await client.post("/api/billing/subscriptions", json=body)
    assert created.status == 200, await created.text()
    answer = await created.json()
    subscription = answer["subscription"]
    assert subscription["status"] == "incomplete" and subscription["customer"] == customer["id"]
    assert answer["client_secret"]
    path = f"/api/billing/subscriptions/{subscription['id']}"
    changed = await (await client.post(f"{path}/plan", json={"price": gold})).json()
    assert changed["subscription"]["items"]["data"][0]["price"]["id"] == gold
    later = await (await client.post(f"{path}/cancel", json={"at_period_end": True})).json()
    assert later["subscription"]["cancel_at_period_end"] is True
    portal = await (await client.post("/api/billing/portal", json={"client_id": client_id})).json()
    assert portal["url"].startswith("https://")
    now = await (await client.post(f"{path}/cancel", json={})).json()
    assert now["subscription"]["status"] == "canceled"
    sent = list(stripe_sandbox.state.requests)[hub_requests:]
    posted = [r for r in sent if r.method == "POST"]
    assert len(posted) == 5  # customer, subscription, plan, cancel at period end, portal
    assert all((r.idempotency_key or "").startswith("hub-") for r in posted)
    records = await stored_records(hub_of(client), "stripe", CONNECTION)
    assert records["subscriptions"][subscription["id"]]["status"] == "canceled"


async def test_a_429_and_a_lost_answer_reuse_one_key_against_the_sandbox(
    hub_client, stripe_sandbox
):
    basic, gold = await monthly_prices(stripe_sandbox, 4900, 12900)
    async with stripe_sdk(stripe_sandbox) as sdk:
        customer = await sdk.v1.customers.create_async({"name": "Birch Group"})
    client = await sandbox_client(hub_client, stripe_sandbox)
    stripe_sandbox.state.fail_next("/v1/subscriptions", 429, times=2)
    first = await client.post(
        "/api/billing/subscriptions", json={"customer": customer.id, "price": basic}
    )
    assert first.status == 200
    keys = {r.idempotency_key for r in posts_to(stripe_sandbox, "/v1/subscriptions")}
    assert len(posts_to(stripe_sandbox, "/v1/subscriptions")) == 3 and len(keys) == 1

    stripe_sandbox.state.crash_next("/v1/subscriptions")  # applied, the answer is lost
    body = {"customer": customer.id, "price": gold}
    lost = await client.post("/api/billing/subscriptions", json=body)
    assert lost.status == 502 and (await lost.json())["type"] == "network"
    retried = await client.post("/api/billing/subscriptions", json=body)
    assert retried.status == 200
    *_, crashed, replayed = posts_to(stripe_sandbox, "/v1/subscriptions")
    assert crashed.idempotency_key == replayed.idempotency_key and replayed.replayed
    async with stripe_sdk(stripe_sandbox) as sdk:
        listed = await sdk.v1.subscriptions.list_async({"customer": customer.id})
    assert len(listed.data) == 2  # one per price: the lost answer did not make a third
