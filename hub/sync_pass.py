"""One pass of a sync over a connection's streams: plan, consume the plugin's batches, complete.

A batch's records, tombstones and cursor are written in one transaction on the store's
writer thread while the plugin already fetches the next batches; batches that wait for a busy
writer are joined into one transaction (:class:`BatchConsumer`), and at most two groups are
in flight, so memory stays flat.

A full sync stamps every record it writes with a generation (the run id of the
full pass); when it completes, records of that connection and stream the generation did not
see are tombstoned. A full sync that is interrupted keeps its generation in the cursor row and
is resumed by the next run. An incremental run may turn one stream into a full re-read
(``Batch.full``) when the plugin finds its change log can no longer serve the cursor; that
stream is then swept the same way. The records of a stream that declares client fields are
matched to the clients registry in their batch's transaction (:mod:`hub.client_matching`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from typing import Any

import orjson
import sqlite_utils

from hub.client_matching import MatchTally, StreamClients
from hub.metrics import Metrics
from hub.model import Batch, SyncMode
from hub.store.client_match import Candidate, MatchReport
from hub.store.clock import utcnow
from hub.store.database import Database
from hub.store.records import BatchCounts, RecordTable, Row
from hub.store.runs import StreamCursor, write_cursor, write_stream_stats


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


ProgressCallback = Callable[[SyncProgress], None]
Written = tuple[BatchCounts, MatchReport | None]
"""What committing one batch did: its record counts and, for a stream with client fields,
how its records were matched."""


@dataclass
class Plan:
    """Where each stream of a run starts.

    :param generations: per stream, the generation its records are stamped with (the run id
        of the full pass it belongs to), or None in an incremental pass.
    :param cursors: per stream, the committed cursor it resumes from (absent: from the start).
    """

    generations: dict[str, int | None]
    cursors: dict[str, Any]

    def full_streams(self) -> list[str]:
        """The streams in a full pass (swept when the run completes)."""
        return [name for name, gen in self.generations.items() if gen is not None]


def plan(
    run_id: int, names: Sequence[str], mode: SyncMode, stored: dict[str, StreamCursor]
) -> Plan:
    """Plan run ``run_id``: a full sync and a stream's first sync start a full pass; a full
    pass left unfinished is resumed from its cursor; other streams resume incrementally."""
    result = Plan({}, {})
    for name in names:
        previous = stored.get(name)
        if mode is SyncMode.FULL or previous is None:
            result.generations[name] = run_id
            continue
        result.generations[name] = previous.full_generation
        if previous.cursor is not None:
            result.cursors[name] = previous.cursor
    return result


def prepare(
    db: sqlite_utils.Database,
    tables: dict[str, RecordTable],
    integration: str,
    connection_id: str,
    run_plan: Plan,
    run_id: int,
) -> None:
    """Create the record tables; a stream starting a full pass records it in its cursor row."""
    for name, table in tables.items():
        table.create(db, name, integration)
        if run_plan.generations[name] == run_id:
            write_cursor(db, connection_id, name, None, run_id)


SWEEP_ROWS = 20_000
"""Rows a full sync's sweep examines per transaction: webhook commits go between the parts
instead of waiting for a scan of the whole table."""


async def sweep(
    db: Database,
    tables: dict[str, RecordTable],
    clients: dict[str, StreamClients],
    connection_id: str,
    run_plan: Plan,
) -> int:
    """Tombstone what the full streams of a successful run did not see, ``SWEEP_ROWS`` rows
    per transaction (dropping the client reviews of what it tombstoned). A crash midway is
    safe: the full pass stays open (:func:`complete` closes it) and the next run sweeps again.

    :return: how many records it tombstoned.
    """
    swept, now = 0, utcnow()
    for name in run_plan.full_streams():
        table, generation = tables[name], run_plan.generations[name] or 0
        last = await db.read(table.last_rowid)
        for low in range(0, last, SWEEP_ROWS):
            bounds = (low, low + SWEEP_ROWS)
            args = (table, clients.get(name), connection_id, generation, now, bounds)
            swept += await db.write(_sweep_part, *args)
    return swept


def _sweep_part(
    db: sqlite_utils.Database,
    table: RecordTable,
    clients: StreamClients | None,
    connection_id: str,
    generation: int,
    now: str,
    rows: tuple[int, int],
) -> int:
    gone = table.sweep(db, connection_id, generation, now, rows)
    if gone and clients is not None:
        clients.forget_tombstoned(db, table, connection_id, rows)
    return gone


def complete(
    db: sqlite_utils.Database,
    tables: dict[str, RecordTable],
    connection_id: str,
    run_plan: Plan,
    run_id: int,
) -> None:
    """End a successful run after its :func:`sweep`: close the full passes and record every
    stream's statistics."""
    full = run_plan.full_streams()
    for name, table in tables.items():
        if name in full:
            db.conn.execute(
                "UPDATE cursors SET full_generation = NULL WHERE connection_id = ? AND stream = ?",
                [connection_id, name],
            )
        write_stream_stats(db, connection_id, name, run_id, table.count(db, connection_id))


GROUP_BYTES = 2 * 1024 * 1024
"""While the writer is busy, batches of one stream that wait for it are joined, into one
transaction, until their records hold this much JSON: fewer, larger transactions write each
index page they touch once rather than once per batch. Not while webhook commits go through
the writer: they would wait for the whole group (p99 during a sync 110 -> 220 ms)."""


@dataclass(frozen=True)
class _Pending:
    """Batches as the writer thread takes them: made on the event loop when the plugin
    yields a batch (the plugin runs on while it waits its turn, and may reuse its lists,
    records or cursor for the next page), so the writer thread only runs SQL. Consecutive
    batches of a stream may be joined into one (:meth:`joined`).

    :param generation: the generation its records are stamped with (None: incremental).
    :param restart: its first batch begins a full re-read of the stream in this run.
    :param size: the length of its records' JSON.
    """

    stream: str
    batches: int
    records: int
    rows: dict[str, Row]
    candidates: list[Candidate] | None
    deleted: list[str]
    cursor: Any
    generation: int | None
    restart: bool
    size: int

    def joins(self, later: _Pending) -> bool:
        """Whether ``later`` can be stored in the same transaction, as if right after (how
        large a group may grow is :meth:`BatchConsumer._may_grow`'s rule)."""
        return (
            later.stream == self.stream
            and later.generation == self.generation
            and not later.restart
        )

    def joined(self, later: _Pending) -> _Pending:
        """This and ``later`` as one: its rows, matches, deletions and cursor win.

        An id that ``later`` stores again is no longer deleted (it was deleted, then came
        back); one that ``later`` deletes is stored first, then tombstoned, as in turn.
        """
        candidates = None
        if self.candidates is not None and later.candidates is not None:
            candidates = self.candidates + later.candidates
        return replace(
            self,
            batches=self.batches + later.batches,
            records=self.records + later.records,
            rows=self.rows | later.rows,
            candidates=candidates,
            deleted=[i for i in self.deleted if i not in later.rows] + later.deleted,
            cursor=self.cursor if later.cursor is None else later.cursor,
            size=self.size + later.size,
        )


def _pending(
    batch: Batch,
    table: RecordTable,
    clients: StreamClients | None,
    generation: int | None,
    restart: bool,
) -> _Pending:
    cursor = batch.cursor
    if isinstance(cursor, dict | list):
        cursor = orjson.loads(orjson.dumps(cursor))
    rows = table.rows(batch.records)
    return _Pending(
        stream=batch.stream,
        batches=1,
        records=len(batch.records),
        rows=rows,
        candidates=clients.candidates(batch.records) if clients is not None else None,
        deleted=[str(i) for i in batch.deleted],
        cursor=cursor,
        generation=generation,
        restart=restart,
        size=sum(len(row[-1]) for row in rows.values()),
    )


def _write_batch(
    db: sqlite_utils.Database,
    table: RecordTable,
    clients: StreamClients | None,
    connection_id: str,
    batch: _Pending,
    previous: Future[Written] | None,
) -> Written:
    if previous is not None and previous.exception() is not None:
        # the writer is FIFO, so the previous batch is settled: never commit a cursor past
        # records that were not stored
        raise RuntimeError("an earlier batch of this sync failed to commit")
    now, generation = utcnow(), batch.generation
    counts = table.write(db, connection_id, batch.rows, batch.deleted, now, generation)
    report = None
    if clients is not None and batch.candidates is not None:
        report = clients.write(db, connection_id, batch.candidates, batch.deleted)
    if batch.cursor is not None or batch.restart:
        write_cursor(db, connection_id, batch.stream, batch.cursor, generation)
    return counts, report


class BatchConsumer:
    """Commits a run's batches in order while the plugin fetches the next ones.

    One group of batches is with the writer, and one more waits for it: batches the plugin
    yields meanwhile join the waiting group (up to ``GROUP_BYTES``, and only while no webhook
    commits go through the writer), so a writer slower than the plugin commits fewer, larger
    transactions, and memory stays bounded by two groups.
    ``tallies`` totals, per stream with client fields, how the committed records matched.
    """

    def __init__(
        self,
        db: Database,
        metrics: Metrics,
        tables: dict[str, RecordTable],
        clients: dict[str, StreamClients],
        run_plan: Plan,
        live: SyncProgress,
        progress: ProgressCallback | None,
    ) -> None:
        self._db, self._metrics = db, metrics
        self._tables, self._clients, self._plan = tables, clients, run_plan
        self.tallies: dict[str, MatchTally] = {}
        self._live, self._progress = live, progress
        self._integration = live.connection_id.split(":", 1)[0]

    async def consume(self, batches: AsyncIterator[Batch]) -> None:
        """Commit every batch ``batches`` yields; close it however the loop ends.

        However the loop ends (a failure, a cancellation), every batch already handed to the
        writer is waited for and counted, so a run never ends with a commit still to come.

        :raise TypeError, ValueError: the plugin yielded something else than a requested
            stream's :class:`Batch`.
        """
        in_flight: deque[tuple[_Pending, Future[Written]]] = deque()
        try:
            try:
                async for batch in batches:
                    self._hand_over(self._prepare(batch), in_flight)
                    while len(in_flight) > 2 or (
                        len(in_flight) == 2 and not self._may_grow(in_flight[-1])
                    ):
                        await self._settle_oldest(in_flight)
                while in_flight:
                    await self._settle_oldest(in_flight)
            finally:
                while in_flight:
                    with contextlib.suppress(Exception):
                        await self._settle_oldest(in_flight)
        finally:
            aclose = getattr(batches, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()

    def _prepare(self, batch: Batch) -> _Pending:
        if not isinstance(batch, Batch):
            raise TypeError(f"sync yielded {type(batch).__name__}, not a Batch")
        table = self._tables.get(batch.stream)
        if table is None:
            raise ValueError(f"sync yielded a batch for unrequested stream {batch.stream!r}")
        generations = self._plan.generations
        restart = batch.full and generations[batch.stream] is None
        if restart:  # the plugin began a full re-read of this stream in this run
            generations[batch.stream] = self._live.run_id
        clients = self._clients.get(batch.stream)
        return _pending(batch, table, clients, generations[batch.stream], restart)

    def _may_grow(self, entry: tuple[_Pending, Future[Written]]) -> bool:
        """Whether the group waiting for the writer may still take another batch."""
        pending, future = entry
        if pending.size >= GROUP_BYTES or self._db.urgent_recently():
            return False
        return not future.running() and not future.done()

    def _hand_over(
        self, pending: _Pending, in_flight: deque[tuple[_Pending, Future[Written]]]
    ) -> None:
        """Queue ``pending`` for the writer: joined to the group still waiting for it if
        they join (that group is withdrawn, unless the writer has just begun it)."""
        if in_flight and self._may_grow(in_flight[-1]):
            waiting, future = in_flight[-1]
            if waiting.joins(pending) and future.cancel():
                in_flight.pop()
                pending = waiting.joined(pending)
        previous = in_flight[-1][1] if in_flight else None
        table, clients = self._tables[pending.stream], self._clients.get(pending.stream)
        connection_id = self._live.connection_id
        future = self._db.submit(_write_batch, table, clients, connection_id, pending, previous)
        in_flight.append((pending, future))

    async def _settle_oldest(self, in_flight: deque[tuple[_Pending, Future[Written]]]) -> None:
        """Wait for the oldest batch in flight to commit, then count it.

        A cancellation leaves the batch in ``in_flight`` and its commit going on (the writer's
        future is shielded), so the caller can still wait for it; a failed commit leaves it.
        """
        batch, future = in_flight[0]
        try:
            counts, report = await asyncio.shield(asyncio.wrap_future(future))
        except asyncio.CancelledError:
            raise
        except BaseException:
            in_flight.popleft()
            raise
        in_flight.popleft()
        if report is not None:
            self.tallies.setdefault(batch.stream, MatchTally()).add(report)
        live = self._live
        live.counts.add(counts)
        live.stream = batch.stream
        live.records += batch.records
        live.batches += batch.batches
        live.per_stream[batch.stream] = live.per_stream.get(batch.stream, 0) + batch.records
        self._metrics.records(self._integration, batch.stream, counts)
        if self._progress is not None:
            self._progress(live)
