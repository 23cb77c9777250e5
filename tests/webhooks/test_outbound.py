"""Outbound subscriptions: the signed test ping, SSRF refusals, retries, dead letters, disabling.

The receiving side is a real aiohttp server on 127.0.0.1 (allowed with
``webhooks.outbound.allow_private``) and checks every delivery with the independent Standard
Webhooks verifier in ``standard_webhooks_ref``, never with ``hub.webhooks.signing``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
import structlog
from aiohttp import web
from structlog.testing import capture_logs

from hub.hookspecs import hookimpl
from hub.model import Alert
from hub.plugins import await_maybe
from hub.web.keys import HUB
from hub.webhooks import dispatcher, signing, urlguard
from hub.webhooks.outbound import DeliveryError
from tests.webhooks.standard_webhooks_ref import ReferenceVerificationError, reference_verify

PRIVATE = {"webhooks": {"outbound": {"allow_private": True, "timeout": 0.5}}}
HANG_S = 1.0
"""How long a "timeout" answer takes: twice the hub's outbound timeout."""


@dataclass
class Call:
    """One request the receiver got."""

    headers: dict[str, str]
    body: bytes
    behaviour: str

    @property
    def payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = orjson.loads(self.body)
        return payload

    @property
    def id(self) -> str:
        return self.headers["webhook-id"]


@dataclass
class Receiver:
    """A subscriber endpoint that answers from a script: ``ok``, ``fail`` (500) or ``hang``.

    The test ping and event deliveries have separate scripts; once a script runs out, the
    last behaviour repeats (``ok`` when it is empty).
    """

    ping_script: list[str] = field(default_factory=list)
    script: list[str] = field(default_factory=list)
    pings: list[Call] = field(default_factory=list)
    events: list[Call] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        is_ping = orjson.loads(body).get("type") == "webhook.ping"
        calls, script = (self.pings, self.ping_script) if is_ping else (self.events, self.script)
        index = len(calls)
        behaviour = script[min(index, len(script) - 1)] if script else "ok"
        calls.append(Call(headers, body, behaviour))
        if behaviour == "hang":
            await asyncio.sleep(HANG_S)
        if behaviour == "fail":
            return web.Response(status=500, text="receiver is on fire")
        return web.json_response({"ok": True})

    def delivered(self) -> list[Call]:
        """Event deliveries answered 2xx in time."""
        return [call for call in self.events if call.behaviour == "ok"]


@pytest.fixture
async def receiver(aiohttp_server: Any) -> Receiver:
    recv = Receiver()
    app = web.Application()
    app.router.add_post("/hook", recv.handle)
    server = await aiohttp_server(app, host="127.0.0.1")
    recv.url = f"http://127.0.0.1:{server.port}/hook"
    return recv


class AlertRecorder:
    """An ``alert`` hook plugin that keeps what it receives."""

    __name__ = "alert_recorder"

    def __init__(self) -> None:
        self.alerts: list[Alert] = []

    @hookimpl
    def alert(self, alert: Alert) -> None:
        self.alerts.append(alert)


async def subscribe(client: Any, url: str, events: list[str]) -> dict[str, Any]:
    response = await client.post(
        "/api/subscriptions", json={"url": url, "events": events, "description": "test"}
    )
    assert response.status == 201, await response.text()
    created: dict[str, Any] = await response.json()
    return created


async def wait_until(check: Callable[[], Any], timeout: float = 8.0, interval: float = 0.02) -> Any:
    """Poll ``check`` (plain or async) until it returns something truthy; fail after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = await await_maybe(check())
        if result:
            return result
        await asyncio.sleep(interval)
    pytest.fail(f"condition not met within {timeout} s")


def delivery_of(client: Any, event_type: str, handler: str) -> Callable[[], Awaitable[Any]]:
    """A check returning the (event, delivery) of ``handler`` once it left ``pending``."""

    async def check() -> Any:
        for event in await client.app[HUB].store.inbox.events(None, 1000):
            if event["type"] != event_type:
                continue
            for delivery in event["deliveries"]:
                if delivery["handler"] == handler and delivery["state"] != "pending":
                    return event, delivery
        return None

    return check


def fast_retries(monkeypatch: pytest.MonkeyPatch, steps: int = 7) -> None:
    monkeypatch.setattr(dispatcher, "OUTBOUND_SCHEDULE_S", (0.05,) * steps)


# ---------------------------------------------------------------- creating and deleting


async def test_create_pings_signed_then_lists_without_secret_and_deletes(hub_client, receiver):
    client = await hub_client(config=PRIVATE)
    created = await subscribe(client, receiver.url, ["stripe.invoice.*"])
    assert created["id"].startswith("sub_")
    assert created["secret"].startswith("whsec_")
    assert created["url"] == receiver.url and created["events"] == ["stripe.invoice.*"]
    assert created["state"] == "active"

    (ping,) = receiver.pings
    assert reference_verify(created["secret"], ping.headers, ping.body) == ping.id
    assert ping.headers["content-type"] == "application/json"
    assert ping.payload["type"] == "webhook.ping"
    with pytest.raises(ReferenceVerificationError):  # a different secret does not verify
        reference_verify(signing.new_secret(), ping.headers, ping.body)

    listed = (await (await client.get("/api/subscriptions")).json())["subscriptions"]
    assert [s["id"] for s in listed] == [created["id"]]
    assert "secret" not in listed[0]
    assert created["secret"] not in orjson.dumps(listed).decode()

    deleted = await client.delete(f"/api/subscriptions/{created['id']}")
    assert deleted.status == 200
    assert (await (await client.get("/api/subscriptions")).json())["subscriptions"] == []
    again = await client.delete(f"/api/subscriptions/{created['id']}")
    assert again.status == 404
    assert "error" in await again.json()


@pytest.mark.parametrize(
    "behaviour, reason",
    [("fail", "endpoint answered 500: receiver is on fire"), ("hang", "TimeoutError")],
)
async def test_failed_ping_refuses_the_subscription(hub_client, receiver, behaviour, reason):
    receiver.ping_script = [behaviour]
    client = await hub_client(config=PRIVATE)
    response = await client.post("/api/subscriptions", json={"url": receiver.url})
    assert response.status == 400
    error = (await response.json())["error"]
    assert "the test ping failed" in error and reason in error
    assert len(receiver.pings) == 1
    assert (await (await client.get("/api/subscriptions")).json())["subscriptions"] == []
    assert await client.app[HUB].store.subscriptions.list() == []


@pytest.mark.parametrize(
    "url, reason",
    [
        ("http://127.0.0.1:{port}/hook", "loopback address"),
        ("http://localhost/", "loopback address"),
        ("http://169.254.169.254/latest/meta-data", "cloud metadata"),
        ("http://10.1.2.3/hook", "private address"),
        ("http://[::1]/", "loopback address"),
        ("ftp://x", "only http and https"),
        ("http://user:pw@example.com/", "credentials"),
        ("http://" + "a" * 64 + ".example/", "not a valid name"),
        ("http://a..b/", "not a valid name"),
    ],
)
async def test_unsafe_urls_are_refused_by_default(hub_client, receiver, url, reason):
    client = await hub_client()  # allow_private is false by default
    port = receiver.url.rsplit(":", 1)[1].split("/")[0]
    response = await client.post(
        "/api/subscriptions", json={"url": url.format(port=port), "events": ["*"]}
    )
    assert response.status == 400
    error = (await response.json())["error"]
    assert error.startswith("url refused") and reason in error
    assert receiver.pings == []
    assert (await (await client.get("/api/subscriptions")).json())["subscriptions"] == []


@pytest.mark.parametrize(
    "body, reason",
    [
        (b"not json", "body must be JSON"),
        (b"[1, 2]", "body must be a JSON object"),
        (b'{"events": ["*"]}', "url is required"),
        (b'{"url": "", "events": ["*"]}', "url is required"),
        (b'{"url": 42}', "url is required"),
        (b'{"url": "https://example.com/", "events": []}', "non-empty list"),
        (b'{"url": "https://example.com/", "events": [""]}', "non-empty list"),
        (b'{"url": "https://example.com/", "events": "x.*"}', "non-empty list"),
        (b'{"url": "https://example.com/", "description": 5}', "description"),
    ],
)
async def test_malformed_subscription_requests_are_400(hub_client, body, reason):
    client = await hub_client()
    response = await client.post(
        "/api/subscriptions", data=body, headers={"Content-Type": "application/json"}
    )
    assert response.status == 400
    assert reason in (await response.json())["error"]
    assert (await (await client.get("/api/subscriptions")).json())["subscriptions"] == []


# ---------------------------------------------------------------- deliveries


async def test_timeout_then_500_then_200_is_delivered_once_and_logged(
    hub_client, receiver, monkeypatch
):
    """The issue's fault test: retried with the same webhook-id, verified independently."""
    fast_retries(monkeypatch)
    receiver.script = ["hang", "fail", "ok"]
    client = await hub_client(config=PRIVATE)
    created = await subscribe(client, receiver.url, ["custom.*"])
    handler = f"sub:{created['id']}"
    hub = client.app[HUB]

    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        await hub.emit("custom.thing", {"invoice": "INV-1", "amount": "12.50"})
        event, delivery = await wait_until(delivery_of(client, "custom.thing", handler))
        await hub.dispatcher.drain()

    assert delivery["state"] == "done" and delivery["attempts"] == 3
    assert delivery["last_error"] is None
    assert event["state"] == "done"
    assert len(receiver.events) == 3
    assert len({call.id for call in receiver.events}) == 1  # one message id on every retry
    (ok,) = receiver.delivered()
    assert ok is receiver.events[-1]
    assert reference_verify(created["secret"], ok.headers, ok.body) == ok.id
    for call in receiver.events:  # each attempt is signed afresh (its own timestamp)
        reference_verify(created["secret"], call.headers, call.body)
    assert ok.payload["type"] == "custom.thing"
    assert ok.payload["data"] == {"invoice": "INV-1", "amount": "12.50"}
    assert ok.payload["timestamp"] == event["created_at"]

    retries = [e for e in logs if e["event"] == "delivery failed; will retry"]
    assert [(e["handler"], e["attempt"], e["log_level"]) for e in retries] == [
        (handler, 1, "warning"),
        (handler, 2, "warning"),
    ]
    assert "Timeout" in retries[0]["error"]
    assert "endpoint answered 500" in retries[1]["error"]
    (timed_out,) = [e for e in logs if e["event"] == "outbound delivery failed"]
    assert timed_out["error"] == "TimeoutError" and timed_out["latency_ms"] >= 400
    sent = [e for e in logs if e["event"] == "outbound delivery" and e.get("id") == ok.id]
    assert [e["status"] for e in sent] == [500, 200]
    assert all(isinstance(e["latency_ms"], float) for e in sent)
    assert not [e for e in logs if e["event"] == "delivery dead-lettered"]


async def test_wildcard_subscription_gets_only_matching_events(hub_client, receiver, monkeypatch):
    fast_retries(monkeypatch)
    client = await hub_client(config=PRIVATE)
    created = await subscribe(client, receiver.url, ["stripe.invoice.*"])
    hub = client.app[HUB]
    await hub.emit("stripe.customer.created", {"id": "cus_1"})
    await hub.emit("stripe.invoice.paid", {"id": "in_1"})
    await hub.emit("stripe.invoicex.paid", {"id": "in_2"})
    await wait_until(delivery_of(client, "stripe.invoice.paid", f"sub:{created['id']}"))
    await hub.dispatcher.drain()

    assert [call.payload["type"] for call in receiver.events] == ["stripe.invoice.paid"]
    assert receiver.events[0].payload["data"] == {"id": "in_1"}
    reference_verify(created["secret"], receiver.events[0].headers, receiver.events[0].body)
    events = {e["type"]: e for e in await hub.store.inbox.events(None)}
    for other in ("stripe.customer.created", "stripe.invoicex.paid"):
        assert not [d for d in events[other]["deliveries"] if d["handler"].startswith("sub:")]


async def test_failing_endpoint_dead_letters_then_disables_and_alerts(
    hub_client, receiver, monkeypatch
):
    monkeypatch.setattr(dispatcher, "OUTBOUND_SCHEDULE_S", (0.02, 0.02))
    attempts = len(dispatcher.OUTBOUND_SCHEDULE_S) + 1
    receiver.script = ["fail"]
    alerts = AlertRecorder()
    client = await hub_client(plugins=[alerts], config=PRIVATE)
    created = await subscribe(client, receiver.url, ["*"])
    sub_id, handler = created["id"], f"sub:{created['id']}"
    hub = client.app[HUB]

    async def subscription() -> dict[str, Any]:
        listed = (await (await client.get("/api/subscriptions")).json())["subscriptions"]
        (found,) = [s for s in listed if s["id"] == sub_id]
        return dict(found)

    async def failures(count: int) -> bool:
        found = await subscription()
        return bool(found["failures"] == count and found["state"] == "active")

    for n in range(dispatcher.SUBSCRIPTION_DISABLE_AFTER - 1):
        await hub.emit(f"thing.failed{n}", {"n": n})
        await wait_until(delivery_of(client, f"thing.failed{n}", handler))
        await wait_until(lambda n=n: failures(n + 1))  # counted just after the dead letter

    await hub.emit("thing.last", {"n": "last"})
    await wait_until(delivery_of(client, "thing.last", handler))
    state = await wait_until(lambda: _disabled(subscription))
    assert state["disabled_reason"]
    await wait_until(lambda: _alerted(alerts, sub_id))

    dead = (await (await client.get("/api/inbox?state=dead")).json())["events"]
    assert len(dead) == dispatcher.SUBSCRIPTION_DISABLE_AFTER
    for event in dead:
        (delivery,) = [d for d in event["deliveries"] if d["handler"] == handler]
        assert delivery["state"] == "dead" and delivery["attempts"] == attempts
        assert "endpoint answered 500" in delivery["last_error"]
    assert len(receiver.events) == attempts * dispatcher.SUBSCRIPTION_DISABLE_AFTER

    disabled = [a for a in alerts.alerts if a.connection_id == sub_id]
    assert len(disabled) == 1 and "disabled" in disabled[0].message
    dead_letters = [a for a in alerts.alerts if a.connection_id.startswith("inbox:")]
    assert len(dead_letters) == 1  # one alert for the failing handler, not one per event

    # a disabled subscription gets nothing more
    before = len(receiver.events)
    await hub.emit("thing.after", {})
    await hub.dispatcher.drain()
    after = [e for e in await hub.store.inbox.events(None) if e["type"] == "thing.after"]
    assert not [d for d in after[0]["deliveries"] if d["handler"] == handler]
    assert len(receiver.events) == before


async def _disabled(subscription: Callable[[], Awaitable[dict[str, Any]]]) -> Any:
    found = await subscription()
    return found if found["state"] == "disabled" else None


async def _alerted(alerts: AlertRecorder, connection_id: str) -> bool:
    return any(a.connection_id == connection_id for a in alerts.alerts)


async def test_a_success_resets_the_run_of_dead_letters(hub_client, receiver, monkeypatch):
    monkeypatch.setattr(dispatcher, "OUTBOUND_SCHEDULE_S", (0.02,))
    receiver.script = ["fail"]
    client = await hub_client(config=PRIVATE)
    created = await subscribe(client, receiver.url, ["*"])
    handler = f"sub:{created['id']}"
    hub = client.app[HUB]

    def failures(count: int) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            (found,) = await hub.store.subscriptions.list()
            return (found.state, found.failures) == ("active", count)

        return check

    for n in range(dispatcher.SUBSCRIPTION_DISABLE_AFTER - 1):
        await hub.emit(f"a.fail{n}", {})
        await wait_until(delivery_of(client, f"a.fail{n}", handler))
        await wait_until(failures(n + 1))
    receiver.script = ["ok"]  # the endpoint recovers
    await hub.emit("a.ok", {})
    _, ok = await wait_until(delivery_of(client, "a.ok", handler))
    assert ok["state"] == "done"
    await wait_until(failures(0))


# ---------------------------------------------------------------- every delivery is checked


async def test_outbound_post_refuses_a_private_address_without_sending(make_hub, receiver):
    """Every delivery re-checks the destination, not only the subscription's creation."""
    hub = await make_hub()  # allow_private is false
    body = orjson.dumps({"type": "x", "timestamp": "t", "data": {}})
    with pytest.raises(urlguard.UnsafeURLError, match="loopback"):
        await hub.outbound.post(receiver.url, signing.new_secret(), "msg_1", body)
    assert receiver.pings == [] and receiver.events == []


async def test_guarded_session_refuses_at_connect_time(make_hub, receiver, monkeypatch):
    """DNS rebinding: even when the pre-check passed, the connection itself is refused."""
    hub = await make_hub()

    async def passed(url: str, allow_private: bool, resolver: Any = None) -> None:
        return None  # as if the name had resolved to a public address a moment ago

    monkeypatch.setattr(urlguard, "check_destination", passed)
    body = orjson.dumps({"type": "x", "timestamp": "t", "data": {}})
    port = receiver.url.rsplit(":", 1)[1].split("/")[0]
    for url in (receiver.url, f"http://localhost:{port}/hook"):
        with pytest.raises(DeliveryError):
            await hub.outbound.post(url, signing.new_secret(), "msg_2", body)
    assert receiver.pings == [] and receiver.events == []


async def test_deliveries_to_a_now_unsafe_url_fail_and_retry(hub_client, receiver, monkeypatch):
    """A subscription created while allowed is refused on delivery once the hub is strict."""
    fast_retries(monkeypatch, steps=1)
    client = await hub_client(config=PRIVATE)
    created = await subscribe(client, receiver.url, ["*"])
    hub = client.app[HUB]
    strict = hub.settings.webhooks.outbound.model_copy(update={"allow_private": False})
    monkeypatch.setattr(type(hub.outbound), "_settings", property(lambda self: strict))
    await hub.outbound.close()  # the next session is built strict as well
    await hub.emit("late.event", {})
    _, delivery = await wait_until(delivery_of(client, "late.event", f"sub:{created['id']}"))
    assert delivery["state"] == "dead" and delivery["attempts"] == 2
    assert "loopback" in delivery["last_error"]
    assert receiver.events == []


async def test_webhook_ids_stay_unique_after_pruning_reuses_row_ids(hub_client, receiver):
    client = await hub_client(config=PRIVATE)
    await subscribe(client, receiver.url, ["*"])
    hub = client.app[HUB]
    await hub.emit("a.first", {"n": 1})
    await hub.dispatcher.drain()
    await hub.store.inbox.prune(0)  # the newest rows go: SQLite hands their ids out again
    await hub.emit("b.second", {"n": 2})
    await hub.dispatcher.drain()
    ids = {c.payload["type"]: c.id for c in receiver.events if c.payload["type"] != "webhook.ping"}
    assert ids["a.first"] != ids["b.second"]


@pytest.fixture
async def redirector(aiohttp_server: Any) -> tuple[str, list[str]]:
    """An endpoint answering 302 to a page that accepts GET and POST."""
    got: list[str] = []

    async def hook(request: web.Request) -> web.Response:
        await request.read()
        raise web.HTTPFound("/moved")

    async def moved(request: web.Request) -> web.Response:
        got.append(request.method)
        return web.Response(text="<html>a login page</html>")

    app = web.Application()
    app.router.add_post("/hook", hook)
    app.router.add_route("*", "/moved", moved)
    server = await aiohttp_server(app, host="127.0.0.1")
    return f"http://127.0.0.1:{server.port}/hook", got


async def test_a_redirect_is_a_failed_delivery_and_is_not_followed(hub_client, redirector):
    url, got = redirector
    client = await hub_client(config=PRIVATE)
    created = await client.post("/api/subscriptions", json={"url": url})
    assert created.status == 400  # the test ping got a 302
    assert "302" in (await created.json())["error"]
    assert got == []  # nothing was sent to where Location pointed


async def test_a_subscription_whose_secret_cannot_be_read_is_listed_and_not_delivered_to(
    hub_client, receiver
):
    client = await hub_client(config=PRIVATE)
    created = await subscribe(client, receiver.url, ["*"])
    hub = client.app[HUB]
    await hub.store.db.write(  # as after a change of the secret key
        lambda db: db.execute("UPDATE subscriptions SET secret = ?", [b"gAAAA-not-a-token"])
    )
    await hub.dispatcher.reload_subscriptions()  # would raise before: the hub could not start
    listed = await (await client.get("/api/subscriptions")).json()
    (only,) = listed["subscriptions"]
    assert only["id"] == created["id"] and only["state"] == "unreadable"
    assert "secret key changed" in only["disabled_reason"]
    before = len(receiver.events)
    await hub.emit("x.y", {})
    await hub.dispatcher.drain()
    assert len(receiver.events) == before


def test_outbound_retries_are_jittered_around_the_schedule():
    delays = {dispatcher.outbound_delay(2) for _ in range(50)}
    base = dispatcher.OUTBOUND_SCHEDULE_S[1]
    assert all(base * 0.9 <= d <= base * 1.1 for d in delays)
    assert len(delays) > 1


@pytest.mark.parametrize(
    ("url", "logged"),
    [
        ("https://hooks.slack.test/services/T000/B000/XXXXSECRET", "https://hooks.slack.test"),
        ("http://[::1]:8080/p?token=abc", "http://[::1]:8080"),
        ("http://example.test:99999/x", "http://example.test"),
    ],
)
def test_logged_destinations_are_origins_only(url, logged):
    from hub.webhooks.outbound import _origin

    assert _origin(url) == logged


async def test_a_disabled_subscription_is_enabled_again_after_a_good_ping(hub_client, receiver):
    client = await hub_client(config=PRIVATE)
    created = await subscribe(client, receiver.url, ["*"])
    hub = client.app[HUB]
    for _ in range(dispatcher.SUBSCRIPTION_DISABLE_AFTER):  # as after an outage
        await hub.store.subscriptions.delivered(created["id"], False, 3)
    await hub.dispatcher.reload_subscriptions()
    assert (await hub.store.subscriptions.get(created["id"])).state == "disabled"

    receiver.ping_script = ["ok", "fail"]  # the endpoint is still down
    refused = await client.post(f"/api/subscriptions/{created['id']}/enable")
    assert refused.status == 400 and "ping failed" in (await refused.json())["error"]
    assert (await hub.store.subscriptions.get(created["id"])).state == "disabled"

    receiver.ping_script = []  # back up
    enabled = await client.post(f"/api/subscriptions/{created['id']}/enable")
    assert enabled.status == 200
    body = await enabled.json()
    assert body["state"] == "active" and body["failures"] == 0 and "secret" not in body
    await hub.emit("after.outage", {})
    await hub.dispatcher.drain()
    (call,) = [c for c in receiver.events if c.payload["type"] == "after.outage"]
    assert reference_verify(created["secret"], call.headers, call.body) == call.id  # same secret
    missing = await client.post("/api/subscriptions/sub_nope/enable")
    assert missing.status == 404


async def test_deleting_a_subscription_clears_its_dead_letters(hub_client, receiver):
    client = await hub_client(config=PRIVATE)
    created = await subscribe(client, receiver.url, ["*"])
    hub = client.app[HUB]
    await hub.emit("x.y", {})
    await hub.dispatcher.drain()
    await hub.store.db.write(  # as if its deliveries had failed for good
        lambda db: db.execute("UPDATE deliveries SET state = 'dead' WHERE handler LIKE 'sub:%'")
    )
    assert await hub.store.inbox.events("dead")
    assert (await client.delete(f"/api/subscriptions/{created['id']}")).status == 200
    assert await hub.store.inbox.events("dead") == []


async def test_handlers_are_resolved_at_delivery_time_not_when_stored(hub_client, receiver):
    """A subscription created after an event was stored, but before it was delivered, gets
    it; one deleted meanwhile does not."""
    client = await hub_client(config=PRIVATE)
    hub = client.app[HUB]
    doomed = await subscribe(client, receiver.url + "?doomed", ["ledger.*"])
    gate = asyncio.Event()
    real_unrouted = hub.store.inbox.unrouted

    async def held(limit: int = 500) -> Any:
        await gate.wait()  # the dispatcher is busy elsewhere: nothing is routed yet
        return await real_unrouted(limit)

    hub.store.inbox.unrouted = held  # type: ignore[method-assign]
    await hub.emit("ledger.entry.posted", {"id": "je_1"})
    assert (await real_unrouted())[0].type == "ledger.entry.posted"  # stored, unrouted
    assert (await hub.store.inbox.counts())["pending"] >= 1
    later = await subscribe(client, receiver.url, ["ledger.entry.*"])
    deleted = await client.delete(f"/api/subscriptions/{doomed['id']}")
    assert deleted.status == 200
    gate.set()
    await wait_until(delivery_of(client, "ledger.entry.posted", f"sub:{later['id']}"))
    await hub.dispatcher.drain()
    assert [call.payload["data"] for call in receiver.events] == [{"id": "je_1"}]
    (event,) = [e for e in await hub.store.inbox.events(None) if e["type"].startswith("ledger")]
    assert {d["handler"] for d in event["deliveries"] if d["handler"].startswith("sub:")} == {
        f"sub:{later['id']}"
    }
