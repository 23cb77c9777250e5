"""A test plugin for the crash test: an idempotent ``event`` handler that records each
generic webhook event once (by its provider id) in its own SQLite file, named by the
RECORDER_DB environment variable, and logs every call (duplicates included)."""

from __future__ import annotations

import os
import sqlite3

from hub.hookspecs import hookimpl
from hub.model import HubEvent


@hookimpl
def event(event: HubEvent) -> None:
    """Record the event id (idempotent) and count the call."""
    if event.source != "generic":
        return
    conn = sqlite3.connect(os.environ["RECORDER_DB"], timeout=30)
    try:
        with conn:
            conn.execute("CREATE TABLE IF NOT EXISTS seen (id TEXT PRIMARY KEY)")
            conn.execute("CREATE TABLE IF NOT EXISTS calls (id TEXT)")
            conn.execute("INSERT OR IGNORE INTO seen (id) VALUES (?)", [event.id])
            conn.execute("INSERT INTO calls (id) VALUES (?)", [event.id])
    finally:
        conn.close()
