"""The analysis queue: analyses run in the background, at most ``concurrency`` at once, with
at most ``queue_size`` more waiting (bounded: past it :class:`QueueFull`, answered 503 with
``Retry-After``), one at a time per document (:class:`AlreadyRunning`, answered 409).

The integration declares no streams, so there is nothing for the sync engine to read: this
is the plugin's background work. Stopping cancels what is queued or running; the analyses'
rows say so at the next start (:func:`plugins.openai.analysis.recover`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog

log = structlog.get_logger("plugins.openai")


class AlreadyRunning(Exception):
    """The document has an analysis queued or running."""


class QueueFull(Exception):
    """Every slot and queue place is taken."""


@dataclass(frozen=True)
class Job:
    """One analysis to run."""

    analysis_id: str
    document_id: str
    kind: str | None
    """The document type asked for; None: decided from the document."""
    trigger: str
    """``upload`` (the ``document.uploaded`` event) or ``api``."""


class AnalysisQueue:
    """Background analyses, bounded in number and in concurrency."""

    def __init__(self, concurrency: int, size: int, run: Callable[[Job], Awaitable[None]]) -> None:
        self._slots = asyncio.Semaphore(concurrency)
        self._capacity = concurrency + size
        self._run = run
        self._active: dict[str, asyncio.Task[None]] = {}

    def busy(self, document_id: str) -> bool:
        """True while ``document_id`` has an analysis queued or running."""
        return document_id in self._active

    def check(self, document_id: str) -> None:
        """Refuse a new analysis of ``document_id`` now, or return.

        :raise AlreadyRunning: that document's analysis is queued or running.
        :raise QueueFull: no place is left.
        """
        if document_id in self._active:
            raise AlreadyRunning(document_id)
        if len(self._active) >= self._capacity:
            raise QueueFull(f"{len(self._active)} analyses are queued or running")

    def submit(self, job: Job) -> None:
        """Queue ``job`` (after :meth:`check`); it runs when a slot is free."""
        self.check(job.document_id)
        self._active[job.document_id] = asyncio.create_task(
            self._slot(job), name=f"openai-analysis-{job.analysis_id}"
        )

    async def _slot(self, job: Job) -> None:
        try:
            async with self._slots:
                await self._run(job)
        except Exception:
            log.exception("analysis raised", analysis=job.analysis_id, document=job.document_id)
        finally:
            self._active.pop(job.document_id, None)

    @property
    def depth(self) -> int:
        """Analyses queued or running."""
        return len(self._active)

    async def drain(self) -> None:
        """Wait until every queued and running analysis has finished."""
        while self._active:
            await asyncio.gather(*self._active.values(), return_exceptions=True)

    async def stop(self) -> None:
        """Cancel what is queued or running and wait for it to end."""
        tasks = list(self._active.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
