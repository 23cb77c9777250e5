"""Sync: planning per stream (events, full reads, resumption, retention, reconciliation)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import AsyncGenerator, Mapping
from typing import Any

import orjson
import pytest

from hub.store.client_match import Candidate
from hub.testing import client_links, hub_of, stored_records, sync_records
from plugins.stripe.sandbox import RunningSandbox
from plugins.stripe.sync import EVENT_RETENTION_S, SPECS, event_pages, oldest_cursor, plan_run
from tests.stripe.conftest import KEY, WEBHOOK_SECRET, stripe_sdk

NOW = 1_800_000_000.0
DAY = 86400


def test_each_stream_gets_events_a_full_read_or_its_resumption():
    fresh = {"event": "evt_9", "event_created": NOW - 60, "full_at": NOW - 3600}
    cursors = {
        "customers": fresh,
        "products": {"full": {"after": "prod_5", "event": "evt_1", "event_created": 1}},
        "prices": {**fresh, "event_created": NOW - EVENT_RETENTION_S},
        "invoices": {**fresh, "full_at": NOW - 2 * DAY},
        "charges": {"event": None, "event_created": 0, "full_at": NOW - 60},
    }
    streams = [*cursors, "refunds"]
    plan = plan_run(streams, cursors, NOW, NOW, reconcile_s=DAY)
    assert set(plan.events) == {"customers", "charges"}
    assert plan.full == [
        ("products", cursors["products"]["full"], False),  # resumed, as the pass it was
        ("prices", None, True),  # beyond the 30 days of events: re-read
        ("invoices", None, True),  # last full read over a day ago: reconciled
        ("refunds", None, False),  # never read
    ]


def test_the_oldest_cursor_decides_where_events_are_read_from():
    cursors = [
        {"event": "evt_b", "event_created": 200},
        {"event": "evt_a", "event_created": 100},
    ]
    assert oldest_cursor(cursors) == "evt_a"
    assert oldest_cursor([*cursors, {"event": None, "event_created": 0}]) is None


# --------------------------------------------------------------------------- against the sandbox

CONNECTION = "stripe:default"
SANDBOX_STREAMS = [spec.stream for spec in SPECS]
"""The streams whose endpoints the sandbox serves."""


@pytest.fixture
def sandbox(stripe_sandbox: RunningSandbox) -> RunningSandbox:
    """The Stripe sandbox with 30 customers, 10 of them with a paid monthly subscription."""
    stripe_sandbox.state.seed(customers=30, products=3, subscriptions=10)
    return stripe_sandbox


def stripe_config(sandbox: RunningSandbox, **extra: Any) -> dict[str, Any]:
    """``[integrations.stripe]`` pointing at ``sandbox``."""
    section = {
        "secret_key": KEY,
        "webhook_secrets": [WEBHOOK_SECRET],
        "base_url": sandbox.base_url,
        "streams": SANDBOX_STREAMS,
        "page_size": 7,  # several pages even for small lists
        "max_network_retries": 0,
        **extra,
    }
    return {"integrations": {"stripe": section}}


async def stored_cursor(hub: Any, stream: str) -> dict[str, Any]:
    row = await hub.store.db.read(
        lambda db: db.execute(
            "SELECT cursor FROM cursors WHERE connection_id = ? AND stream = ?",
            [CONNECTION, stream],
        ).fetchone()
    )
    cursor: dict[str, Any] = orjson.loads(row[0])
    return cursor


async def set_cursor(hub: Any, stream: str, cursor: dict[str, Any]) -> None:
    await hub.store.db.write(
        lambda db: db.execute(
            "UPDATE cursors SET cursor = ? WHERE connection_id = ? AND stream = ?",
            [orjson.dumps(cursor).decode(), CONNECTION, stream],
        )
    )


async def test_a_full_sync_stores_every_object_in_minor_units(make_hub, sandbox):
    async with stripe_sdk(sandbox) as client:
        product = await client.v1.products.create_async({"name": "Monthly bookkeeping"})
        for amount in (4900, 12900):
            await client.v1.prices.create_async(
                {"product": product.id, "currency": "usd", "unit_amount": amount}
            )
    hub = await make_hub(config=stripe_config(sandbox))
    records = await sync_records(hub, "stripe")
    assert len(records["customers"]) == 30 and len(records["products"]) == 4
    mine = [p for p in records["prices"].values() if p["product"] == product.id]
    amounts = sorted((p["unit_amount"], p["currency"]) for p in mine)
    assert amounts == [(4900, "usd"), (12900, "usd")]  # integer minor units beside a currency
    assert len(records["subscriptions"]) == 10
    for stream, field in (("invoices", "amount_paid"), ("charges", "amount")):
        assert len(records[stream]) == 10
        assert all(isinstance(r[field], int) and r["currency"] for r in records[stream].values())
    for invoice in records["invoices"].values():  # every line, not only the first page
        assert len(invoice["lines"]["data"]) == invoice["lines"].get("total_count", 1)
    cursor = await stored_cursor(hub, "customers")
    assert set(cursor) == {"event", "event_created", "full_at"}
    links = [link for c in await hub.store.clients.list() for link in c["links"]]
    assert len({link["provider_id"] for link in links}) == 30  # every customer is a client


async def test_customers_match_clients_by_metadata_client_id_then_e_mail_then_name(
    make_hub, stripe_sandbox
):
    hub = await make_hub(config=stripe_config(stripe_sandbox, streams=["customers"]))
    clients = [(f"Client {i}", f"ap@client{i}.example") for i in range(1, 8)]
    clients[4] = ("Cedar Partners", "ap@cedar.example")
    await hub.store.clients.match(
        "ledger", "ledger:1", [Candidate(str(i), *c) for i, c in enumerate(clients, 1)]
    )
    async with stripe_sdk(stripe_sandbox) as client:
        named = await client.v1.customers.create_async(
            {"name": "Client 2", "email": "ap@client2.example", "metadata": {"client_id": "7"}}
        )
        both = await client.v1.customers.create_async(
            {"name": "Cedar Partners", "email": "ap@cedar.example"}
        )
        by_name = await client.v1.customers.create_async({"name": "Client 3"})
    await sync_records(hub, "stripe")
    assert await client_links(hub, "stripe") == {
        named.id: (7, "client_id"),  # though its e-mail and name are client 2's
        both.id: (5, "email"),  # e-mail before name
        by_name.id: (3, "name"),
    }


class Event(dict[str, Any]):
    """An event a test can hold a weak reference to."""


class EventList:
    """The Events API of :class:`~plugins.stripe.client.StripeApi`: newest first, or forward
    from ``ending_before`` (oldest to newest), 10 a page."""

    page_size = 10

    def __init__(self, count: int) -> None:
        self.events = [Event(id=f"evt_{n:03d}", created=n) for n in range(count)]  # oldest first
        self.listed: list[weakref.ref[Event]] = []
        """The events the newest-first listing answered."""

    async def pages(
        self, path: str, params: Mapping[str, Any] | None = None
    ) -> AsyncGenerator[list[Any], None]:
        assert path == "/v1/events"
        after = (params or {}).get("ending_before")
        if after is None:
            newest_first = self.events[::-1]
            for start in range(0, len(newest_first), self.page_size):
                page = [Event(e) for e in newest_first[start : start + self.page_size]]
                self.listed += [weakref.ref(e) for e in page]
                yield page
            return
        newer = self.events[[e["id"] for e in self.events].index(after) + 1 :]
        for start in range(0, len(newer), self.page_size):
            yield [Event(e) for e in newer[start : start + self.page_size]]


async def test_events_from_the_first_are_read_oldest_first_without_holding_them_all():
    api = EventList(95)
    read: list[str] = []
    held = 0
    async for page in event_pages(api, None):  # type: ignore[arg-type]
        if not read:  # the first page out: what the newest-first listing still holds
            gc.collect()
            held = sum(1 for ref in api.listed if ref() is not None)
        read.extend(e["id"] for e in page)
    assert read == [e["id"] for e in api.events]
    assert len(api.listed) == 95 and held <= api.page_size


async def test_an_incremental_sync_refetches_what_the_events_name(make_hub, sandbox):
    hub = await make_hub(config=stripe_config(sandbox))
    before = await sync_records(hub, "stripe")
    first, second = sorted(before["customers"])[:2]
    async with stripe_sdk(sandbox) as client:
        await client.v1.customers.update_async(first, {"name": "Renamed once"})
        await client.v1.customers.update_async(first, {"name": "Renamed twice"})
        await client.v1.customers.delete_async(second)
        created = await client.v1.customers.create_async({"name": "New Client Co"})
        newest = (await client.v1.events.list_async({"limit": 1})).data[0].id
    result = await hub.engine.run(CONNECTION, trigger="test")
    assert result.state == "succeeded", result.error
    assert (result.created, result.deleted) == (1, 1)
    records = await stored_records(hub, "stripe", CONNECTION)
    assert records["customers"][first]["name"] == "Renamed twice"
    assert second not in records["customers"]
    assert records["customers"][created.id]["name"] == "New Client Co"
    assert (await stored_cursor(hub, "customers"))["event"] == newest


@pytest.mark.parametrize(
    "cursor_change",
    [
        {"event_created": 1},  # beyond Stripe's 30 days of events
        {"event": "evt_forgotten"},  # an event Stripe no longer has
        {"full_at": 0},  # the nightly reconciliation is due
    ],
)
async def test_old_cursors_and_reconciliation_reread_in_full(make_hub, sandbox, cursor_change):
    hub = await make_hub(config=stripe_config(sandbox))
    await sync_records(hub, "stripe")
    for stream in SANDBOX_STREAMS:
        await set_cursor(hub, stream, {**await stored_cursor(hub, stream), **cursor_change})
    await set_cursor(hub, "customers", {**await stored_cursor(hub, "customers"), "full_at": 0})
    records = await sync_records(hub, "stripe")
    assert len(records["customers"]) == 30
    assert (await stored_cursor(hub, "customers"))["full_at"] > 0


async def test_sandbox_webhooks_are_verified_and_applied(hub_client, sandbox):
    client = await hub_client(config=stripe_config(sandbox))
    async with stripe_sdk(sandbox) as api:
        created = await api.v1.customers.create_async({"name": "Webhook Client LLC"})
        (event,) = (await api.v1.events.list_async({"limit": 1})).data
    url = str(client.make_url("/webhooks/stripe"))
    await sandbox.send_event(event.to_dict(), url=url, duplicate=True)
    hub = hub_of(client)
    await hub.dispatcher.drain()
    records = await stored_records(hub, "stripe", CONNECTION)
    assert records["customers"][created.id]["name"] == "Webhook Client LLC"


async def test_lists_cut_at_ten_are_read_in_full(make_hub, sandbox):
    async with stripe_sdk(sandbox) as client:
        product = await client.v1.products.create_async({"name": "Per-entity bookkeeping"})
        prices = [
            await client.v1.prices.create_async(
                {
                    "product": product.id,
                    "currency": "usd",
                    "unit_amount": 1000 + n,
                    "recurring": {"interval": "month"},
                }
            )
            for n in range(12)
        ]
        customer = await client.v1.customers.create_async({"name": "Twelve Entities LLC"})
        created = await client.v1.subscriptions.create_async(
            {
                "customer": customer.id,
                "items": [{"price": price.id} for price in prices],
                "payment_behavior": "default_incomplete",
            }
        )
    hub = await make_hub(config=stripe_config(sandbox))
    records = await sync_records(hub, "stripe")
    subscription = records["subscriptions"][created.id]
    assert len(subscription["items"]["data"]) == 12 and not subscription["items"]["has_more"]
    invoice = records["invoices"][subscription["latest_invoice"]]
    assert len(invoice["lines"]["data"]) == 12 and not invoice["lines"]["has_more"]
