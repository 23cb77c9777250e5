"""The dispatcher under faults: hanging and self-cancelling handlers, outcomes that cannot be
written, failed reads, alerts per integration, subscription reloads out of order."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from hub.hookspecs import hookimpl
from hub.model import Alert, HubEvent
from hub.store.inbox import NewEvent, WebhookDelivery, insert_webhooks
from hub.webhooks import dispatcher as dispatcher_module
from tests.webhooks.test_outbound import wait_until


class Hanger:
    """Never answers for ``hang.*`` events."""

    __name__ = "hanger"

    @hookimpl
    async def event(self, event: HubEvent) -> None:
        if event.type.startswith("hang."):
            await asyncio.sleep(3600)


class Counter:
    """Records the types it is delivered."""

    __name__ = "counter"

    def __init__(self) -> None:
        self.seen: list[str] = []

    @hookimpl
    async def event(self, event: HubEvent) -> None:
        self.seen.append(event.type)


class SelfCancel:
    """Lets a CancelledError out, as an inner task's cancellation can."""

    __name__ = "selfcancel"

    def __init__(self) -> None:
        self.calls = 0

    @hookimpl
    async def event(self, event: HubEvent) -> None:
        self.calls += 1
        raise asyncio.CancelledError


class Alerts:
    """Collects alerts."""

    __name__ = "alerts"

    def __init__(self) -> None:
        self.alerts: list[Alert] = []

    @hookimpl
    def alert(self, alert: Alert) -> None:
        self.alerts.append(alert)


async def test_hanging_handlers_time_out_and_do_not_starve_the_others(make_hub):
    counter = Counter()
    hub = await make_hub(plugins=[Hanger(), counter], config={"webhooks": {"handler_timeout": 0.2}})
    for number in range(dispatcher_module.CONCURRENCY):  # enough to take every slot
        await hub.emit(f"hang.{number}", {})
    await hub.emit("normal.one", {})
    await wait_until(lambda: "normal.one" in counter.seen)
    await wait_until(lambda: not hub.dispatcher._running)
    events = await hub.store.inbox.events("pending")
    hanging = [d for e in events for d in e["deliveries"] if d["handler"] == "event:hanger"]
    assert len(hanging) == dispatcher_module.CONCURRENCY
    assert all(d["attempts"] == 1 and "HandlerTimeout" in d["last_error"] for d in hanging)


async def test_a_handler_raising_cancelled_error_is_a_failure_with_backoff(make_hub):
    plugin = SelfCancel()
    hub = await make_hub(plugins=[plugin])
    await hub.emit("x.y", {})
    await wait_until(lambda: plugin.calls >= 1)
    await asyncio.sleep(0.5)
    assert plugin.calls == 1  # retried later with backoff, not at once
    (event,) = await hub.store.inbox.events(None)
    (delivery,) = event["deliveries"]
    assert delivery["state"] == "pending" and delivery["attempts"] == 1
    assert "cancelled" in delivery["last_error"]


async def test_an_outcome_that_cannot_be_written_does_not_rerun_the_handler_at_once(
    make_hub, monkeypatch
):
    counter = Counter()
    hub = await make_hub(plugins=[counter])
    real = hub.store.inbox.record
    failures = {"left": 50}

    async def flaky(outcomes):
        if failures["left"]:
            failures["left"] -= 1
            raise sqlite3.OperationalError("database is locked")
        return await real(outcomes)

    monkeypatch.setattr(hub.store.inbox, "record", flaky)
    await hub.emit("x.y", {})
    await wait_until(lambda: counter.seen)
    await asyncio.sleep(0.5)
    assert counter.seen == ["x.y"]  # held for a while, not spinning
    assert failures["left"] == 49


async def test_a_failed_read_does_not_stop_the_dispatcher_nor_the_hub(make_hub, monkeypatch):
    counter = Counter()
    hub = await make_hub(plugins=[counter])
    real = hub.store.inbox.next_due_at
    calls = {"n": 0}

    async def flaky():
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError("disk I/O error")
        return await real()

    monkeypatch.setattr(hub.store.inbox, "next_due_at", flaky)
    hub.dispatcher.wake()
    await wait_until(lambda: calls["n"] >= 1)
    await hub.emit("after.error", {})
    await wait_until(lambda: "after.error" in counter.seen)
    assert not hub.dispatcher._task.done()


async def test_each_integrations_process_dead_letters_are_alerted(make_hub):
    alerts = Alerts()
    hub = await make_hub(plugins=[alerts], config={"webhooks": {"max_attempts": 1}})
    for source in ("alpha", "beta"):  # no plugin owns them any more: process fails at once
        event = NewEvent(source, "e1", f"{source}.x", {}, None)
        await hub.store.db.write(
            insert_webhooks, [WebhookDelivery.build(source, {}, b"{}", [event])]
        )
    hub.dispatcher.wake()
    await wait_until(lambda: len(alerts.alerts) == 2)
    assert {a.integration for a in alerts.alerts} == {"alpha", "beta"}


async def test_emitted_events_keep_their_source(make_hub):
    counter = Counter()
    hub = await make_hub(plugins=[counter])
    emitted = await hub.emit("ledger.thing.created", {}, source="ledger")
    await wait_until(lambda: counter.seen)
    (stored,) = await hub.store.inbox.events(None)
    assert emitted.source == stored["source"] == "ledger"


async def test_the_last_subscription_reload_wins_whatever_order_reads_finish(make_hub, monkeypatch):
    hub = await make_hub()
    real = hub.store.subscriptions.list
    calls = {"n": 0}

    async def slow_first():
        calls["n"] += 1
        first = calls["n"] == 1
        result = [] if first else ["newer"]
        if first:
            await asyncio.sleep(0.2)  # the first read finishes last
        return result

    monkeypatch.setattr(hub.store.subscriptions, "list", slow_first)
    await asyncio.gather(hub.dispatcher.reload_subscriptions(), _later(hub))
    assert hub.dispatcher.subscriptions == ["newer"]
    monkeypatch.setattr(hub.store.subscriptions, "list", real)


async def _later(hub) -> None:
    await asyncio.sleep(0.05)
    await hub.dispatcher.reload_subscriptions()


@pytest.mark.parametrize("handler_timeout", [0, -1])
def test_handler_timeout_must_be_positive(hub_config, handler_timeout):
    from hub.errors import ConfigError

    with pytest.raises(ConfigError, match="handler_timeout"):
        hub_config({"webhooks": {"handler_timeout": handler_timeout}})
