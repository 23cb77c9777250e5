"""Inbound webhooks through the generic source: answers, durability, dedup, dispatch."""

from __future__ import annotations

import asyncio
import sqlite3

import orjson
import pytest

from hub.hookspecs import hookimpl
from hub.model import HubEvent
from hub.testing import deliver_webhook, generic_signature
from hub.web.keys import HUB

SECRET = "generic-test-secret"
CONFIG = {
    "webhooks": {
        "max_attempts": 3,
        "max_body_bytes": 4096,
        "generic": {
            "zapier": {"secret": SECRET, "header": "X-Signature", "encoding": "hex"},
            "script": {"secret": SECRET, "header": "X-Hub-Sig", "encoding": "base64"},
        },
    }
}


def sign_hex(body: bytes) -> str:
    return generic_signature(SECRET, body)


def sign_b64(body: bytes) -> str:
    return generic_signature(SECRET, body, "base64")


class Recorder:
    """An ``event`` hook plugin that records what it receives and can be told to fail."""

    __name__ = "recorder"

    def __init__(self) -> None:
        self.seen: list[HubEvent] = []
        self.fail = False

    @hookimpl
    def event(self, event: HubEvent) -> None:
        if event.source == "hub":
            return
        self.seen.append(event)
        if self.fail:
            raise RuntimeError("handler is broken")


def rows(client, sql: str) -> list[tuple]:
    conn = sqlite3.connect(client.app[HUB].settings.store.path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


async def test_signed_delivery_is_stored_before_the_answer_and_dispatched(hub_client):
    recorder = Recorder()
    client = await hub_client(plugins=[recorder], config=CONFIG, authorized=False)
    body = orjson.dumps({"client": "Acme", "amount": "12.50"})
    response = await client.post(
        "/webhooks/generic/zapier", data=body, headers={"X-Signature": sign_hex(body)}
    )
    assert response.status == 200, await response.text()
    assert await response.json() == {"received": 1, "duplicates": 0}
    # durable at answer time: the raw body and the event are already committed
    assert rows(client, "SELECT body FROM webhook_requests") == [(body,)]
    assert rows(client, "SELECT type FROM events WHERE source = 'generic'") == [
        ("generic.zapier.received",)
    ]
    await client.app[HUB].dispatcher.drain()
    assert [e.type for e in recorder.seen] == ["generic.zapier.received"]
    assert recorder.seen[0].data == {"client": "Acme", "amount": "12.50"}


async def test_base64_sender_and_sha256_prefix(hub_client):
    client = await hub_client(config=CONFIG, authorized=False)
    body = b'{"x": 1}'
    ok = await client.post(
        "/webhooks/generic/script", data=body, headers={"X-Hub-Sig": sign_b64(body)}
    )
    assert ok.status == 200
    body2 = b'{"x": 2}'
    prefixed = await client.post(
        "/webhooks/generic/zapier", data=body2, headers={"X-Signature": "sha256=" + sign_hex(body2)}
    )
    assert prefixed.status == 200


@pytest.mark.parametrize(
    "path, headers, body, status",
    [
        ("/webhooks/generic/zapier", {}, b"{}", 401),
        ("/webhooks/generic/zapier", {"X-Signature": "00"}, b"{}", 401),
        ("/webhooks/generic/zapier", {"X-Signature": "é" * 64}, b"{}", 401),
        ("/webhooks/generic/nobody", {"X-Signature": "00"}, b"{}", 404),
        ("/webhooks/nosuchsource", {}, b"{}", 404),
    ],
)
async def test_rejections_store_nothing(hub_client, path, headers, body, status):
    client = await hub_client(config=CONFIG, authorized=False)
    response = await client.post(path, data=body, headers=headers)
    assert response.status == status
    assert "error" in await response.json()
    assert rows(client, "SELECT count(*) FROM webhook_requests") == [(0,)]


async def test_malformed_body_with_a_good_signature_is_400(hub_client):
    client = await hub_client(config=CONFIG, authorized=False)
    body = b"not json at all"
    response = await client.post(
        "/webhooks/generic/zapier", data=body, headers={"X-Signature": sign_hex(body)}
    )
    assert response.status == 400
    assert rows(client, "SELECT count(*) FROM events WHERE source = 'generic'") == [(0,)]


async def test_body_over_the_limit_is_413_and_wrong_method_405(hub_client):
    client = await hub_client(config=CONFIG, authorized=False)
    body = b"{" + b" " * 5000 + b"}"
    response = await client.post(
        "/webhooks/generic/zapier", data=body, headers={"X-Signature": sign_hex(body)}
    )
    assert response.status == 413
    assert (await client.get("/webhooks/generic/zapier")).status == 405


async def test_duplicate_event_id_is_acknowledged_and_not_processed_twice(hub_client):
    recorder = Recorder()
    client = await hub_client(plugins=[recorder], config=CONFIG, authorized=False)
    body = b'{"n": 1}'
    headers = {"X-Signature": sign_hex(body), "webhook-id": "evt-42"}
    path = "/webhooks/generic/zapier"
    assert await deliver_webhook(client, path, body, headers) == (
        200,
        {"received": 1, "duplicates": 0},
    )
    assert await deliver_webhook(client, path, body, headers) == (
        200,
        {"received": 0, "duplicates": 1},
    )
    assert len(recorder.seen) == 1


async def test_failing_handler_is_dead_lettered_then_replayed(hub_client, monkeypatch):
    monkeypatch.setattr("hub.webhooks.dispatcher.handler_delay", lambda attempts: 0.01)
    recorder = Recorder()
    recorder.fail = True
    client = await hub_client(plugins=[recorder], config=CONFIG)
    body = b'{"n": 2}'
    await client.post(
        "/webhooks/generic/zapier", data=body, headers={"X-Signature": sign_hex(body)}
    )
    hub = client.app[HUB]
    for _ in range(200):
        dead = (await (await client.get("/api/inbox?state=dead")).json())["events"]
        if dead:
            break
        await asyncio.sleep(0.02)
    assert len(dead) == 1
    (delivery,) = [d for d in dead[0]["deliveries"] if d["handler"] == "event:recorder"]
    assert delivery["state"] == "dead" and delivery["attempts"] == 3
    assert len(recorder.seen) == 3

    recorder.fail = False
    response = await client.post(f"/api/inbox/{dead[0]['id']}/replay")
    assert response.status == 202 and (await response.json())["replayed"] == 1
    await hub.dispatcher.drain()
    assert len(recorder.seen) == 4
    assert (await (await client.get("/api/inbox?state=dead")).json())["events"] == []
    assert (await client.post("/api/inbox/99999/replay")).status == 404
    assert (await client.get("/api/inbox?state=weird")).status == 400


async def test_hub_events_go_through_the_same_durable_bus(make_hub):
    seen: list[str] = []

    class Listener:
        __name__ = "listener"

        @hookimpl
        def event(self, event: HubEvent) -> None:
            seen.append(event.type)

    hub = await make_hub(plugins=[Listener()])
    await hub.emit("custom.thing.happened", {"a": 1})
    await hub.dispatcher.drain()
    assert seen == ["custom.thing.happened"]
    events = await hub.store.inbox.events("done")
    assert events[0]["type"] == "custom.thing.happened"


async def test_the_dispatcher_does_not_spin_while_a_slow_handler_runs(make_hub):
    started, reads = asyncio.Event(), 0

    class Slow:
        __name__ = "slow"

        @hookimpl
        async def event(self, event: HubEvent) -> None:
            started.set()
            await asyncio.sleep(0.5)

    hub = await make_hub(plugins=[Slow()])
    due = hub.store.inbox.due

    async def counting_due(*args, **kwargs):
        nonlocal reads
        reads += 1
        return await due(*args, **kwargs)

    hub.store.inbox.due = counting_due
    await hub.emit("custom.slow", {})
    await asyncio.wait_for(started.wait(), 5)
    reads = 0
    await asyncio.sleep(0.45)
    assert reads <= 3  # it waits for the running delivery to end, not polling every 10 ms
    await hub.dispatcher.drain()


async def test_a_burst_over_the_queue_bound_gets_503_and_stores_nothing_for_it(hub_client):
    """While the writer is busy (a long sync batch), four requests fill the queue; the rest of
    the burst is refused with 503 + Retry-After before its body is read, and nothing of it is
    stored. The four are answered 200 once their commit ends."""
    import threading

    config = {"webhooks": {**CONFIG["webhooks"], "queue_max_requests": 4}}
    client = await hub_client(config=config)
    hub = client.app[HUB]
    started, gate = threading.Event(), threading.Event()

    def long_batch(_db):
        started.set()
        gate.wait(10)

    hub.store.db.submit(long_batch)
    assert started.wait(10)

    async def post(i: int):
        body = orjson.dumps({"n": i})
        response = await client.post(
            "/webhooks/generic/zapier",
            data=body,
            headers={"X-Signature": sign_hex(body), "webhook-id": f"burst-{i}"},
        )
        return response.status, response.headers.get("Retry-After"), await response.json()

    posts = [asyncio.create_task(post(i)) for i in range(12)]
    done, _ = await asyncio.wait(posts, timeout=5, return_when=asyncio.FIRST_COMPLETED)
    await asyncio.sleep(0.2)
    refused = [task.result() for task in posts if task.done()]
    assert len(refused) == 8 and done  # answered at once, while four wait for their commit
    for status, retry_after, answer in refused:
        assert status == 503 and retry_after == "5"
        assert "queue_max_requests = 4" in answer["error"]
    assert rows(client, "SELECT count(*) FROM events WHERE source = 'generic'") == [(0,)]
    gate.set()
    answers = await asyncio.gather(*posts)
    assert sorted(status for status, _, _ in answers) == [200] * 4 + [503] * 8
    stored = rows(client, "SELECT count(*) FROM events WHERE source = 'generic'")
    assert stored == [(4,)]
    assert rows(client, "SELECT count(*) FROM webhook_requests") == [(4,)]
    metrics = await (await client.get("/metrics")).text()
    assert 'hub_webhooks_rejected_total{reason="overloaded"} 8.0' in metrics
    admission = hub.ingest.admission
    assert (admission.requests, admission.bytes) == (0, 0)


async def test_bodies_in_flight_count_against_the_byte_bound(hub_client):
    """A request reserves its declared length before its body is read: a second large body
    is refused while the first is still arriving."""
    config = {"webhooks": {**CONFIG["webhooks"], "queue_max_bytes": 3000}}
    client = await hub_client(config=config)
    body = orjson.dumps({"pad": "x" * 2000})
    arriving = asyncio.Event()

    async def slow_body():
        yield body[:10]
        await arriving.wait()
        yield body[10:]

    first = asyncio.create_task(
        client.post(
            "/webhooks/generic/zapier",
            data=slow_body(),
            headers={
                "X-Signature": sign_hex(body),
                "webhook-id": "slow",
                "Content-Length": str(len(body)),
            },
        )
    )
    await asyncio.sleep(0.2)
    second = await client.post(
        "/webhooks/generic/zapier",
        data=body,
        headers={"X-Signature": sign_hex(body), "webhook-id": "fast"},
    )
    assert second.status == 503
    arriving.set()
    assert (await first).status == 200
    again = await client.post(
        "/webhooks/generic/zapier",
        data=body,
        headers={"X-Signature": sign_hex(body), "webhook-id": "fast"},
    )
    assert again.status == 200
