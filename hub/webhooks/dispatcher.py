"""The dispatcher: delivers stored events to their handlers, at least once, with retries.

Handlers of an event are resolved when the dispatcher routes it, just before its first
delivery: ``process`` (the owning plugin's handling of its own webhook events),
``event:<plugin>`` (each ``event`` hook implementation) and ``sub:<id>`` (each matching
outbound subscription, as the subscriptions are then). A ``process`` refused on
authentication marks its connection disconnected. Each (event, handler) delivery is tracked
on its own: a failure is retried with exponential backoff and jitter without re-running the
handlers that succeeded, and dead-lettered (and alerted) after the configured attempts.
Deliveries still pending at a crash or stop run again after the restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import random
import time
from typing import TYPE_CHECKING

import structlog

from hub.errors import AuthenticationError, error_class_of
from hub.model import Alert, HealthStatus, HubEvent
from hub.store.inbox import Due
from hub.store.subscriptions import Subscription

if TYPE_CHECKING:
    from hub.core import Hub

log = structlog.get_logger("hub.dispatcher")

OUTBOUND_SCHEDULE_S = (5, 300, 1800, 7200, 28800, 36000, 36000)
"""Delay before each retry of an outbound delivery: 5 s, 5 min, 30 min, 2 h, 8 h, 10 h, 10 h."""
SUBSCRIPTION_DISABLE_AFTER = 3
"""Dead-lettered deliveries in a row after which a subscription is disabled."""
HANDLER_BASE_DELAY_S = 2.0
HANDLER_MAX_DELAY_S = 3600.0
CONCURRENCY = 16
HANDLER_CACHE_SIZE = 4096
"""Cached handler lists at most (event types come from senders; the cache is then cleared)."""
ROUTE_BATCH = 500
"""Events routed per round at most (one read and one write transaction)."""
UNRECORDED_RETRY_S = 5.0
"""How long a delivery whose outcome could not be written waits before it runs again."""
LOOP_ERROR_PAUSE_S = 1.0
ROUND_MIN_INTERVAL_S = 0.1
"""Rounds start at most this often: under a stream of webhooks each round routes and starts
many events at once, instead of reading the inbox for every stored group."""


def message_id(source: str, event_id: str) -> str:
    """The ``webhook-id`` of an event's outbound deliveries: the same on every retry, and
    unique across events (row ids are reused after pruning, and restart on a new database)."""
    digest = hashlib.sha256(f"{source}\0{event_id}".encode()).hexdigest()
    return f"msg_{digest[:32]}"


def outbound_delay(attempts: int) -> float:
    """Delay before retry ``attempts`` of an outbound delivery: the schedule, +-10% jitter so
    the deliveries that failed together (an endpoint's outage) do not retry in lockstep."""
    return OUTBOUND_SCHEDULE_S[attempts - 1] * random.uniform(0.9, 1.1)


def handler_delay(attempts: int) -> float:
    """Backoff before retry ``attempts`` of a plugin handler: exponential and capped, drawn
    between half and all of that ceiling (jitter that still grows with each attempt)."""
    ceiling = min(HANDLER_MAX_DELAY_S, HANDLER_BASE_DELAY_S * 2 ** (attempts - 1))
    return random.uniform(ceiling / 2, ceiling)


class HandlerTimeout(Exception):
    """A handler ran longer than ``webhooks.handler_timeout``."""


def _alert_key(due: Due) -> str:
    """Dead letters alert once per failing handler: ``process`` is one per integration."""
    return f"{due.source}:process" if due.handler == "process" else due.handler


class Dispatcher:
    """Runs due deliveries in the background and records their outcomes."""

    def __init__(self, hub: Hub) -> None:
        self._hub = hub
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._running: dict[tuple[int, str], asyncio.Task[None]] = {}
        self._slots = asyncio.Semaphore(CONCURRENCY)
        self.subscriptions: list[Subscription] = []
        self._handlers: dict[tuple[str, str, bool], tuple[str, ...]] = {}
        """Handlers per (source, event type, from a webhook): routing asks for every event."""
        self._plugins_revision = -1
        self._alerted: set[str] = set()
        """Handlers whose dead letters were alerted; cleared when one of theirs succeeds."""
        self._held: dict[tuple[int, str], float] = {}
        """Deliveries whose outcome could not be written: not run again before this time."""
        self._reload_lock = asyncio.Lock()

    async def start(self, deliver: bool = True) -> None:
        """Load subscriptions and, if ``deliver``, start routing and delivering (one-off
        commands only store events: the daemon routes and delivers them)."""
        await self.reload_subscriptions()
        if deliver:
            self._task = asyncio.create_task(self._loop(), name="hub-dispatcher")

    async def stop(self) -> None:
        """Stop: in-flight deliveries get a moment, then stay pending for the next start."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                try:
                    await self._task
                except Exception:  # the loop logs its own errors; stopping must go on
                    log.exception("the dispatcher loop had failed")
            self._task = None
        if self._running:
            _, late = await asyncio.wait(set(self._running.values()), timeout=2)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late)

    async def reload_subscriptions(self) -> None:
        """Re-read subscriptions (after one is created, deleted or disabled)."""
        async with self._reload_lock:  # reads finish out of order: the last one must win
            self.subscriptions = await self._hub.store.subscriptions.list()
            self._handlers.clear()

    def handlers_for(self, source: str, event_type: str, webhook: bool) -> tuple[str, ...]:
        """The handlers an event of ``source`` and ``event_type`` is delivered to now.

        :param webhook: it came with a webhook request (the source's ``process`` handles it),
            not from :meth:`hub.core.Hub.emit`.
        """
        if self._plugins_revision != self._hub.plugins.revision:
            self._handlers.clear()
            self._plugins_revision = self._hub.plugins.revision
        key = (source, event_type, webhook)
        handlers = self._handlers.get(key)
        if handlers is None:
            if len(self._handlers) >= HANDLER_CACHE_SIZE:
                self._handlers.clear()
            hub = self._hub
            # a webhook whose plugin is gone (failed to load, uninstalled) still gets
            # ``process``: it fails, is retried and dead-lettered, and can be replayed later
            owned = source in hub.plugins.integrations
            processed = webhook and (not owned or hub.plugins.has_owner_hook(source, "process"))
            owner = ["process"] if processed else []
            handlers = tuple(
                owner
                + [
                    f"event:{name}"
                    for name in hub.plugins.implementers("event")
                    if self._receives_events(name)
                ]
                + [f"sub:{s.id}" for s in self.subscriptions if s.matches(event_type)]
            )
            self._handlers[key] = handlers
        return handlers

    def _receives_events(self, plugin: str) -> bool:
        """A plugin gets ``event`` deliveries unless its integration asks for them only
        while configured (``Integration.events_when_configured``) and is not."""
        info = self._hub.plugins.info.get(plugin)
        integration = self._hub.plugins.integrations.get(info.integration or "") if info else None
        if integration is None or not integration.events_when_configured:
            return True
        # settings are None for an integration without a section or with enabled = false
        return self._hub.settings_for(integration.name) is not None

    def wake(self) -> None:
        """New events were stored: route and deliver now."""
        self._wake.set()

    async def drain(self, timeout: float = 10.0) -> None:
        """Wait until nothing is unrouted, due now or running (tests and the CLI use this)."""
        deadline = time.monotonic() + timeout
        inbox = self._hub.store.inbox
        while time.monotonic() < deadline:
            if (
                not self._running
                and not await inbox.unrouted(limit=1)
                and not await inbox.due(limit=1)
            ):
                return
            await asyncio.sleep(0.02)

    async def _loop(self) -> None:
        while True:
            started = time.monotonic()
            try:
                await self._round()
            except Exception:  # a failed read (disk, lock): log, pause, carry on
                log.exception("dispatcher round failed; retrying")
                await asyncio.sleep(LOOP_ERROR_PAUSE_S)
            pause = ROUND_MIN_INTERVAL_S - (time.monotonic() - started)
            if pause > 0:
                await asyncio.sleep(pause)

    async def _route(self) -> None:
        """Resolve the handlers of stored events not routed yet, giving them deliveries."""
        inbox = self._hub.store.inbox
        while events := await inbox.unrouted(limit=ROUTE_BATCH):
            await inbox.route(
                [(e.event, self.handlers_for(e.source, e.type, e.webhook)) for e in events]
            )
            if len(events) < ROUTE_BATCH:
                return

    async def _round(self) -> None:
        """Route new events, start what is due, then wait until something may be due (or a
        wake-up)."""
        inbox = self._hub.store.inbox
        self._wake.clear()
        await self._route()
        now = time.monotonic()
        self._held = {key: until for key, until in self._held.items() if until > now}
        # a delivery finishing during the read may read as due
        skip = set(self._running) | set(self._held)
        due = await inbox.due(skip=skip)
        for delivery in due:
            key = (delivery.event, delivery.handler)
            task = asyncio.create_task(self._deliver(delivery))
            self._running[key] = task
            task.add_done_callback(functools.partial(self._forget, key))
        if due:
            await asyncio.sleep(0)
            return
        next_at = await inbox.next_due_at()
        if next_at is None or ((self._running or self._held) and next_at <= time.time()):
            wait = 1.0  # nothing due but what is running or held: its end wakes the loop
        else:
            wait = min(1.0, max(0.01, next_at - time.time()))
        # asyncio.timeout, not wait_for: on Python 3.11, wait_for racing a cancel with its
        # own timeout can leave the task neither cancelled nor running (stop hangs)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                await self._wake.wait()

    def _forget(self, key: tuple[int, str], _task: asyncio.Task[None]) -> None:
        self._running.pop(key, None)
        self._wake.set()

    async def _deliver(self, due: Due) -> None:
        async with self._slots:
            try:
                await self._attempt(due)
            except Exception:  # the outcome could not be written: hold it, do not spin
                self._held[(due.event, due.handler)] = time.monotonic() + UNRECORDED_RETRY_S
                log.exception(
                    "delivery outcome not recorded; it runs again later",
                    inbox_id=due.event,
                    handler=due.handler,
                )

    async def _attempt(self, due: Due) -> None:
        """Run one delivery and record its outcome (done, retry later, or dead)."""
        event = HubEvent(
            type=due.type,
            data=due.data,
            id=due.event_id,
            source=due.source,
            created_at=due.created_at,
            connection_key=due.connection_key,
            attempt=due.attempts + 1,
        )
        attempts = due.attempts + 1
        limit = self._hub.settings.webhooks.handler_timeout
        try:
            async with asyncio.timeout(limit):
                await self._run_handler(due, event)
        except TimeoutError:
            await self._failed(due, attempts, HandlerTimeout(f"no answer in {limit:g} s"))
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # the hub is stopping: the delivery stays pending
            await self._failed(due, attempts, RuntimeError("the handler was cancelled"))
        except Exception as exc:
            await self._failed(due, attempts, exc)
        else:
            await self._hub.store.inbox.record(
                [(due.event, due.handler, "done", attempts, time.time(), None)]
            )
            self._alerted.discard(_alert_key(due))
            await self._finished_subscription(due.handler, ok=True)

    async def _run_handler(self, due: Due, event: HubEvent) -> None:
        hub = self._hub
        kind, _, name = due.handler.partition(":")
        if kind == "process":
            try:
                await hub.plugins.call_owner(due.source, "process", event=event)
            except AuthenticationError as exc:  # retried like any failure, and reported
                await hub.health.credentials_refused(due.source, event.connection_key, exc)
                raise
        elif kind == "event":
            await hub.plugins.call_plugin(name, "event", event=event)
        elif kind == "sub":
            await hub.outbound.deliver(name, message_id(due.source, due.event_id), event)
        else:
            raise LookupError(f"unknown handler {due.handler!r}")

    async def _failed(self, due: Due, attempts: int, exc: Exception) -> None:
        outbound = due.handler.startswith("sub:")
        max_attempts = self._hub.settings.webhooks.max_attempts
        limit = len(OUTBOUND_SCHEDULE_S) + 1 if outbound else max_attempts
        error = f"{error_class_of(exc)}: {exc}"[:1000]
        if outbound and isinstance(exc, LookupError):
            # the subscription was deleted or disabled (that was alerted once): no retries,
            # no alert per event
            await self._hub.store.inbox.record(
                [(due.event, due.handler, "dead", attempts, time.time(), error)]
            )
            return
        if attempts >= limit:
            await self._hub.store.inbox.record(
                [(due.event, due.handler, "dead", attempts, time.time(), error)]
            )
            log.error(
                "delivery dead-lettered", inbox_id=due.event, handler=due.handler, error=error
            )
            await self._finished_subscription(due.handler, ok=False)
            if _alert_key(due) in self._alerted:
                return  # one alert per failing handler, not one per event (no storm)
            self._alerted.add(_alert_key(due))
            await self._hub.health.deliver(
                Alert(
                    id=0,
                    integration=due.source,
                    connection_id=f"inbox:{due.event}",
                    connection_title=f"event {due.event} ({due.type})",
                    status=HealthStatus.ERROR,
                    previous=None,
                    message=f"handler {due.handler} failed {attempts} times; dead-lettered "
                    f"(replay: POST /api/inbox/{due.event}/replay; its further dead letters are "
                    f"listed at /api/inbox?state=dead, not alerted again until it succeeds): "
                    f"{error}",
                )
            )
            return
        delay = outbound_delay(attempts) if outbound else handler_delay(attempts)
        await self._hub.store.inbox.record(
            [(due.event, due.handler, "pending", attempts, time.time() + delay, error)]
        )
        log.warning(
            "delivery failed; will retry",
            inbox_id=due.event,  # not `event`: that is the log message argument
            handler=due.handler,
            attempt=attempts,
            retry_in_s=round(delay, 1),
            error=error,
        )

    async def _finished_subscription(self, handler: str, ok: bool) -> None:
        kind, _, sub_id = handler.partition(":")
        if kind != "sub":
            return
        disabled = await self._hub.store.subscriptions.delivered(
            sub_id, ok, SUBSCRIPTION_DISABLE_AFTER
        )
        if disabled:
            await self.reload_subscriptions()
            log.error("subscription disabled", subscription=sub_id)
            await self._hub.health.deliver(
                Alert(
                    id=0,
                    integration="webhooks",
                    connection_id=sub_id,
                    connection_title=f"subscription {sub_id}",
                    status=HealthStatus.ERROR,
                    previous=HealthStatus.HEALTHY,
                    message=f"outbound subscription {sub_id} was disabled after "
                    f"{SUBSCRIPTION_DISABLE_AFTER} dead-lettered deliveries in a row",
                )
            )
