"""One state per connection: its schedule, running sync, last success and error, failures and
backoff, needs-reauthentication and health (Home Assistant's ``DataUpdateCoordinator`` is the
model).

The sync engine, the health checks and webhook handling write a :class:`ConnectionState`
through its methods; ``/api/status``, the admin page and plugins read a frozen
:class:`~hub.model.ConnectionStatus` copy of it (``hub.connection_state(connection_id)``).

A connection is *failing* from its first failed sync, or from the first refusal of its
credentials, until a sync succeeds (and a refusal is answered by a sync or health check that
works). Starting to fail is logged once as an error, recovering once; failures in between are
logged at debug level. After ``n`` failed syncs in a row, scheduled syncs wait
:func:`backoff_for` ``(n)`` seconds from the last failure; manual ones run at once.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import structlog

from hub.errors import AuthenticationError
from hub.model import (
    ConnectionStatus,
    ErrorInfo,
    HealthCheck,
    HealthReport,
    HealthStatus,
    RunProgress,
)
from hub.store.clock import parse, utcnow

if TYPE_CHECKING:
    from hub.store import ConnectionRow, Store
    from hub.store.runs import SyncRecord
    from hub.sync_pass import SyncProgress

log = structlog.get_logger("hub.connection")

BACKOFF_BASE_S = 60.0
"""Backoff after the first failed sync; it doubles with each further failure."""
BACKOFF_MAX_S = 4 * 3600.0
"""Backoff never exceeds this: a connection that keeps failing is still tried every 4 h."""


def backoff_for(failures: int) -> float:
    """Seconds scheduled syncs wait after ``failures`` failed syncs in a row (0 for none)."""
    if failures <= 0:
        return 0.0
    return float(min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** min(failures - 1, 32)))


class ConnectionState:
    """What the hub knows about one connection now; its writers call its methods."""

    def __init__(self, connection_id: str) -> None:
        self.connection_id = connection_id
        self.integration = connection_id.split(":", 1)[0]
        self.health: HealthStatus | None = None
        self.health_message = ""
        self.checks: tuple[HealthCheck, ...] = ()
        self.checked_at: str | None = None
        self.schedule: str | None = None
        self.last_success_at: str | None = None
        self.last_error: ErrorInfo | None = None
        self.failures = 0
        self.needs_reauth = False
        self._run: RunProgress | None = None
        self._progress: SyncProgress | None = None

    # ------------------------------------------------------------------ reading

    @property
    def failing(self) -> bool:
        """True from a failed sync or refused credentials until the connection recovers."""
        return self.failures > 0 or self.needs_reauth

    @property
    def retry_at(self) -> datetime | None:
        """Scheduled syncs do not run before this time (None: they run on schedule)."""
        if self.failures == 0 or self.last_error is None:
            return None
        return parse(self.last_error.at) + timedelta(seconds=backoff_for(self.failures))

    def in_backoff(self) -> bool:
        """True while scheduled syncs wait for :attr:`retry_at`."""
        retry_at = self.retry_at
        return retry_at is not None and datetime.now(UTC) < retry_at

    def status(self, next_run_at: str | None, health_interval: float) -> ConnectionStatus:
        """A frozen copy, with the scheduler's ``next_run_at`` and whether a sync within the
        last ``health_interval`` seconds proved the connection works."""
        success = parse(self.last_success_at) if self.last_success_at else None
        recent = success is not None and datetime.now(UTC) - success < timedelta(
            seconds=health_interval
        )
        retry_at = self.retry_at
        return ConnectionStatus(
            connection_id=self.connection_id,
            health=self.health,
            health_message=self.health_message,
            checks=self.checks,
            checked_at=self.checked_at,
            schedule=self.schedule,
            next_run_at=next_run_at,
            running=self._running(),
            last_success_at=self.last_success_at,
            last_error=self.last_error,
            consecutive_failures=self.failures,
            backoff_s=backoff_for(self.failures),
            retry_at=retry_at.isoformat() if retry_at else None,
            needs_reauth=self.needs_reauth,
            proven_by_sync=recent and not self.failing,
        )

    def _running(self) -> RunProgress | None:
        run, progress = self._run, self._progress
        if run is None or progress is None:
            return run
        return replace(
            run,
            stream=progress.stream,
            records=progress.records,
            batches=progress.batches,
            rate=round(progress.rate, 1),
        )

    # ------------------------------------------------------------------ the scheduler and restarts

    def scheduled(self, interval: str | None) -> None:
        """The scheduler syncs the connection every ``interval`` (seconds or a cron
        expression) from now on; None: it no longer does."""
        self.schedule = interval

    def restore(self, row: ConnectionRow, record: SyncRecord | None) -> None:
        """Take up what the store remembers: the connection's status and its sync record."""
        self.health = HealthStatus(row.status) if row.status else None
        self.health_message = row.status_message
        if record is not None:
            self.last_success_at, self.failures = record.last_success_at, record.failures
            failure = record.last_failure
            if failure is not None:
                self.last_error = ErrorInfo(
                    failure["error_class"] or "internal",
                    failure["error"] or "",
                    failure["finished_at"],
                )
        refused = self.last_error is not None and self.last_error.error_class == _AUTH
        self.needs_reauth = refused or self.health is HealthStatus.DISCONNECTED

    # ------------------------------------------------------------------ the engine

    def run_queued(self, run_id: int, trigger: str) -> None:
        """A sync was recorded and waits for a slot."""
        self._run = RunProgress(run_id=run_id, trigger=trigger, state="queued", started_at=utcnow())
        self._progress = None

    def run_began(self, progress: SyncProgress) -> None:
        """The queued sync got its slot; ``progress`` is updated by the engine as it runs."""
        if self._run is not None:
            self._run = replace(self._run, state="running")
        self._progress = progress

    def run_ended(self, outcome: str, at: str, error: ErrorInfo | None) -> None:
        """A sync ended at ``at``: ``succeeded``, ``failed`` (with ``error``) or ``cancelled``."""
        self._run = self._progress = None
        if outcome == "succeeded":
            self._changed(self.failing, success_at=at)
        elif outcome == "failed" and error is not None:
            was_failing = self.failing
            self.failures += 1
            self.last_error = error
            self.needs_reauth = self.needs_reauth or error.error_class == _AUTH
            self._changed(was_failing)

    # ------------------------------------------------------------------ health and webhooks

    def health_checked(self, report: HealthReport) -> None:
        """A health report was decided: ``disconnected`` means the credentials were refused,
        ``healthy`` or ``warning`` that they work; ``error`` (a timeout, a provider fault)
        says nothing of them, so it leaves needs-reauthentication as it was."""
        was_failing = self.failing
        self.health, self.health_message = report.status, report.message
        self.checks = tuple(report.checks)
        self.checked_at = utcnow()
        if report.status is HealthStatus.DISCONNECTED:
            self.needs_reauth = True
        elif report.status is not HealthStatus.ERROR:
            self.needs_reauth = False
        self._changed(was_failing)

    def credentials_refused(self, error: ErrorInfo) -> None:
        """The provider refused the credentials outside a sync (a webhook's handling)."""
        was_failing = self.failing
        self.last_error, self.needs_reauth = error, True
        self._changed(was_failing)

    def reconnected(self) -> None:
        """New credentials were saved by a connect flow: no longer waiting for a person, and a
        failure that the old credentials caused no longer holds scheduled syncs back (the
        next sync or health check decides how the connection is)."""
        if not self.needs_reauth:
            return
        self.needs_reauth = False
        if self.last_error is not None and self.last_error.error_class == _AUTH:
            self.last_error, self.failures = None, 0
        log.info(
            "connection re-authenticated",
            integration=self.integration,
            connection=self.connection_id,
        )

    def _changed(self, was_failing: bool, success_at: str | None = None) -> None:
        """Apply a success, then log the change between working and failing, once."""
        if success_at is not None:
            self.last_success_at, self.last_error = success_at, None
            self.failures, self.needs_reauth = 0, False
        keys = {"integration": self.integration, "connection": self.connection_id}
        if self.failing and not was_failing:
            # a plugin's health hook may report ``disconnected`` itself, without raising
            error = self.last_error or ErrorInfo(_AUTH, self.health_message, utcnow())
            log.error(
                "connection failing",
                error_class=error.error_class,
                error=error.message,
                advice=error.advice,
                **keys,
            )
        elif was_failing and not self.failing:
            log.info("connection recovered", **keys)
        elif self.failing:
            log.debug("connection still failing", consecutive_failures=self.failures, **keys)


_AUTH = AuthenticationError.error_class


class ConnectionStates:
    """Every connection's :class:`ConnectionState`, created on first use."""

    def __init__(self) -> None:
        self._states: dict[str, ConnectionState] = {}

    def get(self, connection_id: str) -> ConnectionState:
        """The state of ``connection_id`` (a fresh one if nothing is known yet)."""
        state = self._states.get(connection_id)
        if state is None:
            state = self._states[connection_id] = ConnectionState(connection_id)
        return state

    def forget(self, connection_id: str) -> None:
        """Drop the state of a removed connection."""
        self._states.pop(connection_id, None)

    async def load(self, store: Store) -> None:
        """Restore what must survive a restart: health from the stored connections; last
        success, last error, failures and needs-reauthentication from the stored runs."""
        records = await store.runs.sync_records()
        for row in await store.connections.list():
            self.get(row.id).restore(row, records.get(row.id))
