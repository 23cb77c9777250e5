"""Group commit and admission: many requests' rows in a few multi-row statements on the writer
thread, exact counts of what each request created and repeated, and bounds on what is held."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest

from hub.store.content import conflict_id, content_hash
from hub.store.database import URGENT_RUN, Database, WriteQueue
from hub.store.inbox import Inbox, NewEvent, WebhookDelivery, insert_webhooks
from hub.testing import generic_signature, wait_for_run
from hub.web.keys import HUB
from hub.webhooks.dispatcher import HANDLER_CACHE_SIZE
from hub.webhooks.ingest import Admission, GroupCommitter, Ticket
from tests.conftest import ledger_config


def delivery(*event_ids: str, body: bytes = b"{}") -> WebhookDelivery:
    events = [
        NewEvent("src", event_id, "src.thing", {"n": event_id}, None) for event_id in event_ids
    ]
    return WebhookDelivery.build("src", {"content-type": "application/json"}, body, events)


@pytest.fixture
def db(tmp_path: Path):
    database = Database(tmp_path / "hub.db")
    yield database
    database.close()


def unbounded() -> Admission:
    return Admission(10_000, 1 << 40)


def committer_of(db: Database) -> GroupCommitter:
    return GroupCommitter(db, unbounded())


def store(committer: GroupCommitter, item: WebhookDelivery):
    ticket = committer.admission.admit(len(item.request_row[4]))  # the body's length
    assert ticket is not None
    return committer.store(item, ticket)


def spy_groups(db: Database) -> list[int]:
    """Record the size of every group submitted to the writer, and check it runs there."""
    calls: list[int] = []
    original = db.submit

    def submit(fn, *args, urgent=False):
        if fn is insert_webhooks:
            calls.append(len(args[0]))
            assert urgent  # webhook groups go before sync batches
        return original(fn, *args, urgent=urgent)

    db.submit = submit  # type: ignore[method-assign]
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
    # events are stored unrouted: their deliveries are made when the dispatcher routes them
    assert count(db, "SELECT count(*) FROM events WHERE routed = 0") == 4
    assert count(db, "SELECT count(*) FROM deliveries") == 0
    first = group[0].request_row[0]
    assert count(db, f"SELECT count(*) FROM events WHERE request_id = {first}") == 1


def contents(*events: tuple[str, dict[str, object]]) -> WebhookDelivery:
    """A request of events given as (event id, data)."""
    made = [NewEvent("src", event_id, "src.thing", data, None) for event_id, data in events]
    return WebhookDelivery.build("src", {}, b"{}", made)


async def test_a_known_id_with_other_content_is_a_new_event_and_its_resend_a_duplicate(db):
    await db.write(insert_webhooks, [contents(("x", {"v": "replayed"}))])
    real = {"v": "real"}
    conflict = conflict_id("x", content_hash(real))
    group = [
        contents(("x", real), ("y", {})),  # x with other content: new; y: new
        contents(("x", real)),  # the same new content again, in the same group
        contents(("x", {"v": "replayed"}), ("x", {"v": "third"})),  # a repeat; one more content
    ]
    stored = await db.write(insert_webhooks, group)
    third = conflict_id("x", content_hash({"v": "third"}))
    assert [(s.created, s.duplicates, s.conflicts) for s in stored] == [
        (2, 0, (("x", conflict),)),
        (0, 1, ()),
        (1, 1, (("x", third),)),
    ]
    again = await db.write(insert_webhooks, [contents(("x", real)), contents(("x", {"v": "new"}))])
    assert [(s.created, s.duplicates) for s in again] == [(0, 1), (1, 0)]
    ids = db.read_sync(lambda conn: conn.execute("SELECT event_id FROM events ORDER BY id"))
    assert [r[0] for r in ids] == [
        "x",
        "y",
        conflict,
        third,
        conflict_id("x", content_hash({"v": "new"})),
    ]


@pytest.mark.parametrize("size", [1, 3, 127, 128, 129, 300])
async def test_groups_of_any_size_store_every_row_once(db, size):
    group = [delivery(f"e{i}") for i in range(size)]
    stored = await db.write(insert_webhooks, group)
    assert all((s.created, s.duplicates) == (1, 0) for s in stored)
    assert count(db, "SELECT count(*) FROM events") == size
    resent = [delivery(f"e{i}") for i in range(size // 2 + 1)]
    again = await db.write(insert_webhooks, resent)
    assert all((s.created, s.duplicates) == (0, 1) for s in again)
    assert count(db, "SELECT count(*) FROM events") == size


async def test_routing_gives_each_new_event_its_deliveries_once(db):
    await db.write(insert_webhooks, [delivery("r1", "r2")])
    inbox = Inbox(db)
    unrouted = await inbox.unrouted()
    assert [(e.source, e.type, e.webhook) for e in unrouted] == [("src", "src.thing", True)] * 2
    await inbox.route([(e.event, ["process", "event:log"]) for e in unrouted])
    assert await inbox.unrouted() == []
    assert count(db, "SELECT count(*) FROM deliveries WHERE state = 'pending'") == 4
    await inbox.route([(e.event, ["process"]) for e in unrouted])  # routed twice: no repeats
    assert count(db, "SELECT count(*) FROM deliveries") == 4


async def test_concurrent_requests_share_commits_and_each_gets_its_own_answer(db):
    groups = spy_groups(db)
    committer = committer_of(db)
    requests = [delivery(f"k{i % 50}") for i in range(200)]  # every id sent four times
    stored = await asyncio.gather(*(store(committer, r) for r in requests))
    assert sum(s.created for s in stored) == 50
    assert sum(s.duplicates for s in stored) == 150
    assert count(db, "SELECT count(*) FROM webhook_requests") == 200
    assert sum(groups) == 200 and len(groups) < 200
    assert committer.admission.requests == 0 and committer.admission.bytes == 0


async def test_webhook_groups_are_written_on_the_writer_thread_only(hub_client, monkeypatch):
    """The event loop never runs SQL that writes: every group commits on the writer thread."""
    threads: list[str] = []

    def recording(db, requests):
        threads.append(threading.current_thread().name)
        return insert_webhooks(db, requests)

    monkeypatch.setattr("hub.webhooks.ingest.insert_webhooks", recording)
    client = await hub_client(config={"webhooks": {"generic": {"tool": {"secret": "s"}}}})

    async def post(i: int) -> int:
        body = f'{{"n": {i}}}'.encode()
        headers = {"X-Signature": generic_signature("s", body), "webhook-id": f"t{i}"}
        return (await client.post("/webhooks/generic/tool", data=body, headers=headers)).status

    assert await asyncio.gather(*(post(i) for i in range(40))) == [200] * 40
    assert threads and set(threads) == {"hub-store-writer"}


async def test_a_write_lock_held_by_another_process_is_waited_for_on_the_writer_thread(
    db, tmp_path
):
    other = sqlite3.connect(tmp_path / "hub.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # a CLI sync beside the daemon is writing
    committer = committer_of(db)
    started = asyncio.get_running_loop().time()
    waiting = asyncio.create_task(store(committer, delivery("later")))
    await asyncio.sleep(0.3)
    assert not waiting.done()  # not answered before its commit
    assert asyncio.get_running_loop().time() - started < 1  # the loop kept running
    other.execute("COMMIT")
    stored = await asyncio.wait_for(waiting, 10)
    assert (stored.created, stored.duplicates) == (1, 0)
    other.close()


async def test_a_failed_commit_fails_every_request_of_the_group_and_stores_none(db, monkeypatch):
    def broken(conn, requests):
        insert_webhooks(conn, requests)
        raise sqlite3.IntegrityError("boom")

    monkeypatch.setattr("hub.webhooks.ingest.insert_webhooks", broken)
    committer = committer_of(db)
    results = await asyncio.gather(
        *(store(committer, delivery(f"f{i}")) for i in range(5)), return_exceptions=True
    )
    assert all(isinstance(r, sqlite3.IntegrityError) for r in results)
    assert count(db, "SELECT count(*) FROM events") == 0  # rolled back
    assert committer.admission.requests == 0  # the tickets came back
    monkeypatch.undo()
    assert (await store(committer, delivery("ok"))).created == 1


async def test_webhooks_during_a_sync_are_all_stored_and_the_sync_completes(hub_client, ledger):
    """The sync's batches and the webhook groups share the one writer; nothing is lost on
    either side, and the records are exact."""
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
    synced = count(db, "SELECT count(*) FROM records_custom_accounting_transactions")
    assert synced == ledger.config.transactions


async def test_the_handler_cache_stays_bounded(make_hub):
    hub = await make_hub()
    for number in range(HANDLER_CACHE_SIZE + 10):
        hub.dispatcher.handlers_for("generic", f"generic.t{number}", True)
    assert len(hub.dispatcher._handlers) <= HANDLER_CACHE_SIZE


async def test_due_deliveries_leave_out_the_running_ones_without_losing_others(db):
    await db.write(insert_webhooks, [delivery(*(f"d{i}" for i in range(10)))])
    inbox = Inbox(db)
    await inbox.route([(e.event, ["process"]) for e in await inbox.unrouted()])
    first = await inbox.due(limit=4)
    running = {(d.event, d.handler) for d in first}
    later = await inbox.due(limit=4, skip=running)
    assert len(later) == 4  # not crowded out by the four running ones
    assert not running & {(d.event, d.handler) for d in later}


async def test_under_concurrency_a_group_lingers_to_gather_more_and_a_lone_request_does_not(db):
    committed = spy_groups(db)
    committer = committer_of(db)
    await asyncio.gather(store(committer, delivery("a")), store(committer, delivery("b")))
    first = asyncio.create_task(store(committer, delivery("c")))
    await asyncio.sleep(0)  # c is queued; without the linger it would commit next turn, alone
    second = asyncio.create_task(store(committer, delivery("d")))
    await asyncio.gather(first, second)
    assert committed == [2, 2]  # c waited for d: one commit instead of two
    await store(committer, delivery("e"))  # lingers once (the last group was concurrent)
    third = asyncio.create_task(store(committer, delivery("f")))
    await asyncio.sleep(0)
    fourth = asyncio.create_task(store(committer, delivery("g")))
    await asyncio.gather(third, fourth)
    assert committed == [2, 2, 1, 1, 1]  # after a lone request, f did not wait for g


# --------------------------------------------------------------------------- admission


def test_admission_refuses_past_either_bound_and_tickets_give_back_once():
    admission = Admission(max_requests=3, max_bytes=100)
    first = admission.admit(60)
    assert first is not None
    assert admission.admit(50) is None  # 110 bytes would be held
    second = admission.admit(40)
    third = admission.admit(0)
    assert second is not None and third is not None
    assert admission.admit(0) is None  # three requests held
    first.release()
    first.release()  # twice: given back once
    assert (admission.requests, admission.bytes) == (2, 40)
    second.resize(10)  # the body was shorter than reserved
    assert admission.bytes == 10
    second.release()
    third.release()
    assert (admission.requests, admission.bytes) == (0, 0)


def test_a_body_larger_than_the_byte_bound_gets_in_when_nothing_else_is_held():
    admission = Admission(max_requests=10, max_bytes=100)
    alone = admission.admit(500)
    assert alone is not None
    assert admission.admit(1) is None
    alone.release()
    assert admission.admit(1) is not None


def busy_writer(db: Database) -> threading.Event:
    """Keep the writer thread busy (a long sync batch) until the returned event is set."""
    started, gate = threading.Event(), threading.Event()

    def batch(_db):
        started.set()
        gate.wait(10)

    db.submit(batch)
    assert started.wait(10)
    return gate


async def test_a_cancelled_request_keeps_its_reservation_until_its_group_commits(db):
    gate = busy_writer(db)
    committer = GroupCommitter(db, Admission(2, 1 << 20))
    ticket = committer.admission.admit(2)
    assert isinstance(ticket, Ticket)
    waiting = asyncio.create_task(committer.store(delivery("gone"), ticket))
    await asyncio.sleep(0.05)
    waiting.cancel()  # the client went away
    ticket.release()  # what the request handler does on its way out
    assert committer.admission.requests == 1  # its rows are still queued in memory
    gate.set()
    for _ in range(200):
        if committer.admission.requests == 0:
            break
        await asyncio.sleep(0.01)
    assert committer.admission.requests == 0
    assert count(db, "SELECT count(*) FROM events") == 1  # its rows still count


# --------------------------------------------------------------------------- the writer's lanes


def job(name: str, order: list[str]):
    from concurrent.futures import Future

    return ((lambda: order.append(name)), (), Future())


def test_urgent_work_goes_first_but_never_starves_regular_work():
    queue = WriteQueue()
    order: list[str] = []
    for i in range(3):
        queue.put(job(f"r{i}", order), urgent=False)
    for i in range(URGENT_RUN * 2 + 1):
        queue.put(job(f"u{i}", order), urgent=True)
    queue.stop()
    while (item := queue.get()) is not None:
        item[0]()
    run = [f"u{i}" for i in range(URGENT_RUN)]
    assert order[: URGENT_RUN + 1] == [*run, "r0"]
    assert order[URGENT_RUN + 1 : 2 * URGENT_RUN + 2] == [
        *(f"u{i}" for i in range(URGENT_RUN, 2 * URGENT_RUN)),
        "r1",
    ]
    assert order[-2:] == [f"u{2 * URGENT_RUN}", "r2"]
    assert queue.get() is None  # stopped and empty


async def test_a_webhook_group_waits_for_one_sync_batch_at_most(db):
    """Sync batches queued ahead of a webhook group: it runs after the batch under way, not
    after all of them."""
    order: list[str] = []
    gate = threading.Event()

    def batch(_db, name):
        gate.wait(10)
        order.append(name)

    running = threading.Event()
    batches = [db.submit(lambda _db: running.set())]  # the writer is taking regular work
    batches += [db.submit(batch, f"batch{i}") for i in range(5)]
    assert running.wait(10)
    await asyncio.sleep(0.05)  # batch0 is under way
    committer = committer_of(db)
    original = insert_webhooks

    def recording(conn, requests):
        order.append("webhooks")
        return original(conn, requests)

    import hub.webhooks.ingest as ingest

    ingest.insert_webhooks = recording  # type: ignore[assignment]
    try:
        waiting = asyncio.create_task(store(committer, delivery("w")))
        await asyncio.sleep(0.05)
        gate.set()
        await asyncio.wait_for(waiting, 10)
        await asyncio.wait_for(asyncio.gather(*map(asyncio.wrap_future, batches)), 10)
    finally:
        ingest.insert_webhooks = original  # type: ignore[assignment]
    assert order[:2] == ["batch0", "webhooks"]


def test_after_an_urgent_item_the_next_urgent_one_gets_a_moment_before_regular_work(monkeypatch):
    """The next webhook group is submitted just after the last one is answered: it goes
    before the sync batch already waiting, instead of after it."""
    monkeypatch.setattr("hub.store.database.URGENT_GRACE_S", 0.5)  # a slow CI machine too
    queue = WriteQueue()
    order: list[str] = []
    queue.put(job("u0", order), urgent=True)
    queue.put(job("r0", order), urgent=False)
    first = queue.get()
    assert first is not None
    first[0]()  # u0 ran; r0 waits
    late = threading.Timer(0.05, lambda: queue.put(job("u1", order), urgent=True))
    late.start()
    for _ in range(2):
        item = queue.get()
        assert item is not None
        item[0]()
    late.join()
    assert order == ["u0", "u1", "r0"]
