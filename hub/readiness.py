"""Readiness: what keeps the hub from doing its job, for ``/readyz`` and ``advisoros-hub check``.

The hub is ready when its database answers, can be written and passed its integrity check,
the scheduler runs and no plugin failed to load. Each problem is one line naming its part.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hub.core import Hub
    from hub.schedule import Scheduler
    from hub.store.database import Database


async def database_problems(db: Database) -> list[str]:
    """Why ``db`` cannot serve the hub: it does not answer, cannot be written, or is damaged."""
    problems = []
    try:
        await db.read(lambda conn: conn.execute("SELECT 1").fetchone())
        unwritable = await db.writability.check(db)
    except Exception as exc:  # whatever the database (or a closed store) says is the reason
        return [f"database: {exc}"]
    if unwritable is not None:
        problems.append(f"database: cannot be written: {unwritable}")
    if db.integrity.ok is False:
        problems.append(f"database: damaged: {db.integrity.detail}")
    return problems


async def unready_reasons(hub: Hub, scheduler: Scheduler | None) -> list[str]:
    """Every reason the hub is not ready (none: ready)."""
    reasons = await database_problems(hub.store.db)
    if scheduler is not None and not scheduler.running:
        reasons.append("scheduler: not running")
    reasons += [f"plugin {info.name}: {info.error}" for info in hub.plugins.failed]
    return reasons
