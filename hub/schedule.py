"""The scheduler: APScheduler's AsyncIOScheduler in the daemon's loop.

Jobs: one sync per connection (the plugin's default interval, overridable with
``integrations.NAME.sync_interval`` as seconds or a cron expression), the health checks and
the alert reminders. Every job coalesces missed runs, runs one instance at a time, and has a
misfire grace time. A connection's scheduled syncs are skipped while its state is in backoff
(see :mod:`hub.connection_state`); its next run then is the first one after the backoff.
"""

from __future__ import annotations

import asyncio
import functools
import re
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from hub.errors import ConfigError, SyncBusyError

if TYPE_CHECKING:
    from apscheduler.job import Job

    from hub.core import Hub

log = structlog.get_logger("hub.schedule")


def trigger_for(interval: int | str) -> BaseTrigger:
    """An interval trigger for seconds (``3600`` or ``"3600"``), else a five-field cron one.

    :raise ConfigError: neither a positive number nor a valid cron expression.
    """
    text = str(interval).strip()
    if re.fullmatch(r"[+-]?[0-9]+", text):  # ASCII only: int() rejects "²", isdigit() does not
        seconds = int(text)
        if seconds <= 0:
            raise ConfigError(f"sync_interval must be positive seconds, got {interval!r}")
        try:
            return IntervalTrigger(seconds=seconds)
        except OverflowError:
            raise ConfigError(f"sync_interval {interval!r} is too large") from None
    try:
        return CronTrigger.from_crontab(text)
    except ValueError as exc:
        raise ConfigError(f"sync_interval {interval!r} is not seconds or cron: {exc}") from None


class Scheduler:
    """Owns the AsyncIOScheduler and the hub's jobs."""

    def __init__(self, hub: Hub) -> None:
        self._hub = hub
        grace = hub.settings.sync.misfire_grace_time
        self.scheduler = AsyncIOScheduler(
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": grace},
            timezone="UTC",
        )
        self.running = False

    async def start(self) -> None:
        """Add the jobs and start the scheduler in the running loop."""
        hub = self._hub
        for connection in await hub.connections():
            self.add_sync_job(connection.id, connection.integration)
        health = hub.settings.health
        self.scheduler.add_job(
            _until_shutdown(hub.health.check_all),
            IntervalTrigger(seconds=health.interval),
            id="health",
            name="health checks",
            next_run_time=datetime.now().astimezone(),
        )
        self.scheduler.add_job(
            _until_shutdown(hub.health.send_reminders),
            IntervalTrigger(seconds=min(health.reminder_interval, 3600)),
            id="alert-reminders",
            name="alert reminders",
        )
        self.scheduler.add_job(
            _until_shutdown(self._prune_inbox),
            IntervalTrigger(hours=6),
            id="inbox-prune",
            name="inbox pruning",
        )
        self.scheduler.add_job(
            _until_shutdown(self._prune_history),
            IntervalTrigger(hours=6),
            id="history-prune",
            name="run and health history pruning",
        )
        self.scheduler.add_job(
            _until_shutdown(self._sweep_runs),
            IntervalTrigger(minutes=1),
            id="runs-sweep",
            name="stale run sweep",
        )
        self.scheduler.start()
        self.running = True

    def add_sync_job(self, connection_id: str, integration: str) -> None:
        """Schedule (or reschedule) the periodic sync of one connection (none when its
        integration is disabled)."""
        if self._hub.disabled(integration):
            return
        settings = self._hub.settings_for(integration)
        interval = getattr(settings, "sync_interval", None) or (
            self._hub.plugins.integrations[integration].default_sync_interval
        )
        if not interval:
            return
        self._hub.states.get(connection_id).scheduled(str(interval))
        self.scheduler.add_job(
            self._sync,
            trigger_for(interval),
            args=[connection_id],
            id=f"sync:{connection_id}",
            name=f"sync {connection_id}",
            replace_existing=True,
        )

    def remove_sync_job(self, connection_id: str) -> None:
        """Stop scheduling syncs of a connection (it was removed); no-op if none is scheduled."""
        if self.scheduler.get_job(f"sync:{connection_id}") is not None:
            self.scheduler.remove_job(f"sync:{connection_id}")
        self._hub.states.get(connection_id).scheduled(None)

    def next_sync_at(self, connection_id: str) -> str | None:
        """When the connection syncs next on schedule (ISO 8601), after its backoff if it is
        in one; None if it is not scheduled."""
        job = self.scheduler.get_job(f"sync:{connection_id}")
        return self._next_run(job) if job is not None else None

    def _next_run(self, job: Job) -> str | None:
        next_run: datetime | None = job.next_run_time
        if job.id.startswith("sync:") and next_run is not None:
            retry_at = self._hub.states.get(job.id.removeprefix("sync:")).retry_at
            if retry_at is not None and next_run < retry_at:
                next_run = job.trigger.get_next_fire_time(None, retry_at)
        return next_run.isoformat() if next_run is not None else None

    async def _sync(self, connection_id: str) -> None:
        state = self._hub.states.get(connection_id)
        if state.in_backoff():
            log.debug("scheduled sync skipped: backoff", connection=connection_id)
            return
        try:
            await self._hub.engine.run(connection_id, trigger="schedule")
        except SyncBusyError as exc:
            log.info("scheduled sync skipped", connection=connection_id, reason=str(exc))
        except asyncio.CancelledError:  # the daemon is stopping; the run is recorded cancelled
            log.info("scheduled sync stopped by shutdown", connection=connection_id)
        except LookupError as exc:
            log.warning("scheduled sync skipped", connection=connection_id, reason=str(exc))

    async def _sweep_runs(self) -> None:
        """Runs whose process is gone (a ``sync`` command killed meanwhile) become interrupted."""
        swept = await self._hub.store.runs.mark_interrupted()
        if swept:
            log.warning("runs of a stopped process marked interrupted", runs=swept)

    async def _prune_inbox(self) -> None:
        days = self._hub.settings.webhooks.retention_days
        events, requests = await self._hub.store.inbox.prune(days)
        if events or requests:
            log.info("inbox pruned", events=events, requests=requests, older_than_days=days)

    async def _prune_history(self) -> None:
        days = self._hub.settings.store.history_days
        runs = await self._hub.store.runs.prune(days)
        changes, alerts = await self._hub.store.health.prune(days)
        if runs or changes or alerts:
            log.info(
                "history pruned",
                runs=runs,
                health_changes=changes,
                alerts=alerts,
                older_than_days=days,
            )

    def jobs(self) -> list[dict[str, Any]]:
        """Every job with its next run time (ISO 8601; a sync's after its backoff), for
        ``/api/status``."""
        return [
            {"id": job.id, "name": job.name, "next_run_at": self._next_run(job)}
            for job in self.scheduler.get_jobs()
        ]

    def shutdown(self) -> None:
        """Stop scheduling new runs (running ones are the engine's to finish)."""
        if self.running:
            self.scheduler.shutdown(wait=False)
            self.running = False


def _until_shutdown(job: Callable[[], Awaitable[object]]) -> Callable[[], Awaitable[None]]:
    """``job``, ending quietly when the daemon stops while it runs (a cancelled job is not a
    failure to report with a traceback)."""

    @functools.wraps(job)
    async def run() -> None:
        try:
            await job()
        except asyncio.CancelledError:
            log.debug("scheduled job stopped by shutdown", job=getattr(job, "__name__", "job"))

    return run
