"""The sync engine: runs a plugin's ``sync`` hook, one run at a time per connection.

A run is recorded (queued) before it waits for one of ``sync.max_concurrent`` slots, then
consumes the plugin's batches (:mod:`hub.sync_pass`: each batch committed with its cursor),
and ends ``succeeded``, ``failed`` (a plugin error, classified) or ``cancelled``. The
connection's state (:mod:`hub.connection_state`) follows the run from queued to its end; a
run refused on authentication marks the connection disconnected without another provider
call.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import structlog

from hub.client_matching import MatchTally, stream_clients
from hub.errors import PluginContractError, SyncBusyError, advice_of, error_class_of
from hub.logs import redact_text
from hub.model import Batch, Connection, ErrorInfo, SyncMode
from hub.store.records import RecordTable
from hub.sync_pass import (
    BatchConsumer,
    ProgressCallback,
    SyncProgress,
    complete,
    plan,
    prepare,
    sweep,
)

if TYPE_CHECKING:
    from hub.core import Hub

log = structlog.get_logger("hub.sync")


@dataclass(frozen=True)
class SyncResult:
    """How a sync run ended."""

    run_id: int
    state: str
    created: int
    updated: int
    deleted: int
    duration_s: float
    error_class: str | None = None
    error: str | None = None
    advice: str = ""


class SyncEngine:
    """Runs syncs: one at a time per connection, at most ``max_concurrent`` overall."""

    def __init__(self, hub: Hub, max_concurrent: int) -> None:
        self._hub = hub
        self._slots = asyncio.Semaphore(max_concurrent)
        self._active: dict[str, int] = {}
        self._queued: set[asyncio.Task[Any]] = set()
        """Runs waiting for a slot: stopping the hub cancels them rather than starting them."""
        self._tasks: set[asyncio.Task[Any]] = set()
        """Every task running a sync here (API, schedule), so ``stop`` finishes or cancels it."""

    async def start(
        self,
        connection_id: str,
        *,
        full: bool = False,
        trigger: str = "api",
        streams: Sequence[str] | None = None,
    ) -> int:
        """Start a sync in the background and return its run id.

        :raise SyncBusyError: the connection is already syncing.
        """
        started: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(
            self.run(connection_id, full=full, trigger=trigger, streams=streams, started=started)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(functools.partial(_fail_from, started))
        return await started

    async def run(
        self,
        connection_id: str,
        *,
        full: bool = False,
        trigger: str = "cli",
        streams: Sequence[str] | None = None,
        progress: ProgressCallback | None = None,
        started: asyncio.Future[int] | None = None,
    ) -> SyncResult:
        """Run one sync of ``connection_id`` to its end and return how it ended.

        A plugin error does not raise: it ends the run ``failed`` with its error class.

        :raise SyncBusyError: the connection is already syncing.
        :raise LookupError: no such connection or integration.
        """
        if connection_id in self._active:
            raise SyncBusyError(connection_id, self._active[connection_id])
        self._active[connection_id] = 0  # claimed before any await: no second run slips in
        current = asyncio.current_task()
        if current is not None:
            self._tasks.add(current)
        try:
            connection, names = await self._resolve(connection_id, streams)
            mode = SyncMode.FULL if full else SyncMode.INCREMENTAL
            # recorded (and checked against other processes) before waiting for a slot, so
            # ``start`` answers at once even when every slot is taken
            run_id = await self._hub.store.runs.start(
                connection_id, connection.integration, mode.value, trigger, names
            )
            self._active[connection_id] = run_id
            self._hub.states.get(connection_id).run_queued(run_id, trigger)
            if started is not None and not started.done():
                started.set_result(run_id)
            await self._wait_for_slot(connection_id, run_id, current)
            try:
                result = await self._run_in_slot(run_id, connection, names, mode, progress)
            finally:
                self._slots.release()
            if result.error_class == "authentication":
                # with the slot given back: other syncs need not wait for the alert
                await self._hub.health.disconnected(connection, result.error or "")
            return result
        finally:
            del self._active[connection_id]
            if current is not None:
                self._tasks.discard(current)

    async def _resolve(
        self, connection_id: str, streams: Sequence[str] | None
    ) -> tuple[Connection, list[str]]:
        """The connection to sync and the names of its streams to sync.

        :raise LookupError: no such connection, its integration is disabled, or it has no
            such stream.
        """
        hub = self._hub
        connection = await hub.connection(connection_id)
        if hub.disabled(connection.integration):
            raise LookupError(f"{connection.integration} is disabled in the configuration")
        integration = hub.plugins.integrations[connection.integration]
        names = list(streams or hub.streams_for(connection.integration))
        unknown = [n for n in names if n not in {s.name for s in integration.streams}]
        if unknown:
            raise LookupError(f"{connection.integration} has no stream(s) {', '.join(unknown)}")
        return connection, names

    async def _wait_for_slot(
        self, connection_id: str, run_id: int, current: asyncio.Task[Any] | None
    ) -> None:
        """Acquire a slot; a run cancelled while it waits is recorded cancelled."""
        if current is not None:
            self._queued.add(current)
        try:
            await self._slots.acquire()
        except asyncio.CancelledError:
            self._hub.states.get(connection_id).run_ended("cancelled", "", None)
            await asyncio.shield(
                self._hub.store.runs.finish(
                    run_id, "cancelled", {}, 0.0, "cancelled", "stopped before it started"
                )
            )
            raise
        finally:
            if current is not None:
                self._queued.discard(current)

    async def _run_in_slot(
        self,
        run_id: int,
        connection: Connection,
        names: list[str],
        mode: SyncMode,
        progress: ProgressCallback | None,
    ) -> SyncResult:
        """Run the sync once it has its slot, and record how it ended."""
        hub = self._hub
        hub.metrics.syncs_running.inc()
        try:
            await hub.store.runs.begin(run_id)
            with structlog.contextvars.bound_contextvars(
                integration=connection.integration, connection=connection.id, run=run_id
            ):
                return await self._run(run_id, connection, names, mode, progress)
        finally:
            hub.metrics.syncs_running.dec()

    async def _run(
        self,
        run_id: int,
        connection: Connection,
        names: list[str],
        mode: SyncMode,
        progress: ProgressCallback | None,
    ) -> SyncResult:
        live = SyncProgress(run_id=run_id, connection_id=connection.id)
        self._hub.states.get(connection.id).run_began(live)
        began = time.monotonic()
        log.info("sync started", mode=mode.value, streams=names)
        try:
            await self._sync(run_id, connection, names, mode, live, progress)
        except asyncio.CancelledError:
            await asyncio.shield(self._finish(run_id, connection, live, began, None))
            log.warning("sync cancelled", **_counts(live))
            raise
        except Exception as exc:
            # the connection's state logs the first failure and the recovery
            result = await self._finish(run_id, connection, live, began, exc)
            log.info(
                "sync failed", error_class=result.error_class, error=result.error, **_counts(live)
            )
        else:
            result = await self._finish(run_id, connection, live, began, None, done=True)
            log.info("sync completed", duration_s=result.duration_s, **_counts(live))
        return result

    async def _sync(
        self,
        run_id: int,
        connection: Connection,
        names: list[str],
        mode: SyncMode,
        live: SyncProgress,
        progress: ProgressCallback | None,
    ) -> None:
        hub = self._hub
        integration = hub.plugins.integrations[connection.integration]
        tables = {n: RecordTable(integration.name, integration.stream(n)) for n in names}
        clients = {
            n: matching
            for n in names
            if (matching := stream_clients(integration.name, integration.stream(n))) is not None
        }
        run_plan = plan(run_id, names, mode, await hub.store.runs.cursors(connection.id))
        await hub.store.db.write(
            functools.partial(
                prepare,
                tables=tables,
                integration=integration.name,
                connection_id=connection.id,
                run_plan=run_plan,
                run_id=run_id,
            )
        )
        connection = await hub.authenticate(connection)
        batches = self._batches(connection, names, run_plan.cursors, mode)
        consumer = BatchConsumer(
            hub.store.db, hub.metrics, tables, clients, run_plan, live, progress
        )
        try:
            await consumer.consume(batches)
        except BaseException:  # the committed batches were matched: announce them anyway
            with contextlib.suppress(Exception):
                await asyncio.shield(self._announce(connection, consumer.tallies))
            raise
        await self._announce(connection, consumer.tallies)
        db = hub.store.db
        live.counts.deleted += await sweep(db, tables, clients, connection.id, run_plan)
        await db.write(
            functools.partial(
                complete,
                tables=tables,
                connection_id=connection.id,
                run_plan=run_plan,
                run_id=run_id,
            )
        )

    def _batches(
        self, connection: Connection, names: list[str], cursors: dict[str, Any], mode: SyncMode
    ) -> AsyncIterator[Batch]:
        """The plugin's ``sync``: the async iterator of batches its call returns.

        :raise PluginContractError: the call returned something else (a coroutine).
        """
        integration = connection.integration
        batches = self._hub.plugins.call_owner_raw(
            integration, "sync", connection=connection, streams=names, cursors=cursors, mode=mode
        )
        if not isinstance(batches, AsyncIterator):
            if inspect.iscoroutine(batches):
                batches.close()  # never awaited: close it so it does not warn
            raise PluginContractError(
                f"{integration}: sync must be an async generator (async def with yield), "
                f"got {type(batches).__name__}"
            )
        return batches

    async def _announce(self, connection: Connection, tallies: dict[str, MatchTally]) -> None:
        """Emit ``clients.matched`` per stream whose committed records were matched."""
        for stream, tally in tallies.items():
            await tally.announce(self._hub.emit, connection.integration, connection.id, stream)

    async def _finish(
        self,
        run_id: int,
        connection: Connection,
        live: SyncProgress,
        began: float,
        exc: BaseException | None,
        done: bool = False,
    ) -> SyncResult:
        hub = self._hub
        duration = time.monotonic() - began
        if done:
            run_state, error_class, error = "succeeded", None, None
        elif exc is None:
            run_state, error_class, error = "cancelled", "cancelled", "the hub stopped the sync"
        else:
            # exception text may quote a provider's answer: no secret reaches the store
            run_state, error_class, error = (
                "failed",
                error_class_of(exc),
                redact_text(str(exc))[:2000],
            )
        counts = asdict(live.counts)
        at = await hub.store.runs.finish(run_id, run_state, counts, duration, error_class, error)
        advice = advice_of(exc) if exc is not None else ""
        result = SyncResult(
            run_id,
            run_state,
            **counts,
            duration_s=duration,
            error_class=error_class,
            error=error,
            advice=advice,
        )
        failure = None
        if run_state == "failed":
            failure = ErrorInfo(error_class or "internal", error or "", at, advice)
        hub.states.get(connection.id).run_ended(run_state, at, failure)
        hub.metrics.sync_finished(connection.integration, run_state, error_class, duration)
        await hub.sync_finished(connection, result)
        return result

    async def stop(self, timeout: float) -> None:
        """Cancel the runs still waiting for a slot (recorded as cancelled before they
        started), wait up to ``timeout`` seconds for running syncs, then cancel them."""
        for task in self._queued:
            task.cancel()
        if not self._tasks:
            return
        _, still = await asyncio.wait(set(self._tasks), timeout=timeout)
        for task in still:
            task.cancel()
        if still:
            await asyncio.wait(still, timeout=timeout)


def _counts(live: SyncProgress) -> dict[str, int]:
    return {"records": live.records, **asdict(live.counts)}


def _fail_from(started: asyncio.Future[int], task: asyncio.Task[SyncResult]) -> None:
    """Propagate a run's early failure (before it had a run id) to ``start``'s caller."""
    if started.done():
        return
    if task.cancelled():
        started.cancel()
    elif task.exception() is not None:
        started.set_exception(task.exception())  # type: ignore[arg-type]
