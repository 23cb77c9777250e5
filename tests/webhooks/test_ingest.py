"""Group commit: many requests' rows in a few multi-row statements, with exact counts of what
each request created and what it repeated."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from hub.errors import StoreError
from hub.store.database import Database, WriteBusy, WriteTurn
from hub.store.inbox import CHUNK_SIZES, NewEvent, WebhookDelivery, insert_webhooks
from hub.testing import generic_signature, wait_for_run
from hub.web.keys import HUB
from hub.webhooks.dispatcher import HANDLER_CACHE_SIZE
from hub.webhooks.ingest import LOOP_WRITE_MAX_BYTES, GroupCommitter
from tests.conftest import ledger_config


def delivery(*event_ids: str, handlers: tuple[str, ...] = ("process",)) -> WebhookDelivery:
    events = [
        NewEvent("src", event_id, "src.thing", {"n": event_id}, None, handlers)
        for event_id in event_ids
    ]
    return WebhookDelivery.build("src", {"content-type": "application/json"}, b"{}", events)


@pytest.fixture
def db(tmp_path: Path):
    database = Database(tmp_path / "hub.db")
    yield database
    database.close()


def spy_write_now(db: Database) -> list[int]:
    """Record the group sizes committed by the event loop itself (``write_now``)."""
    calls: list[int] = []
    original = db.write_now

    def write_now(fn, requests):
        calls.append(len(requests))
        return original(fn, requests)

    db.write_now = write_now  # type: ignore[method-assign]
    return calls


def count(db: Database, sql: str) -> int:
    return int(db.read_sync(lambda conn: conn.execute(sql).fetchone()[0]))


async def test_duplicates_within_a_request_a_group_and_the_store_are_each_counted(db):
    await db.write(insert_webhooks, [delivery("old")])
    group = [
        delivery("a", "a", "old"),  # a repeat inside the request, a repeat of the store
        delivery("b", "a"),  # a repeat of the first request in the same group
        delivery("c"),
    ]
    stored = await db.write(insert_webhooks, group)
    assert [(s.created, s.duplicates) for s in stored] == [(1, 2), (1, 1), (1, 0)]
    assert count(db, "SELECT count(*) FROM events") == 4
    assert count(db, "SELECT count(*) FROM webhook_requests") == 4
    # one delivery per new event, none for a repeat
    assert count(db, "SELECT count(*) FROM deliveries") == 4
    first = group[0].request_row[0]
    assert count(db, f"SELECT count(*) FROM events WHERE request_id = {first}") == 1


@pytest.mark.parametrize("size", [1, 3, 127, 128, 129, 300])
async def test_groups_of_any_size_store_every_row_once(db, size):
    group = [delivery(f"e{i}", handlers=("process", "event:log")) for i in range(size)]
    stored = await db.write(insert_webhooks, group)
    assert all((s.created, s.duplicates) == (1, 0) for s in stored)
    assert count(db, "SELECT count(*) FROM events") == size
    assert count(db, "SELECT count(DISTINCT event) FROM deliveries") == size
    assert count(db, "SELECT count(*) FROM deliveries") == 2 * size
    resent = [delivery(f"e{i}") for i in range(size // 2 + 1)]
    again = await db.write(insert_webhooks, resent)
    assert all((s.created, s.duplicates) == (0, 1) for s in again)
    assert count(db, "SELECT count(*) FROM deliveries") == 2 * size


async def test_concurrent_requests_share_commits_and_each_gets_its_own_answer(db):
    committer = GroupCommitter(db)
    requests = [delivery(f"k{i % 50}") for i in range(200)]  # every id sent four times
    stored = await asyncio.gather(*(committer.store(r) for r in requests))
    assert sum(s.created for s in stored) == 50
    assert sum(s.duplicates for s in stored) == 150
    assert count(db, "SELECT count(*) FROM webhook_requests") == 200
    assert count(db, "SELECT count(*) FROM deliveries") == 50


def test_chunk_sizes_cover_every_group_size():
    assert CHUNK_SIZES[-1] == 1
    assert max(CHUNK_SIZES) * 7 <= 999  # the widest statement binds 7 values per row


async def test_a_held_write_lock_sends_the_group_to_the_writer_thread_which_waits(db, tmp_path):
    other = sqlite3.connect(tmp_path / "hub.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process, or a sync batch, is writing
    with pytest.raises(WriteBusy):
        db.write_now(insert_webhooks, [delivery("now")])
    committer = GroupCommitter(db)
    waiting = asyncio.create_task(committer.store(delivery("later")))
    await asyncio.sleep(0.3)
    assert not waiting.done()  # not answered before its commit
    other.execute("COMMIT")
    stored = await asyncio.wait_for(waiting, 10)
    assert (stored.created, stored.duplicates) == (1, 0)
    assert count(db, "SELECT count(*) FROM events") == 1  # "now" was never written
    calls = spy_write_now(db)
    assert (await committer.store(delivery("after"))).created == 1
    assert calls == [1]  # the lock is free again: the loop committed it itself
    other.close()


async def test_full_synchronous_commits_on_the_writer_thread(tmp_path, monkeypatch):
    database = Database(tmp_path / "hub.db", synchronous="full")
    try:
        monkeypatch.setattr(database, "write_now", None)  # would raise if the loop wrote
        stored = await GroupCommitter(database).store(delivery("x"))
        assert stored.created == 1
    finally:
        database.close()


async def test_a_failed_commit_fails_every_request_of_the_group_and_stores_none(db, monkeypatch):
    def broken(conn, requests):
        insert_webhooks(conn, requests)
        raise sqlite3.IntegrityError("boom")

    monkeypatch.setattr("hub.webhooks.ingest.insert_webhooks", broken)
    committer = GroupCommitter(db)
    results = await asyncio.gather(
        *(committer.store(delivery(f"f{i}")) for i in range(5)), return_exceptions=True
    )
    assert all(isinstance(r, sqlite3.IntegrityError) for r in results)
    assert count(db, "SELECT count(*) FROM events") == 0  # rolled back
    monkeypatch.undo()
    assert (await committer.store(delivery("ok"))).created == 1


async def test_webhooks_during_a_sync_are_all_stored_and_the_sync_completes(hub_client, ledger):
    """The sync's batches hold SQLite's write lock on the writer thread; webhook groups that
    meet the lock go to the writer thread too, and nothing is lost on either side."""
    secret = "during-sync"
    config = ledger_config(ledger, page_size=50) | {
        "webhooks": {"generic": {"tool": {"secret": secret}}}
    }
    client = await hub_client(config=config)
    started = await client.post("/api/sync/custom_accounting", json={"mode": "full"})
    assert started.status == 202, await started.text()

    async def post(i: int) -> int:
        body = f'{{"n": {i}}}'.encode()
        response = await client.post(
            "/webhooks/generic/tool",
            data=body,
            headers={"X-Signature": generic_signature(secret, body), "webhook-id": f"w{i}"},
        )
        return response.status

    statuses = await asyncio.gather(*(post(i) for i in range(300)))
    assert statuses == [200] * 300
    for run_id in (await started.json())["run_ids"]:
        assert (await wait_for_run(client, run_id))["state"] == "succeeded"
    db = client.app[HUB].store.db
    assert count(db, "SELECT count(*) FROM events WHERE source = 'generic'") == 300
    assert count(db, "SELECT count(*) FROM webhook_requests") == 300


async def test_a_group_of_large_bodies_is_written_off_the_event_loop(db):
    calls = spy_write_now(db)
    committer = GroupCommitter(db)
    big = [
        WebhookDelivery.build("src", {}, b"x" * (LOOP_WRITE_MAX_BYTES // 2 + 1), [])
        for _ in range(2)
    ]
    stored = await asyncio.gather(*(committer.store(d) for d in big))
    assert [s.created for s in stored] == [0, 0]  # no events, but the raw requests are kept
    assert count(db, "SELECT count(*) FROM webhook_requests") == 2
    assert calls == []  # the writer thread took the group
    await committer.store(delivery("small"))
    assert calls == [1]


async def test_the_handler_cache_stays_bounded(make_hub):
    hub = await make_hub()
    for number in range(HANDLER_CACHE_SIZE + 10):
        hub.dispatcher.handlers_for("generic", f"generic.t{number}")
    assert len(hub.dispatcher._handlers) <= HANDLER_CACHE_SIZE


async def test_due_deliveries_leave_out_the_running_ones_without_losing_others(db):
    from hub.store.inbox import Inbox

    await db.write(insert_webhooks, [delivery(*(f"d{i}" for i in range(10)))])
    inbox = Inbox(db)
    first = await inbox.due(limit=4)
    running = {(d.event, d.handler) for d in first}
    later = await inbox.due(limit=4, skip=running)
    assert len(later) == 4  # not crowded out by the four running ones
    assert not running & {(d.event, d.handler) for d in later}


async def test_another_processs_turn_is_waited_for_then_the_group_commits(db, tmp_path):
    """An ingest worker (another Database on the file) is writing: the loop does not wait for
    it; the group goes to the writer thread, which takes its turn as soon as it is given."""
    other = Database(tmp_path / "hub.db")
    turn = WriteTurn(tmp_path / "hub.db")
    try:
        turn.take()  # the other process's transaction is under way
        with pytest.raises(WriteBusy):
            db.write_now(insert_webhooks, [delivery("now")])
        with pytest.raises(WriteBusy):  # every holder waits for the turn, in any process
            other.write_now(insert_webhooks, [delivery("also-now")])
        waiting = asyncio.create_task(GroupCommitter(db).store(delivery("later")))
        await asyncio.sleep(0.3)
        assert not waiting.done()  # not answered before its commit
        turn.give()
        stored = await asyncio.wait_for(waiting, 10)
        assert (stored.created, stored.duplicates) == (1, 0)
        assert count(db, "SELECT count(*) FROM events") == 1  # "now" was never written
        calls = spy_write_now(db)
        assert (await GroupCommitter(db).store(delivery("after"))).created == 1
        assert calls == [1]  # nobody writing: the loop committed it itself
    finally:
        turn.close()
        other.close()


async def test_under_concurrency_a_group_lingers_to_gather_more_and_a_lone_request_does_not(db):
    committed = spy_write_now(db)
    committer = GroupCommitter(db)
    await asyncio.gather(committer.store(delivery("a")), committer.store(delivery("b")))
    first = asyncio.create_task(committer.store(delivery("c")))
    await asyncio.sleep(0)  # c is queued; without the linger it would commit next turn, alone
    second = asyncio.create_task(committer.store(delivery("d")))
    await asyncio.gather(first, second)
    assert committed == [2, 2]  # c waited for d: one commit instead of two
    await committer.store(delivery("e"))  # lingers once (the last group was concurrent)
    third = asyncio.create_task(committer.store(delivery("f")))
    await asyncio.sleep(0)
    fourth = asyncio.create_task(committer.store(delivery("g")))
    await asyncio.gather(third, fourth)
    assert committed == [2, 2, 1, 1, 1]  # after a lone request, f did not wait for g


async def test_a_turn_held_past_the_timeout_fails_that_write_and_the_writer_goes_on(
    db, tmp_path, monkeypatch
):
    """A hub process stopped mid-write (Ctrl-Z on a CLI sync) holds the turn: writes fail
    after the timeout, as they did after SQLite's busy timeout, instead of hanging for good."""
    from hub.store import database

    monkeypatch.setattr(database, "WRITE_TURN_TIMEOUT_S", 0.2)
    stuck = WriteTurn(tmp_path / "hub.db")
    stuck.take()
    try:
        with pytest.raises(StoreError, match="write turn"):
            await asyncio.wait_for(GroupCommitter(db).store(delivery("blocked")), 10)
    finally:
        stuck.give()
        stuck.close()
    stored = await asyncio.wait_for(GroupCommitter(db).store(delivery("after")), 10)
    assert stored.created == 1  # the writer thread survived
    assert count(db, "SELECT count(*) FROM events") == 1
