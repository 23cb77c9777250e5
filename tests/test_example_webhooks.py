"""The example plugin's webhooks end to end: a signed delivery → the re-fetched record in the
records table → the ``custom_accounting.<stream>.<op>`` event; redeliveries change nothing."""

from __future__ import annotations

from typing import Any

import orjson
from custom_accounting.webhooks import SIGNATURE_HEADER, sign

from hub.testing import deliver_webhook, stored_records, sync_records
from hub.web.keys import HUB
from tests.conftest import ledger_config

SECRET = "ledger-webhook-secret"
CONNECTION = "custom_accounting:default"
PATH = "/webhooks/custom_accounting"


async def announced(hub: Any) -> list[tuple[str, dict[str, Any]]]:
    """The hub events the plugin emitted (not the stored webhook events)."""
    rows = await hub.store.db.read(
        lambda db: db.execute(
            "SELECT type, data FROM events WHERE source = 'custom_accounting' "
            "AND type NOT LIKE 'custom_accounting.webhook.%' ORDER BY id"
        ).fetchall()
    )
    return [(kind, orjson.loads(data)) for kind, data in rows]


async def deliveries(hub: Any) -> list[tuple[str, int]]:
    """(state, attempts) of every ``process`` delivery."""
    rows = await hub.store.db.read(
        lambda db: db.execute(
            "SELECT state, attempts FROM deliveries WHERE handler = 'process' ORDER BY event"
        ).fetchall()
    )
    return [tuple(row) for row in rows]


async def test_changes_are_refetched_tombstoned_announced_and_redeliveries_ignored(
    hub_client, ledger
):
    client = await hub_client(config=ledger_config(ledger, webhook_secret=SECRET))
    hub = client.app[HUB]
    state = ledger.state
    state.update("transactions", "txn_00000010", amount="99.99")
    state.delete("transactions", "txn_00000011")
    state.create("accounts", {"id": "acc_999999", "name": "New", "updated_at": ""})
    body, headers = state.webhook(SECRET)

    assert await deliver_webhook(client, PATH, body, headers) == (
        200,
        {"received": 3, "duplicates": 0},
    )
    records = await stored_records(hub, "custom_accounting", CONNECTION)
    assert records["transactions"]["txn_00000010"]["amount"] == "99.99"
    assert records["accounts"]["acc_999999"]["name"] == "New"
    assert "txn_00000011" not in records["transactions"]
    events = await announced(hub)
    assert sorted(kind for kind, _ in events) == [  # processed concurrently
        "custom_accounting.accounts.created",
        "custom_accounting.transactions.deleted",
        "custom_accounting.transactions.updated",
    ]
    by_kind = dict(events)
    updated = by_kind["custom_accounting.transactions.updated"]
    assert updated["record"]["amount"] == "99.99" and updated["connection"] == CONNECTION
    assert updated["webhook_event"] == "evt_000001"
    assert by_kind["custom_accounting.transactions.deleted"]["deleted"] == ["txn_00000011"]

    # the provider redelivers: deduplicated by event id, nothing processed or emitted again
    assert await deliver_webhook(client, PATH, body, headers) == (
        200,
        {"received": 0, "duplicates": 3},
    )
    assert len(await announced(hub)) == 3
    assert await stored_records(hub, "custom_accounting", CONNECTION) == records
    assert await deliveries(hub) == [("done", 1)] * 3


async def test_processing_converges_whatever_the_order_and_the_repeats(hub_client, ledger):
    client = await hub_client(config=ledger_config(ledger, webhook_secret=SECRET))
    hub = client.app[HUB]
    await sync_records(hub, "custom_accounting")
    state = ledger.state
    state.update("transactions", "txn_00000020", memo="first")
    state.update("transactions", "txn_00000020", memo="second")
    state.delete("transactions", "txn_00000021")
    body, headers = state.webhook(SECRET)
    # an update about the deleted record arrives late, under a new event id
    late = orjson.dumps(
        {
            "events": [
                {"id": "evt_late", "type": "transaction.updated", "data": {"id": "txn_00000021"}}
            ]
        }
    )
    await deliver_webhook(client, PATH, body, headers)
    await deliver_webhook(client, PATH, late, {SIGNATURE_HEADER: sign(late, SECRET)})

    records = await stored_records(hub, "custom_accounting", CONNECTION)
    assert records["transactions"]["txn_00000020"]["memo"] == "second"
    assert "txn_00000021" not in records["transactions"]
    assert records["transactions"] == state.live_records("transactions")
    rows = await hub.store.db.read(
        lambda db: db.execute(
            "SELECT count(*), count(deleted_at) FROM records_custom_accounting_transactions"
        ).fetchone()
    )
    assert tuple(rows) == (2500, 1)  # one row per record, however many events named it


async def test_a_failed_fetch_is_retried(hub_client, ledger, monkeypatch):
    monkeypatch.setattr("hub.webhooks.dispatcher.handler_delay", lambda attempts: 0.01)
    client = await hub_client(config=ledger_config(ledger, webhook_secret=SECRET))
    hub = client.app[HUB]
    ledger.state.update("accounts", "acc_000001", name="Renamed")
    body, headers = ledger.state.webhook(SECRET)
    ledger.state.fail_next = [400]  # the first re-fetch is refused; retries are not HTTP's
    await deliver_webhook(client, PATH, body, headers)
    for _ in range(200):
        if await deliveries(hub) == [("done", 2)]:
            break
        await hub.dispatcher.drain()
    assert await deliveries(hub) == [("done", 2)]
    records = await stored_records(hub, "custom_accounting", CONNECTION)
    assert records["accounts"]["acc_000001"]["name"] == "Renamed"
    assert [kind for kind, _ in await announced(hub)] == ["custom_accounting.accounts.updated"]


async def test_events_it_does_not_sync_are_accepted_and_skipped(hub_client, ledger):
    client = await hub_client(
        config=ledger_config(ledger, webhook_secret=SECRET, streams=["accounts"])
    )
    hub = client.app[HUB]
    body = orjson.dumps(
        {
            "events": [
                {"id": "e1", "type": "invoice.created", "data": {"id": "inv_1"}},
                {"id": "e2", "type": "transaction.updated", "data": {"id": "txn_00000001"}},
                {"id": "e3", "type": "account.archived", "data": {"id": "acc_000001"}},
                {"id": "e4", "type": "account.updated"},
            ]
        }
    )
    status, answer = await deliver_webhook(
        client, PATH, body, {SIGNATURE_HEADER: sign(body, SECRET)}
    )
    assert (status, answer["received"]) == (200, 4)
    assert await deliveries(hub) == [("done", 1)] * 4
    assert await announced(hub) == []
    assert ledger.state.requests == 0


async def test_unsigned_or_tampered_deliveries_are_refused(hub_client, ledger):
    client = await hub_client(config=ledger_config(ledger, webhook_secret=SECRET))
    ledger.state.update("accounts", "acc_000001", name="Renamed")
    body, headers = ledger.state.webhook(SECRET)
    assert (await client.post(PATH, data=body + b" ", headers=headers)).status == 401
    assert (await client.post(PATH, data=body)).status == 401
    assert await announced(client.app[HUB]) == []
