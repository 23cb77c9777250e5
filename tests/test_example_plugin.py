"""The example third-party plugin, synced end to end through the engine and the API."""

from __future__ import annotations

from hub.testing import stored_records, sync_records, wait_for_run
from tests.conftest import ledger_config

CONNECTION = "custom_accounting:default"


async def test_full_then_incremental_sync_equals_the_source(make_hub, ledger):
    hub = await make_hub(config=ledger_config(ledger))
    records = await sync_records(hub, "custom_accounting")
    assert records["transactions"] == ledger.state.live_records("transactions")
    assert records["accounts"] == ledger.state.live_records("accounts")

    ledger.state.update("transactions", "txn_00000010", amount="99.99")
    ledger.state.delete("transactions", "txn_00000011")
    ledger.state.create("accounts", {"id": "acc_999999", "name": "New", "updated_at": ""})
    result = await hub.engine.run(CONNECTION)
    assert (result.state, result.created, result.updated, result.deleted) == (
        "succeeded",
        1,
        1,
        1,
    )
    records = await stored_records(hub, "custom_accounting", CONNECTION)
    assert records["transactions"] == ledger.state.live_records("transactions")
    assert records["transactions"]["txn_00000010"]["amount"] == "99.99"
    assert "txn_00000011" not in records["transactions"]


async def test_full_sync_tombstones_what_the_source_no_longer_has(make_hub, ledger):
    hub = await make_hub(config=ledger_config(ledger))
    await sync_records(hub, "custom_accounting")
    ledger.state.streams["transactions"].size -= 100  # records vanish without a deletion event
    records = await sync_records(hub, "custom_accounting", full=True)
    assert records["transactions"] == ledger.state.live_records("transactions")
    run = (await hub.store.runs.recent(CONNECTION, limit=1))[0]
    assert run["deleted"] == 100


async def test_sync_through_the_api(hub_client, ledger):
    client = await hub_client(config=ledger_config(ledger))
    response = await client.post("/api/sync/custom_accounting", json={"full": True})
    assert response.status == 202
    run_id = (await response.json())["run_id"]
    run = await wait_for_run(client, run_id)
    assert run["state"] == "succeeded"
    assert run["created"] == 2530
    status = await (await client.get("/api/status")).json()
    (integration,) = [i for i in status["integrations"] if i["name"] == "custom_accounting"]
    streams = {s["stream"]: s["records"] for s in integration["connections"][0]["streams"]}
    assert streams == {"accounts": 30, "transactions": 2500}
