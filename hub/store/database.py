"""Opening the SQLite database: checks, pragmas, migrations, and one writer thread.

Every write transaction runs on one thread fed by two queues (as datasette does), so the
event loop never runs SQL that writes, never waits for SQLite's lock, and this process's writes
never contend with each other (a one-off CLI sync beside the daemon waits for the lock up to
``busy_timeout``). Urgent work (webhook group commits, which requests are waiting on) goes
before regular work (sync batches, bookkeeping), but a regular item never waits behind more
than ``URGENT_RUN`` urgent ones: a long sync cannot starve webhooks, nor a burst the sync.
Reads run on a small pool with their own connections (WAL lets them proceed beside the writer).
The writer reports each write's outcome to :attr:`Database.writability`, and the file gets a
time-bounded ``quick_check`` when it opens (:attr:`Database.integrity`): ``/readyz`` and
``advisoros-hub check`` report both.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import sqlite_utils
import structlog

from hub.errors import StoreError
from hub.store.files import prepare_database
from hub.store.integrity import START_BUDGET_S, Integrity, quick_check
from hub.store.schema import apply_migrations
from hub.store.writable import Writability

T = TypeVar("T")
log = structlog.get_logger("hub.store")

CHECKPOINT_INTERVAL_S = 1.0
CATCH_UP_INTERVAL_S = 0.01
"""How soon the checkpointer runs again while writes keep the WAL past a reset."""
WAL_RESET_BYTES = 16 * 1024 * 1024
"""Past this the WAL is started over from its beginning (see :meth:`Database._checkpoint_loop`)."""
HANDOFF_FRAMES = 512
"""At most this many frames left to copy, the writer thread finishes the checkpoint."""
WAL_SIZE_LIMIT = 128 * 1024 * 1024
"""What SQLite truncates the WAL file to when it starts over (journal_size_limit)."""
WRITER_CACHE_MB = 16
URGENT_RUN = 4
"""Urgent items the writer runs in a row at most while a regular item waits."""
URGENT_RECENT_S = 1.0
"""How long after an urgent item :meth:`Database.urgent_recently` stays true."""
URGENT_GRACE_S = 0.002
"""After an urgent item, how long the writer waits for the next one before it starts a
regular item: the next webhook group is submitted once the event loop has answered the last
one, and would otherwise wait for a whole sync batch."""


def connect(path: Path, cache_mb: int = 4) -> sqlite_utils.Database:
    """Open ``path`` with the hub's pragmas; StoreError if it is not an SQLite database.

    ``cache_mb`` is the connection's page cache: generous for the writer, small for readers,
    so memory stays flat however many reader threads have run.

    The file is never opened outside SQLite: closing any other descriptor of it would drop
    the POSIX locks this process's connections hold, letting another process (a CLI sync,
    a reader) see or write the database mid-transaction.
    """
    if path.is_dir():
        raise StoreError(f"{path}: cannot open database: it is a directory")
    try:
        conn = sqlite3.connect(str(path), check_same_thread=False, timeout=30)
        db = sqlite_utils.Database(conn)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA foreign_keys=ON")
        db.execute("PRAGMA busy_timeout=30000")
        db.execute(f"PRAGMA cache_size=-{cache_mb * 1024}")
        db.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
    except sqlite3.DatabaseError as exc:
        if "file is not a database" in str(exc):
            raise StoreError(
                f"{path}: not an SQLite database (store.path points elsewhere?)"
            ) from None
        raise StoreError(f"{path}: cannot open database: {exc}") from None
    return db


def _rollback(conn: sqlite3.Connection) -> None:
    """Roll back an open transaction; a failure to do so (the connection is broken) is left
    for the next statement to report, so the writer thread never dies of it."""
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")


Job = tuple[Callable[..., Any], tuple[Any, ...], Future[Any]]


class WriteQueue:
    """The writer thread's two queues: urgent before regular, regular never starved.

    After ``URGENT_RUN`` urgent items in a row with a regular item waiting, the regular item
    goes next; right after an urgent item the writer gives the next urgent one
    ``URGENT_GRACE_S`` to arrive before it starts a regular one. ``None`` (stop) is taken once
    both queues are empty.
    """

    def __init__(self) -> None:
        self._urgent: collections.deque[Job] = collections.deque()
        self._regular: collections.deque[Job] = collections.deque()
        self._ready = threading.Condition()
        self._urgent_run = 0
        self._after_urgent = False
        self._stopping = False
        self.last_urgent = float("-inf")
        """When the writer last took an urgent item (``time.monotonic``)."""

    def put(self, job: Job, urgent: bool) -> None:
        """Queue ``job`` in its lane."""
        with self._ready:
            (self._urgent if urgent else self._regular).append(job)
            self._ready.notify()

    def stop(self) -> None:
        """Let :meth:`get` return None once everything queued has been taken."""
        with self._ready:
            self._stopping = True
            self._ready.notify()

    def get(self) -> Job | None:
        """The next job (waiting for one), or None when stopped and empty."""
        with self._ready:
            while not self._urgent and not self._regular:
                if self._stopping:
                    return None
                self._ready.wait()
            if not self._urgent and self._after_urgent and self._urgent_run < URGENT_RUN:
                self._ready.wait_for(lambda: bool(self._urgent), URGENT_GRACE_S)
            if self._urgent and (not self._regular or self._urgent_run < URGENT_RUN):
                self._urgent_run += 1
                self._after_urgent = True
                self.last_urgent = time.monotonic()
                return self._urgent.popleft()
            self._urgent_run = 0
            self._after_urgent = False
            return self._regular.popleft()


class Database:
    """The hub's database: one writer thread, a pool of readers, migrations applied at open."""

    def __init__(self, path: Path, synchronous: str = "normal") -> None:
        """Open (creating and migrating) the database; ``synchronous`` applies to the writer:
        ``normal`` survives a process crash, ``full`` also a power cut."""
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"{path.parent}: cannot create folder: {exc.strerror}") from None
        prepare_database(path)
        self._writer_db = connect(path, cache_mb=WRITER_CACHE_MB)
        self._writer_db.execute("PRAGMA wal_autocheckpoint=0")
        # A statement that writes many rows inside a transaction keeps a statement journal
        # (to undo just that statement); on disk it would double what the writer writes.
        # In memory it is bounded by one statement (hub.store.bulk.STATEMENT_ROWS rows).
        self._writer_db.execute("PRAGMA temp_store=MEMORY")
        self._writer_db.execute(
            f"PRAGMA synchronous={'FULL' if synchronous == 'full' else 'NORMAL'}"
        )
        try:
            self.applied_migrations = apply_migrations(self._writer_db)
        except sqlite3.DatabaseError as exc:
            self._writer_db.close()
            raise StoreError(f"{path}: cannot migrate database: {exc}") from None
        self.integrity = quick_check(self._writer_db.conn, START_BUDGET_S)
        if self.integrity.ok is False:
            log.error("database is damaged", path=str(path), problems=self.integrity.detail)
        elif self.integrity.ok is None:
            log.warning("database integrity check stopped", detail=self.integrity.detail)
        self.writability = Writability()
        self._queue = WriteQueue()
        self._stop = threading.Event()
        self._finish_checkpoint = threading.Event()
        self._writer = threading.Thread(
            target=self._write_loop, name="hub-store-writer", daemon=True
        )
        self._writer.start()
        self._checkpointer = threading.Thread(
            target=self._checkpoint_loop, name="hub-store-checkpoint", daemon=True
        )
        self._checkpointer.start()
        self._local = threading.local()
        self._readers: list[sqlite_utils.Database] = []
        self._reader_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="hub-store-reader")
        self._closed = False

    def _checkpoint_loop(self) -> None:
        """Copy the WAL back into the database off the writer's path, once a second, and
        keep the WAL from growing without end under writes that never pause.

        The writer never checkpoints on its own (``wal_autocheckpoint=0``): a checkpoint's
        fsyncs would otherwise stall the commit that many waiting webhook requests depend on.
        SQLite starts the WAL over when a write transaction begins after a checkpoint copied
        all of it; beside a busy writer a checkpoint never does, and the WAL then grows into
        fresh file pages, which the kernel allocates and zeroes on every write (a third of
        the writer's time in a large sync). So past ``WAL_RESET_BYTES`` the checkpointer
        catches up, a pass every ``CATCH_UP_INTERVAL_S``, until at most ``HANDOFF_FRAMES``
        are left; then the writer thread copies those between two transactions, and its next
        transaction writes the WAL from its beginning, over pages the kernel has cached.
        """
        db = connect(self.path, cache_mb=1)
        try:
            page_size = int(db.execute("PRAGMA page_size").fetchone()[0])
            interval = CHECKPOINT_INTERVAL_S
            while not self._stop.wait(interval):
                try:
                    busy, frames, copied = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                except sqlite3.OperationalError:
                    continue  # busy: try again next time
                interval = CHECKPOINT_INTERVAL_S
                if busy or frames * page_size < WAL_RESET_BYTES:
                    continue
                if frames - copied <= HANDOFF_FRAMES or frames * page_size >= WAL_SIZE_LIMIT:
                    self._finish_checkpoint.set()
                else:
                    interval = CATCH_UP_INTERVAL_S
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error:
            return
        finally:
            db.close()

    def _finish_wal(self, conn: sqlite3.Connection) -> None:
        """Copy what the checkpointer left of a large WAL (between two transactions, so no
        write runs beside it and it copies everything), letting the next transaction start
        the WAL over. A failure (another process checkpointing) is left for the next try."""
        self._finish_checkpoint.clear()
        with contextlib.suppress(sqlite3.Error):
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()

    def _write_loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            fn, args, future = item
            if not future.set_running_or_notify_cancel():
                continue
            conn = self._writer_db.conn
            if self._finish_checkpoint.is_set():
                self._finish_wal(conn)
            changes = conn.total_changes
            try:
                # IMMEDIATE takes the write lock first (waiting up to busy_timeout): a deferred
                # transaction that read before writing would fail at once with "database is
                # locked" if another process (a CLI sync) committed in between.
                conn.execute("BEGIN IMMEDIATE")
                result = fn(self._writer_db, *args)
                conn.commit()
            except BaseException as exc:
                _rollback(conn)
                self.writability.failed(exc)
                future.set_exception(exc)
            else:
                if conn.total_changes != changes:  # a commit that wrote nothing proves nothing
                    self.writability.wrote(fn)
                future.set_result(result)

    def submit(self, fn: Callable[..., T], *args: Any, urgent: bool = False) -> Future[T]:
        """Queue ``fn(db, *args)`` to run in one transaction on the writer thread.

        :param urgent: someone waits on it now (a webhook group commit): it goes before
            regular work, within the fairness bound of :class:`WriteQueue`.
        """
        if self._closed:
            raise StoreError("the store is closed")
        future: Future[T] = Future()
        self._queue.put((fn, args, future), urgent)
        return future

    def urgent_recently(self) -> bool:
        """Whether urgent work (webhook commits) went through the writer within the last
        ``URGENT_RECENT_S``: then long regular items would keep it waiting."""
        return time.monotonic() - self._queue.last_urgent < URGENT_RECENT_S

    async def write(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(db, *args)`` in one transaction on the writer thread and return its result."""
        return await asyncio.wrap_future(self.submit(fn, *args))

    async def check_integrity(self, budget_s: float | None = None) -> Integrity:
        """Run the integrity check again on a reader (for ``budget_s`` at most, default: to
        the end) and keep its outcome in :attr:`integrity`."""
        self.integrity = await self.read(lambda db: quick_check(db.conn, budget_s))
        return self.integrity

    def _reader(self) -> sqlite_utils.Database:
        db: sqlite_utils.Database | None = getattr(self._local, "db", None)
        if db is None:
            db = connect(self.path)
            self._local.db = db
            with self._reader_lock:
                self._readers.append(db)
        return db

    def read_sync(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(db, *args)`` on this thread's reader connection (blocking)."""
        return fn(self._reader(), *args)

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(db, *args)`` on a reader thread and return its result."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self.read_sync, fn, *args)

    def close(self) -> None:
        """Finish queued writes, stop the writer and close every connection."""
        if self._closed:
            return
        self._closed = True
        self._queue.stop()
        self._writer.join()
        self._stop.set()
        self._checkpointer.join()
        self._pool.shutdown(wait=True)
        with self._reader_lock:
            for db in self._readers:
                db.close()
        self._writer_db.close()
