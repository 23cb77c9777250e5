"""Opening the SQLite database: checks, pragmas, migrations, and one writer thread.

Writes go through one thread fed by a queue (as datasette does), so the event loop never
waits for SQLite's lock and this process's writes never contend with each other (another
process, such as a CLI sync, waits for the lock up to ``busy_timeout``); reads run on a small
pool with their own connections (WAL lets them proceed beside the writer). The one exception
is :meth:`Database.write_now`: a short write the event loop makes itself when the lock is free
at that instant, for the webhook path, where a hop to another thread costs more than the SQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import fcntl
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import sqlite_utils

from hub.errors import StoreError
from hub.store.schema import apply_migrations

T = TypeVar("T")

CHECKPOINT_INTERVAL_S = 1.0
WAL_RESTART_BYTES = 1024 * 1024 * 1024
WAL_RESTART_WAIT_MS = 100
"""How long a restarting checkpoint waits for readers (writers wait meanwhile)."""
WAL_RESTART_BACKOFF_S = 60.0
"""After a restart that readers kept from finishing, the next try waits this long."""
WRITE_TURN_TIMEOUT_S = 30.0
TURN_RETRY_MIN_S = 0.0001
TURN_RETRY_MAX_S = 0.001
WRITER_CACHE_MB = 16


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
        db.execute("PRAGMA journal_size_limit=67108864")  # whoever restarts the WAL: 64 MB
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


_LIBC = ctypes.PyDLL(None, use_errno=True)
"""The C library, called with the GIL held (``PyDLL``): only for calls that never block."""


class WriteTurn:
    """Whose turn it is to write among the connections of every hub process on one database:
    an exclusive ``flock`` on ``<database>.write-lock``, taken around each write transaction.

    SQLite's own write lock has no queue: a connection that finds it taken sleeps 1, 2, 5, ...
    up to 100 ms between tries, while one that tries again at once takes it the moment it is
    free. With ingest workers beside the daemon, a group commit waiting that way starved for
    hundreds of milliseconds. A writer waiting for the turn tries again every 0.1 to 1 ms
    (at most ``WRITE_TURN_TIMEOUT_S``); there is no queue either, but no wait grows long.
    Each holder opens the file itself: locks of one open file would not exclude each other.

    Taking a free turn and giving it back call ``flock`` through :data:`_LIBC`, keeping the
    GIL (a non-blocking ``flock`` returns at once): ``fcntl.flock`` releases it, and the event
    loop's thread then kept it for its switch interval twice per transaction, which made
    syncs 10-15% slower. Only waiting for a taken turn releases the GIL.
    """

    def __init__(self, database: Path) -> None:
        path = f"{database}.write-lock"
        try:
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise StoreError(f"{path}: cannot open: {exc.strerror}") from None

    def take_now(self) -> bool:
        """Take the turn if nobody has it; False if somebody does."""
        while _LIBC.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB) != 0:
            error = ctypes.get_errno()
            if error in (errno.EWOULDBLOCK, errno.EAGAIN):
                return False
            if error != errno.EINTR:
                raise OSError(error, os.strerror(error))
        return True

    def take(self, timeout: float | None = None) -> None:
        """Wait for the turn, at most ``timeout`` seconds (as long as SQLite's busy timeout),
        and take it. Waiting tries again every fraction of a millisecond, then every
        millisecond: a writer done with it has given it up by then.

        :param timeout: default ``WRITE_TURN_TIMEOUT_S``.
        :raise StoreError: still taken after ``timeout`` (a hub process stopped mid-write).
        """
        timeout = WRITE_TURN_TIMEOUT_S if timeout is None else timeout
        deadline = time.monotonic() + timeout
        pause = TURN_RETRY_MIN_S
        while not self.take_now():
            if time.monotonic() >= deadline:
                raise StoreError(
                    f"waited {timeout:g} s for the database's write turn: another hub process "
                    "is stuck in a write"
                )
            time.sleep(pause)
            pause = min(pause * 2, TURN_RETRY_MAX_S)

    def give(self) -> None:
        """Give the turn back."""
        _LIBC.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        """Close the lock file (giving the turn back if held)."""
        os.close(self._fd)


class WriteBusy(Exception):
    """:meth:`Database.write_now` found SQLite's write lock taken; nothing was written."""


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None) or 0
    return code & 0xFF in {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED}  # extended codes too


class Database:
    """The hub's database: one writer thread, a pool of readers, migrations applied at open."""

    def __init__(self, path: Path, synchronous: str = "normal", checkpoints: bool = True) -> None:
        """Open (creating and migrating) the database; ``synchronous`` applies to the writer:
        ``normal`` survives a process crash, ``full`` also a power cut. ``checkpoints=False``
        leaves copying the WAL back to another process (the daemon does it for its ingest
        workers: two checkpointers on one WAL doubled the I/O and stalled commits)."""
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"{path.parent}: cannot create folder: {exc.strerror}") from None
        self._writer_db = connect(path, cache_mb=WRITER_CACHE_MB)
        self._writer_db.execute("PRAGMA wal_autocheckpoint=0")
        self._writer_db.execute(
            f"PRAGMA synchronous={'FULL' if synchronous == 'full' else 'NORMAL'}"
        )
        try:
            self.applied_migrations = apply_migrations(self._writer_db)
        except sqlite3.DatabaseError as exc:
            self._writer_db.close()
            raise StoreError(f"{path}: cannot migrate database: {exc}") from None
        self._thread_turn = WriteTurn(path)
        self._loop_turn = WriteTurn(path)
        self._queue: queue.SimpleQueue[
            tuple[Callable[..., Any], tuple[Any, ...], Future[Any]] | None
        ] = queue.SimpleQueue()
        self._writer = threading.Thread(
            target=self._write_loop, name="hub-store-writer", daemon=True
        )
        self._writer.start()
        self._stop = threading.Event()
        self._checkpointer: threading.Thread | None = None
        if checkpoints:
            self._checkpointer = threading.Thread(
                target=self._checkpoint_loop, name="hub-store-checkpoint", daemon=True
            )
            self._checkpointer.start()
        self._local = threading.local()
        self._readers: list[sqlite_utils.Database] = []
        self._reader_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="hub-store-reader")
        self._immediate_db: sqlite_utils.Database | None = None
        self.waits_for_disk = synchronous == "full"
        """Commits fsync (``synchronous = full``): too slow for :meth:`write_now`."""
        self._closed = False

    def _checkpoint_loop(self) -> None:
        """Copy the WAL back into the database off the writer's path, once a second.

        The writer never checkpoints itself (``wal_autocheckpoint=0``): a checkpoint's fsyncs
        would otherwise stall the commit that many waiting webhook requests depend on. The WAL
        starts over by itself once a checkpoint has caught up with the writers; under writes
        that never pause it would grow without end, so past ``WAL_RESTART_BYTES`` a
        checkpoint that makes writers wait for it (a moment) starts it over. That checkpoint
        also waits for readers of older snapshots, at most ``WAL_RESTART_WAIT_MS`` (writers
        wait with it); if one is still reading, the next try is ``WAL_RESTART_BACKOFF_S``
        later.
        """
        db = connect(self.path, cache_mb=1)
        restart_after = 0.0
        try:
            db.execute(f"PRAGMA busy_timeout={WAL_RESTART_WAIT_MS}")
            page_size = int(db.execute("PRAGMA page_size").fetchone()[0])
            while not self._stop.wait(CHECKPOINT_INTERVAL_S):
                try:
                    _, frames, _ = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    if frames * page_size > WAL_RESTART_BYTES and time.monotonic() > restart_after:
                        busy, _, _ = db.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
                        if busy:
                            restart_after = time.monotonic() + WAL_RESTART_BACKOFF_S
                except sqlite3.OperationalError:
                    continue  # busy: try again next time
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error:
            return
        finally:
            db.close()

    def _write_loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            fn, args, future = item
            if not future.set_running_or_notify_cancel():
                continue
            conn = self._writer_db.conn
            taken = False
            try:
                self._thread_turn.take()
                taken = True
                # IMMEDIATE takes the write lock first (waiting up to busy_timeout): a deferred
                # transaction that read before writing would fail at once with "database is
                # locked" if another connection (the event loop's, another process's)
                # committed in between.
                conn.execute("BEGIN IMMEDIATE")
                result = fn(self._writer_db, *args)
                conn.commit()
            except BaseException as exc:
                _rollback(conn)
                future.set_exception(exc)
            else:
                future.set_result(result)
            finally:
                if taken:
                    self._thread_turn.give()

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        """Queue ``fn(db, *args)`` to run in one transaction on the writer thread."""
        if self._closed:
            raise StoreError("the store is closed")
        future: Future[T] = Future()
        self._queue.put((fn, args, future))
        return future

    def write_now(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(db, *args)`` in one transaction on the calling thread, without waiting.

        For short writes from the event loop. Never waits for SQLite's lock: if another
        connection (the writer thread, another process) holds it, nothing is written and
        :class:`WriteBusy` is raised, so the caller can hand the work to :meth:`submit`.
        """
        if self._closed:
            raise StoreError("the store is closed")
        db = self._immediate_db
        if db is None:
            db = self._immediate_db = connect(self.path, cache_mb=WRITER_CACHE_MB)
            db.conn.isolation_level = None  # transactions are begun and ended here
            db.execute("PRAGMA busy_timeout=0")
            db.execute("PRAGMA wal_autocheckpoint=0")
        if not self._loop_turn.take_now():
            raise WriteBusy("another connection is writing")
        conn = db.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            result = fn(db, *args)
            conn.execute("COMMIT")
        except BaseException as exc:
            _rollback(conn)
            if isinstance(exc, sqlite3.OperationalError) and _is_busy(exc):
                raise WriteBusy(str(exc)) from None
            raise
        finally:
            self._loop_turn.give()
        return result

    async def write(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(db, *args)`` in one transaction on the writer thread and return its result."""
        return await asyncio.wrap_future(self.submit(fn, *args))

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
        self._queue.put(None)
        self._writer.join()
        self._stop.set()
        if self._checkpointer is not None:
            self._checkpointer.join()
        self._pool.shutdown(wait=True)
        with self._reader_lock:
            for db in self._readers:
                db.close()
        self._writer_db.close()
        if self._immediate_db is not None:
            self._immediate_db.close()
        self._thread_turn.close()
        self._loop_turn.close()
