"""Full and incremental (CDC) sync against the sandbox: exact data, deletions, faults."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from pathlib import Path

import aiohttp
import orjson
import pytest

from hub.store import Store
from hub.store.client_match import Candidate
from hub.testing import client_links, stored_records, sync_records
from plugins.quickbooks.oauth import credentials_from
from plugins.quickbooks.reports import ALL_STREAMS
from plugins.quickbooks.sandbox import CompanySpec, InjectedFault, start_sandbox
from plugins.quickbooks.sync import BY_STREAM, SPECS
from tests.daemon import Daemon, query
from tests.quickbooks.conftest import (
    ENTITY_STREAMS,
    REALM,
    SMALL,
    START,
    connect,
    live_rows,
    qb_config,
    sandbox_config,
)

CONNECTION = f"quickbooks:{REALM}"
NOT_IN_CDC = {"TaxCode", "TaxRate", "TaxAgency", "TimeActivity", "ExchangeRate"}
NOT_IN_CDC |= {"RecurringTransaction"}
"""The entities an incremental run re-reads in full: those Intuit's CDC does not serve, and
those whose CDC answer the plugin cannot apply."""


def expected(state) -> dict[str, dict[str, dict]]:
    """The sandbox's data per stream, as the hub should store it (the entity streams)."""
    found: dict[str, dict[str, dict]] = {stream.name: {} for stream in ALL_STREAMS}
    return found | {stream: live_rows(state, BY_STREAM[stream].entity) for stream in ENTITY_STREAMS}


async def synced_hub(make_hub, sandbox, **settings):
    hub = await make_hub(config=qb_config(sandbox, **settings))
    await connect(hub, sandbox.state)
    return hub


async def test_full_sync_stores_every_entity_exactly(make_hub, sandbox):
    hub = await synced_hub(make_hub, sandbox)
    records = await sync_records(hub, "quickbooks")
    assert records == expected(sandbox.state)
    assert len(records["invoices"]) == 57 and len(records["company_info"]) == 1
    cursors = await hub.store.runs.cursors(CONNECTION)
    assert cursors["invoices"].cursor == {"since": (START - timedelta(seconds=60)).isoformat()}
    assert cursors["invoices"].full_generation is None


async def test_incremental_sync_applies_updates_creations_and_deletions(make_hub, sandbox):
    hub = await synced_hub(make_hub, sandbox)
    await sync_records(hub, "quickbooks")
    state = sandbox.state
    state.advance_clock(120)
    state.update(REALM, "Invoice", "3", {"PrivateNote": "changed"})
    state.delete(REALM, "Invoice", "4")
    state.create(REALM, "Customer", {"DisplayName": "Brand New LLC"})
    state.deactivate(REALM, "Vendor", "2")
    before = len(state.requests)
    result = await hub.engine.run(CONNECTION)
    assert (result.state, result.created, result.updated, result.deleted) == (
        "succeeded",
        1,
        2,
        1,
    )
    records = await stored_records(hub, "quickbooks", CONNECTION)
    assert records == expected(state)
    assert records["invoices"]["3"]["PrivateNote"] == "changed"
    assert "4" not in records["invoices"]
    assert records["vendors"]["2"]["Active"] is False  # inactive list rows stay, flagged
    paths = [r.path.rsplit("/", 1)[-1] for r in list(state.requests)[before:]]
    assert paths == [REALM, "cdc", *["query"] * len(NOT_IN_CDC)]  # CompanyInfo, CDC, re-reads
    assert full_reads(state, before) == NOT_IN_CDC


def change_three_entities(state, rounds: int = 420) -> None:
    """Over 1,000 changes to customers, invoices and payments, interleaved in time, with
    deletions: Intuit's grouped CDC answer is capped inside the payments."""
    state.delete(REALM, "Invoice", "5")
    for i in range(rounds):
        if i % 40 == 0:
            state.advance_clock(1)
        state.create(REALM, "Customer", {"DisplayName": f"Customer {i}"})
        invoice = state.create(REALM, "Invoice", {"PrivateNote": f"i{i}"})
        payment = state.create(REALM, "Payment", {"PrivateNote": f"p{i}"})
        if i % 5 == 0:
            state.delete(REALM, "Invoice", invoice["Id"])
            state.delete(REALM, "Payment", payment["Id"])


def cdc_calls(state, since: int = 0) -> list[str]:
    """The ``entities`` of each CDC call from request number ``since`` on."""
    return [r.query or "" for r in list(state.requests)[since:] if r.path.endswith("/cdc")]


def full_reads(state, since: int = 0) -> set[str]:
    """The entities read by query from request number ``since`` on."""
    queries = [r.query or "" for r in list(state.requests)[since:] if r.path.endswith("/query")]
    return {q.split()[3] for q in queries if q.startswith("SELECT * FROM ")}


async def test_cdc_over_1000_changes_across_entities_with_deletes_loses_nothing(make_hub, sandbox):
    hub = await synced_hub(make_hub, sandbox)
    await sync_records(hub, "quickbooks")
    state = sandbox.state
    change_three_entities(state)
    state.advance_clock(5)
    before = len(state.requests)
    result = await hub.engine.run(CONNECTION)
    assert result.state == "succeeded", result.error
    assert (result.created, result.deleted) == (420 * 3 - 84 * 2, 1)
    assert await stored_records(hub, "quickbooks", CONNECTION) == expected(state)
    # customers and invoices came whole in the capped answer; the rest were asked again
    assert len(cdc_calls(state, before)) == 2
    assert full_reads(state, before) == NOT_IN_CDC


async def test_a_429_mid_cdc_fails_the_run_and_the_next_run_loses_nothing(make_hub, sandbox):
    hub = await synced_hub(make_hub, sandbox, retry_attempts=2)
    await sync_records(hub, "quickbooks")
    state = sandbox.state
    change_three_entities(state)
    state.fail_next(429, count=2, path="/cdc$", skip=1)  # the second CDC call is throttled
    failed = await hub.engine.run(CONNECTION)
    assert (failed.state, failed.error_class) == ("failed", "rate_limit")
    assert failed.created > 0  # customers and invoices were stored before the throttle
    state.advance_clock(5)
    result = await hub.engine.run(CONNECTION)
    assert result.state == "succeeded", result.error
    assert await stored_records(hub, "quickbooks", CONNECTION) == expected(state)


async def test_one_entity_over_the_cap_resumes_after_its_newest_deletion(make_hub, sandbox):
    hub = await synced_hub(make_hub, sandbox)
    await sync_records(hub, "quickbooks")
    state = sandbox.state
    for i in range(1400):  # 700 active + 700 deleted: the cap cuts into the deletions
        if i % 100 == 0:
            state.advance_clock(1)
        invoice = state.create(REALM, "Invoice", {"PrivateNote": f"i{i}"})
        if i % 2:
            state.delete(REALM, "Invoice", invoice["Id"])
    state.advance_clock(5)
    before = len(state.requests)
    result = await hub.engine.run(CONNECTION)
    assert result.state == "succeeded", result.error
    assert await stored_records(hub, "quickbooks", CONNECTION) == expected(state)
    assert full_reads(state, before) == NOT_IN_CDC
    calls = cdc_calls(state, before)  # all; Invoice on; Invoice from its newest deletion; the rest
    assert [c.split(",")[0] for c in calls] == ["Account", "Invoice", "Invoice", "Payment"]
    assert calls[2] == "Invoice"


async def test_one_entity_whose_active_changes_fill_the_cap_is_read_in_full(make_hub, sandbox):
    hub = await synced_hub(make_hub, sandbox)
    await sync_records(hub, "quickbooks")
    state = sandbox.state
    for i in range(1100):  # spread over seconds, but 1,000 active changes hide any deletion
        if i % 100 == 0:
            state.advance_clock(1)
        state.create(REALM, "Invoice", {"PrivateNote": f"i{i}"})
    state.delete(REALM, "Invoice", "7")
    state.update(REALM, "Payment", "2", {"PrivateNote": "p"})
    before = len(state.requests)
    result = await hub.engine.run(CONNECTION)
    assert result.state == "succeeded", result.error
    assert (result.created, result.updated, result.deleted) == (1100, 1, 1)
    assert await stored_records(hub, "quickbooks", CONNECTION) == expected(state)
    assert full_reads(state, before) == {"Invoice", *NOT_IN_CDC}


async def test_over_1000_changes_in_one_second_split_the_entities(make_hub, sandbox):
    hub = await synced_hub(make_hub, sandbox)
    await sync_records(hub, "quickbooks")
    state = sandbox.state
    state.advance_clock(5)  # the clock is frozen: every change below has the same second
    for i in range(1100):
        state.create(REALM, "Invoice", {"PrivateNote": f"i{i}"})
    for i in range(300):
        state.create(REALM, "Payment", {"PrivateNote": f"p{i}"})
    for i in range(1, 9):
        state.update(REALM, "Bill", str(i), {"PrivateNote": "b"})
    before = len(state.requests)
    result = await hub.engine.run(CONNECTION)
    assert result.state == "succeeded", result.error
    assert (result.created, result.updated) == (1400, 8)
    assert await stored_records(hub, "quickbooks", CONNECTION) == expected(state)
    queries = [r.query or "" for r in list(state.requests)[before:] if r.path.endswith("/query")]
    # Invoice alone still had over 1,000 changes in that second: it was read in full instead
    assert any(q.startswith("SELECT * FROM Invoice ") for q in queries)
    assert not any(q.startswith("SELECT * FROM Payment ") for q in queries)


async def test_cursor_older_than_30_days_falls_back_to_a_full_read(make_hub, sandbox):
    hub = await synced_hub(make_hub, sandbox, streams=["customers", "invoices"])
    await sync_records(hub, "quickbooks")
    state = sandbox.state
    # Only invoices were synced long ago; customers have a fresh cursor.
    await hub.store.db.write(
        lambda db: db.execute(
            "UPDATE cursors SET cursor = ? WHERE stream = 'invoices'",
            ['{"since": "2025-05-01T00:00:00-07:00"}'],
        )
    )
    state.delete(REALM, "Invoice", "9")  # a deletion CDC can no longer report...
    state.update(REALM, "Customer", "2", {"Notes": "x"})
    before = len(state.requests)
    result = await hub.engine.run(CONNECTION)
    assert result.state == "succeeded" and result.deleted == 1 and result.updated == 1
    records = await stored_records(hub, "quickbooks", CONNECTION)
    assert records["invoices"] == live_rows(state, "Invoice")
    assert records["customers"] == live_rows(state, "Customer")
    calls = list(state.requests)[before:]
    assert len([r for r in calls if r.path.endswith("/cdc")]) == 1
    assert any((r.query or "").startswith("SELECT * FROM Invoice ") for r in calls)
    cursor = (await hub.store.runs.cursors(CONNECTION))["invoices"]
    assert cursor.cursor["since"] > "2025-06-29" and cursor.full_generation is None


async def test_429_storms_and_5xx_during_a_full_sync_still_give_exact_data(make_hub, sandbox):
    hub = await synced_hub(make_hub, sandbox, page_size=20, requests_per_minute=6000)
    state = sandbox.state
    storm = [
        InjectedFault("status", status=429, retry_after=0.02),
        None,
        InjectedFault("status", status=503),
        InjectedFault("status", status=429),
        None,
        InjectedFault("fault_body"),  # a Fault inside a 200
        InjectedFault("status", status=500),
        InjectedFault("status", status=502),
        None,
        InjectedFault("drop"),
    ]
    seen = {"n": 0}

    def take_fault(path):  # a fault on 7 of every 10 API calls
        if not path.startswith("/v3/"):
            return None
        seen["n"] += 1
        return storm[seen["n"] % len(storm)]

    state.take_fault = take_fault
    records = await sync_records(hub, "quickbooks")
    assert records == expected(state)
    statuses = [r.status for r in state.requests if r.path.startswith("/v3/")]
    assert statuses.count(429) >= 10 and statuses.count(200) >= 30


async def test_a_failed_full_sync_resumes_from_its_cursor(make_hub, sandbox):
    hub = await synced_hub(make_hub, sandbox, streams=["invoices"], page_size=10)
    state = sandbox.state
    served = {"pages": 0}

    def take_fault(path):  # three pages get through, then every query fails
        if not path.endswith("/query"):
            return None
        served["pages"] += 1
        return None if served["pages"] <= 3 else InjectedFault("status", status=500)

    state.take_fault = take_fault
    result = await hub.engine.run(CONNECTION, full=True)
    assert result.state == "failed" and result.error_class == "server"
    partial = await stored_records(hub, "quickbooks", CONNECTION)
    assert len(partial["invoices"]) == 28  # three pages of ten, overlapping by one row
    del state.take_fault
    before = len(state.requests)
    records = await sync_records(hub, "quickbooks")
    assert records["invoices"] == live_rows(state, "Invoice")
    queries = [r.query for r in list(state.requests)[before:] if r.path.endswith("/query")]
    assert "STARTPOSITION 28 " in queries[0]
    assert not any("STARTPOSITION 1 " in q for q in queries)


async def test_rows_deleted_between_pages_do_not_hide_others(make_hub, sandbox):
    hub = await synced_hub(make_hub, sandbox, streams=["invoices"], page_size=10)
    state = sandbox.state
    original = state.query_body
    calls = {"n": 0}

    def query_body(realm, plan):
        calls["n"] += 1
        if calls["n"] == 2:  # after the first page: rows before the position vanish
            for invoice in ("2", "3", "5", "6", "7", "8"):
                state.delete(REALM, "Invoice", invoice)
        return original(realm, plan)

    state.query_body = query_body
    result = await hub.engine.run(CONNECTION, full=True)
    assert result.state == "succeeded"
    records = await stored_records(hub, "quickbooks", CONNECTION)
    assert set(records["invoices"]) >= set(live_rows(state, "Invoice"))  # none skipped
    del state.query_body
    records = await sync_records(hub, "quickbooks")  # CDC reports the deletions
    assert records["invoices"] == live_rows(state, "Invoice")


async def test_customers_are_matched_to_clients(make_hub, sandbox):
    hub = await synced_hub(make_hub, sandbox, streams=["customers"])
    await sync_records(hub, "quickbooks")
    clients = await hub.store.clients.list()
    assert len(clients) == 23
    assert {link["provider_id"] for c in clients for link in c["links"]} == {
        str(i) for i in range(1, 24)
    }
    state = sandbox.state
    state.advance_clock(120)
    state.create(REALM, "Customer", {"DisplayName": "Fresh Co", "CompanyName": "Fresh Co"})
    await sync_records(hub, "quickbooks")
    clients = await hub.store.clients.list()
    assert len(clients) == 24 and clients[-1]["name"] == "Fresh Co"
    await hub.dispatcher.drain()
    events = await hub.store.db.read(
        lambda db: db.execute("SELECT data FROM events WHERE type = 'clients.matched'").fetchall()
    )
    first, second = (orjson.loads(row[0]) for row in events)  # one per run
    assert (first["stream"], first["created"], first["matched"]) == ("customers", 23, 0)
    assert (second["created"], second["matched"], second["ambiguous"]) == (1, 0, 0)
    assert second["linked"] == [{"record": "24", "client": 24, "by": "created"}]


async def test_customers_match_by_tax_id_and_jobs_stand_for_no_client(make_hub, sandbox):
    hub = await synced_hub(make_hub, sandbox, streams=["customers"])
    await hub.store.clients.match(
        "stripe", "stripe:x", [Candidate("cus_1", "Northwind Holdings", None, ("12 3456789",))]
    )
    state = sandbox.state
    taxed = state.create(
        REALM, "Customer", {"DisplayName": "Northwind", "PrimaryTaxIdentifier": "12-3456789"}
    )
    job = state.create(
        REALM, "Customer", {"DisplayName": "Northwind:Audit", "ParentRef": {"value": taxed["Id"]}}
    )
    await sync_records(hub, "quickbooks")
    linked = await client_links(hub, "quickbooks")
    assert linked[taxed["Id"]] == (1, "tax_id")
    assert job["Id"] not in linked


def test_every_stream_is_declared_once():
    assert len({spec.entity for spec in SPECS}) == len(SPECS) == 35
    assert BY_STREAM["invoices"].entity == "Invoice"


# --------------------------------------------------------------------------- kill -9


def qb_daemon(folder: Path, sandbox) -> Daemon:
    """``advisoros-hub serve`` as a child process, syncing QuickBooks from the sandbox."""
    config = sandbox.state.config
    toml = f"""[integrations.quickbooks]
client_id = "{config.client_id}"
base_url = "{sandbox.base_url}"
oauth_base_url = "{sandbox.oauth_base_url}"
streams = ["invoices"]
page_size = 50
retry_base_delay = 0.01
requests_per_minute = 6000
requests_per_second = 1000
throttle_wait_s = 0.01
"""
    return Daemon(
        folder, toml, {"HUB_INTEGRATIONS__QUICKBOOKS__CLIENT_SECRET": config.client_secret}
    )


TABLE = "records_quickbooks_invoices"


def stored_rows(db: Path) -> list[tuple[str, str]]:
    return query(db, f"SELECT id, data FROM {TABLE} WHERE deleted_at IS NULL")


@pytest.mark.slow
async def test_kill_9_mid_sync_resumes_from_the_last_cursor(tmp_path, reap_daemons):
    counts = {**SMALL, "Invoice": 4000}
    config = sandbox_config(companies=(CompanySpec(REALM, counts=counts),))
    async with await start_sandbox(config) as sandbox, aiohttp.ClientSession() as session:
        store = Store(tmp_path / "hub.db")  # the daemon reads the tokens from its database
        pair = sandbox.state.issue_tokens(REALM)
        tokens = {"access_token": pair.access_token, "refresh_token": pair.refresh_token}
        await store.connections.upsert(
            "quickbooks", REALM, "Willow", credentials_from(tokens, REALM), "oauth"
        )
        store.close()
        sandbox.state.delay_next(0.05, count=100_000, path="/query")
        daemon = qb_daemon(tmp_path, sandbox)
        await daemon.ready(session)
        status, body = await daemon.api(session, "POST", "/api/sync/quickbooks")
        assert status == 202, body
        deadline = time.monotonic() + 30
        while len(stored_rows(daemon.db)) < 500:
            assert time.monotonic() < deadline, "no batches were committed"
            await asyncio.sleep(0.01)
        daemon.kill()
        partial = len(stored_rows(daemon.db))
        assert 500 <= partial < 4000

        before = len(sandbox.state.requests)
        daemon = qb_daemon(tmp_path, sandbox)
        await daemon.ready(session)
        status, body = await daemon.api(session, "POST", "/api/sync/quickbooks")
        run = await daemon.wait_run(session, body["run_id"])
        assert run["state"] == "succeeded", run
        assert daemon.stop() == 0
        queries = [r.query for r in list(sandbox.state.requests)[before:] if r.query]
        first = int(queries[0].split("STARTPOSITION ")[1].split()[0])
        assert first >= partial - 50, "the sync started over instead of resuming"
        rows = stored_rows(daemon.db)
        source = live_rows(sandbox.state, "Invoice")
    assert len(rows) == len({i for i, _ in rows}) == len(source) == 4000
    assert {i: orjson.loads(d) for i, d in rows} == source
