"""Whether the database can be written: what the writer thread last saw, and a probe.

The store's one writer thread runs every write, so it sees every failure. An error saying
the database cannot be written (disk full, read-only file or mount, I/O error, damaged file)
marks the store unwritable; the next write that commits a change clears the mark. When
nothing has been written for ``PROBE_AFTER_S``, :meth:`Writability.check` (``/readyz``)
writes one ``meta`` row to find out, one probe at a time. A probe does not clear a full
disk: its one small page may still fit where the hub's next batch does not, so only one of
the hub's own writes does.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import sqlite_utils

from hub.store.clock import utcnow

if TYPE_CHECKING:
    from hub.store.database import Database

UNWRITABLE = frozenset(
    {
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_READONLY,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_CANTOPEN,
        sqlite3.SQLITE_PERM,
        sqlite3.SQLITE_CORRUPT,
        sqlite3.SQLITE_NOTADB,
    }
)
"""SQLite's primary result codes that say the database file cannot be written."""
PROBE_AFTER_S = 5.0
"""A write outcome younger than this answers ``/readyz`` without a probe."""
PROBE_WAIT_S = 1.0
"""How long ``/readyz`` waits for its probe (the writer may be busy with a batch)."""
PROBE_KEY = "write_probe"


def unwritable(exc: BaseException) -> bool:
    """True if ``exc`` is SQLite saying that the database file cannot be written."""
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(exc, sqlite3.Error) and code is not None and code & 0xFF in UNWRITABLE


def write_probe(db: sqlite_utils.Database) -> None:
    """The probe: one ``meta`` row holding the time, written on the writer thread."""
    db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", [PROBE_KEY, utcnow()])


class Writability:
    """The outcome of the database's last write, as the writer thread reports it."""

    def __init__(self) -> None:
        self._failure: tuple[int, str] | None = None
        """(SQLite primary result code, message) of the write that found it unwritable."""
        self._seen_at = float("-inf")
        """When a write last committed a change or failed for an unwritable file."""
        self._probing: asyncio.Event | None = None

    @property
    def failure(self) -> str | None:
        """Why the database cannot be written (SQLite's message), or None."""
        return None if self._failure is None else self._failure[1]

    def wrote(self, fn: Callable[..., Any]) -> None:
        """(writer thread) A transaction running ``fn`` committed a change."""
        self._seen_at = time.monotonic()
        full = self._failure is not None and self._failure[0] == sqlite3.SQLITE_FULL
        if not (full and fn is write_probe):
            self._failure = None

    def failed(self, exc: BaseException) -> None:
        """(writer thread) A transaction failed with ``exc``: unwritable if SQLite says so."""
        if unwritable(exc):
            self._failure = (getattr(exc, "sqlite_errorcode", 0) & 0xFF, str(exc))
            self._seen_at = time.monotonic()

    async def check(self, db: Database) -> str | None:
        """Why ``db`` cannot be written, or None; first a probe when none of its writes was
        seen for ``PROBE_AFTER_S`` (waiting for it ``PROBE_WAIT_S`` at most).

        :raise StoreError: the store is closed.
        """
        if self._probing is None and time.monotonic() - self._seen_at >= PROBE_AFTER_S:
            loop = asyncio.get_running_loop()
            probe = db.submit(write_probe)
            finished = self._probing = asyncio.Event()
            probe.add_done_callback(lambda _: loop.call_soon_threadsafe(finished.set))
        probing = self._probing
        if probing is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(probing.wait(), PROBE_WAIT_S)
            if probing.is_set() and self._probing is probing:
                self._probing = None
        return self.failure
