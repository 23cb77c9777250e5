"""The sync engine: runs a plugin's ``sync`` hook and commits each batch with its cursor.

A batch's records, tombstones and cursor are written in one transaction on the store's
writer thread while the plugin already fetches the next batch (one batch in flight, so memory
stays flat). A full sync stamps every record it writes with a generation; when it completes,
records of that connection and stream the generation did not see are tombstoned. A full sync
that is interrupted keeps its generation in the cursor row and is resumed by the next run.
An incremental run may turn one stream into a full re-read (``Batch.full``) when the plugin
finds its change log can no longer serve the cursor; that stream is then swept the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

import orjson
import sqlite_utils
import structlog

from hub.errors import PluginContractError, SyncBusyError, error_class_of
from hub.logs import redact_text
from hub.model import Batch, Connection, SyncMode
from hub.store.clock import utcnow
from hub.store.records import BatchCounts, RecordTable
from hub.store.runs import write_cursor, write_stream_stats

if TYPE_CHECKING:
    from hub.core import Hub

log = structlog.get_logger("hub.sync")

ProgressCallback = Callable[["SyncProgress"], None]


@dataclass
class SyncProgress:
    """Live figures of a running sync, passed to progress callbacks after every batch."""

    run_id: int
    connection_id: str
    stream: str = ""
    records: int = 0
    batches: int = 0
    per_stream: dict[str, int] = field(default_factory=dict)
    counts: BatchCounts = field(default_factory=BatchCounts)
    started: float = field(default_factory=time.monotonic)

    @property
    def rate(self) -> float:
        """Records per second so far."""
        elapsed = time.monotonic() - self.started
        return self.records / elapsed if elapsed > 0 else 0.0


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


def _snapshot(batch: Batch) -> Batch:
    """What ``batch`` holds now, for the writer thread: the plugin runs on while the batch
    waits its turn, and may reuse its lists, records or cursor for the next page."""
    cursor = batch.cursor
    if isinstance(cursor, dict | list):
        cursor = orjson.loads(orjson.dumps(cursor))
    return replace(
        batch,
        records=[dict(record) for record in batch.records],
        deleted=list(batch.deleted),
        cursor=cursor,
    )


def _write_batch(
    db: sqlite_utils.Database,
    table: RecordTable,
    connection_id: str,
    batch: Batch,
    generation: int | None,
    restart: bool,
    previous: Future[BatchCounts] | None,
) -> BatchCounts:
    if previous is not None and previous.exception() is not None:
        # the writer is FIFO, so the previous batch is settled: never commit a cursor past
        # records that were not stored
        raise RuntimeError("an earlier batch of this sync failed to commit")
    counts = table.write(db, connection_id, batch.records, batch.deleted, utcnow(), generation)
    if batch.cursor is not None or restart:
        write_cursor(db, connection_id, batch.stream, batch.cursor, generation)
    return counts


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

    def is_running(self, connection_id: str) -> bool:
        """True while a sync of ``connection_id`` runs in this process."""
        return connection_id in self._active

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
        hub = self._hub
        if connection_id in self._active:
            raise SyncBusyError(connection_id, self._active[connection_id])
        self._active[connection_id] = 0  # claimed before any await: no second run slips in
        current = asyncio.current_task()
        if current is not None:
            self._tasks.add(current)
        try:
            connection = await hub.connection(connection_id)
            if hub.disabled(connection.integration):
                raise LookupError(f"{connection.integration} is disabled in the configuration")
            integration = hub.plugins.integrations[connection.integration]
            names = list(streams or hub.streams_for(connection.integration))
            unknown = [n for n in names if n not in {s.name for s in integration.streams}]
            if unknown:
                raise LookupError(f"{connection.integration} has no stream(s) {', '.join(unknown)}")
            mode = SyncMode.FULL if full else SyncMode.INCREMENTAL
            # recorded (and checked against other processes) before waiting for a slot, so
            # ``start`` answers at once even when every slot is taken
            run_id = await hub.store.runs.start(
                connection_id, connection.integration, mode.value, trigger, names
            )
            self._active[connection_id] = run_id
            if started is not None and not started.done():
                started.set_result(run_id)
            try:
                if current is not None:
                    self._queued.add(current)
                try:
                    await self._slots.acquire()
                finally:
                    if current is not None:
                        self._queued.discard(current)
            except asyncio.CancelledError:
                await asyncio.shield(
                    hub.store.runs.finish(
                        run_id, "cancelled", {}, 0.0, "cancelled", "stopped before it started"
                    )
                )
                raise
            hub.metrics.syncs_running.inc()
            try:
                await hub.store.runs.begin(run_id)
                with structlog.contextvars.bound_contextvars(
                    integration=connection.integration, connection=connection_id, run=run_id
                ):
                    result = await self._run(run_id, connection, names, mode, progress)
            finally:
                hub.metrics.syncs_running.dec()
                self._slots.release()
            if result.error_class == "authentication":
                # with the slot given back: other syncs need not wait for the provider
                await hub.health.check(connection_id)
            return result
        finally:
            del self._active[connection_id]
            if current is not None:
                self._tasks.discard(current)

    async def _run(
        self,
        run_id: int,
        connection: Connection,
        names: list[str],
        mode: SyncMode,
        progress: ProgressCallback | None,
    ) -> SyncResult:
        state = SyncProgress(run_id=run_id, connection_id=connection.id)
        began = time.monotonic()
        log.info("sync started", mode=mode.value, streams=names)
        try:
            await self._sync(run_id, connection, names, mode, state, progress)
        except asyncio.CancelledError:
            await asyncio.shield(self._finish(run_id, connection, state, began, None))
            log.warning("sync cancelled", **_counts(state))
            raise
        except Exception as exc:
            result = await self._finish(run_id, connection, state, began, exc)
            log.error(
                "sync failed", error_class=result.error_class, error=result.error, **_counts(state)
            )
        else:
            result = await self._finish(run_id, connection, state, began, None, done=True)
            log.info("sync completed", duration_s=result.duration_s, **_counts(state))
        return result

    async def _sync(
        self,
        run_id: int,
        connection: Connection,
        names: list[str],
        mode: SyncMode,
        state: SyncProgress,
        progress: ProgressCallback | None,
    ) -> None:
        hub = self._hub
        integration = hub.plugins.integrations[connection.integration]
        tables = {n: RecordTable(integration.name, integration.stream(n)) for n in names}
        stored = await hub.store.runs.cursors(connection.id)
        generations: dict[str, int | None] = {}
        cursors: dict[str, Any] = {}
        for name in names:
            previous = stored.get(name)
            if mode is SyncMode.FULL or previous is None:
                generations[name] = run_id  # first sync of a stream is a full one
            elif previous.full_generation is not None:
                generations[name] = previous.full_generation  # resume an unfinished full sync
                if previous.cursor is not None:
                    cursors[name] = previous.cursor
            else:
                generations[name] = None
                if previous.cursor is not None:
                    cursors[name] = previous.cursor

        def prepare(db: sqlite_utils.Database) -> None:
            for name, table in tables.items():
                table.create(db, name, integration.name)
                if generations[name] == run_id:
                    write_cursor(db, connection.id, name, None, run_id)

        await hub.store.db.write(prepare)
        connection = await hub.authenticate(connection)
        batches = hub.plugins.call_owner_raw(
            integration.name,
            "sync",
            connection=connection,
            streams=names,
            cursors=cursors,
            mode=mode,
        )
        if not isinstance(batches, AsyncIterator):
            if inspect.iscoroutine(batches):
                batches.close()  # never awaited: close it so it does not warn
            raise PluginContractError(
                f"{integration.name}: sync must be an async generator (async def with yield), "
                f"got {type(batches).__name__}"
            )
        await self._consume(batches, tables, connection.id, generations, state, progress)
        full_streams = [n for n in names if generations[n] is not None]

        def complete(db: sqlite_utils.Database) -> int:
            now, swept = utcnow(), 0
            for name, table in tables.items():
                if name in full_streams:
                    swept += table.sweep(db, connection.id, generations[name] or 0, now)
                    db.conn.execute(
                        "UPDATE cursors SET full_generation = NULL "
                        "WHERE connection_id = ? AND stream = ?",
                        [connection.id, name],
                    )
                write_stream_stats(db, connection.id, name, run_id, table.count(db, connection.id))
            return swept

        state.counts.deleted += await hub.store.db.write(complete)

    async def _consume(
        self,
        batches: AsyncIterator[Batch],
        tables: dict[str, RecordTable],
        connection_id: str,
        generations: dict[str, int | None],
        state: SyncProgress,
        progress: ProgressCallback | None,
    ) -> None:
        db = self._hub.store.db
        metrics = self._hub.metrics
        integration = connection_id.split(":", 1)[0]
        pending: tuple[Batch, Future[BatchCounts]] | None = None

        async def settle(item: tuple[Batch, Future[BatchCounts]]) -> None:
            batch, future = item
            counts = await asyncio.wrap_future(future)
            state.counts.add(counts)
            state.stream = batch.stream
            state.records += len(batch.records)
            state.batches += 1
            state.per_stream[batch.stream] = state.per_stream.get(batch.stream, 0) + len(
                batch.records
            )
            metrics.records(integration, batch.stream, counts)
            if progress is not None:
                progress(state)

        try:
            async for batch in batches:
                if not isinstance(batch, Batch):
                    raise TypeError(f"sync yielded {type(batch).__name__}, not a Batch")
                table = tables.get(batch.stream)
                if table is None:
                    raise ValueError(
                        f"sync yielded a batch for unrequested stream {batch.stream!r}"
                    )
                restart = batch.full and generations[batch.stream] is None
                if restart:  # the plugin began a full re-read of this stream in this run
                    generations[batch.stream] = state.run_id
                batch = _snapshot(batch)
                future = db.submit(
                    _write_batch,
                    table,
                    connection_id,
                    batch,
                    generations[batch.stream],
                    restart,
                    pending[1] if pending is not None else None,
                )
                if pending is not None:
                    await settle(pending)
                pending = (batch, future)
            if pending is not None:
                await settle(pending)
                pending = None
        finally:
            if pending is not None:  # wait so a crash never leaves a half-known commit
                with contextlib.suppress(Exception):
                    await asyncio.shield(settle(pending))
            aclose = getattr(batches, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()

    async def _finish(
        self,
        run_id: int,
        connection: Connection,
        state: SyncProgress,
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
        counts = asdict(state.counts)
        await hub.store.runs.finish(run_id, run_state, counts, duration, error_class, error)
        result = SyncResult(
            run_id, run_state, **counts, duration_s=duration, error_class=error_class, error=error
        )
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


def _counts(state: SyncProgress) -> dict[str, int]:
    return {"records": state.records, **asdict(state.counts)}


def _fail_from(started: asyncio.Future[int], task: asyncio.Task[SyncResult]) -> None:
    """Propagate a run's early failure (before it had a run id) to ``start``'s caller."""
    if started.done():
        return
    if task.cancelled():
        started.cancel()
    elif task.exception() is not None:
        started.set_exception(task.exception())  # type: ignore[arg-type]
