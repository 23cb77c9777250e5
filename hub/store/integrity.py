"""A quick integrity check of the database (``PRAGMA quick_check``), bounded in time.

``quick_check`` reads every page of every table and index and checks the b-trees (not that
each index matches its table, which the full ``integrity_check`` does at many times the
cost), so its time grows with the file. The daemon runs it when it opens the database with
``START_BUDGET_S`` to spend: a larger database is checked in part, and the log says so;
``advisoros-hub check`` checks it whole.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass

START_BUDGET_S = 2.0
"""Seconds the check may take when the store opens (about 2 GB of a warm database)."""
MAX_PROBLEMS = 5
"""Problems listed at most (a damaged page often yields many)."""
INTERRUPT_EVERY_S = 0.01
"""Once the budget is spent, how often the check is told to stop until it has."""


@dataclass(frozen=True)
class Integrity:
    """The outcome of a check: ``ok`` True or False, or None if it ran out of time."""

    ok: bool | None
    detail: str


def quick_check(conn: sqlite3.Connection, budget_s: float | None) -> Integrity:
    """Run ``PRAGMA quick_check`` on ``conn``, stopping it after ``budget_s`` (None: no
    limit). A watchdog thread interrupts it: SQLite calls no progress handler while it
    walks the b-trees, which is most of the work."""
    finished = threading.Event()
    watchdog = None
    if budget_s is not None:
        watchdog = threading.Thread(
            target=_interrupt_after, args=(conn, budget_s, finished), name="hub-store-check"
        )
        watchdog.start()
    try:
        rows = conn.execute(f"PRAGMA quick_check({MAX_PROBLEMS})").fetchall()
    except sqlite3.DatabaseError as exc:
        if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_INTERRUPT:
            return Integrity(None, f"not finished in {budget_s} s: run advisoros-hub check")
        return Integrity(False, str(exc))  # "database disk image is malformed"
    finally:
        finished.set()
        if watchdog is not None:
            watchdog.join()
    problems = [
        line
        for row in rows
        for line in str(row[0]).splitlines()
        if line.strip() and not line.startswith("*** in database")  # a heading, not a problem
    ]
    if problems == ["ok"]:
        return Integrity(True, "ok")
    return Integrity(False, "; ".join(problems))  # one line


def _interrupt_after(conn: sqlite3.Connection, budget_s: float, finished: threading.Event) -> None:
    """Interrupt ``conn`` once ``budget_s`` is spent, again and again until ``finished`` (an
    interrupt while no statement runs does nothing, so it cannot stop the next one)."""
    if finished.wait(budget_s):
        return
    while True:
        conn.interrupt()
        if finished.wait(INTERRUPT_EVERY_S):
            return
