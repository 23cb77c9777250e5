"""Ingest workers, the daemon's side: ``webhooks.workers`` processes that receive webhooks on
the daemon's port beside it, so verifying, parsing and committing use more than one core.

The daemon and its workers listen on the same address with ``SO_REUSEPORT``: the kernel
spreads connections evenly over them (a shared socket let one process take a whole burst of
new connections; the daemon checks first that nothing else holds the port). A worker
answers webhooks itself (same plugins, same store, same group commit: a request is answered
after its rows are committed) and forwards every other request to the daemon's private Unix
socket. Over a socketpair each worker tells the daemon when it stored events with handlers
(the daemon's dispatcher delivers them) and sends its metrics; the daemon tells workers to
re-read subscriptions when they change and waits for them, so an event stored after a
subscription's ``201`` is delivered to it.

A worker that exits is started again (1 s, doubling to 60 s between attempts); a worker
whose daemon is gone (even ``kill -9``) finishes its requests in flight and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog

from hub.webhooks.channel import (
    Channel,
    MetricsSnapshot,
    Ready,
    Reloaded,
    ReloadSubscriptions,
    Wake,
    WorkerStart,
)

if TYPE_CHECKING:
    from hub.core import Hub

log = structlog.get_logger("hub.workers")

RESTART_DELAY_S = 1.0
RESTART_MAX_DELAY_S = 60.0
STABLE_AFTER_S = 60.0
"""A worker that ran this long before exiting is restarted after the shortest delay again."""
READY_TIMEOUT_S = 60.0
RELOAD_TIMEOUT_S = 5.0


@dataclass
class _Worker:
    index: int
    pid: int | None = None
    state: str = "starting"
    restarts: int = 0
    started_at: float | None = None
    channel: Channel | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    reloaded: dict[int, asyncio.Future[None]] = field(default_factory=dict)


class IngestWorkers:
    """Starts, watches and stops the ingest worker processes of one daemon."""

    def __init__(self, hub: Hub, count: int, host: str, port: int, upstream: str) -> None:
        self._hub = hub
        self._start = {
            index: WorkerStart(index, hub.settings, host, port, upstream) for index in range(count)
        }
        self._workers = {index: _Worker(index) for index in range(count)}
        self._processes: dict[int, asyncio.subprocess.Process] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._stopped = asyncio.Event()
        self._numbers = itertools.count(1)

    async def start(self) -> None:
        """Start every worker; return once each is listening or failed to (then it is retried)."""
        hub = self._hub
        self._tasks = [
            asyncio.create_task(self._supervise(index), name=f"hub-worker-{index}")
            for index in self._workers
        ]
        hub.dispatcher.reload_listeners.append(self._reload_subscriptions)
        waits = [worker.ready.wait() for worker in self._workers.values()]
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(READY_TIMEOUT_S):
                await asyncio.gather(*waits)
        listening = sum(worker.state == "running" for worker in self._workers.values())
        log.info("ingest workers started", listening=listening, configured=len(self._workers))

    async def stop(self, timeout: float) -> None:
        """SIGTERM each worker (it finishes its requests in flight); SIGKILL after ``timeout``."""
        self._stopping = True
        self._stopped.set()
        with contextlib.suppress(ValueError):
            self._hub.dispatcher.reload_listeners.remove(self._reload_subscriptions)
        for process in self._processes.values():
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        if self._tasks:
            _, late = await asyncio.wait(self._tasks, timeout=timeout)
            if late:
                for process in self._processes.values():
                    with contextlib.suppress(ProcessLookupError):
                        process.kill()
                for task in late:
                    task.cancel()
                await asyncio.wait(late)

    def status(self) -> list[dict[str, Any]]:
        """Each worker's process id, state, restarts and start time (for ``/api/status``)."""
        return [
            {
                "index": worker.index,
                "pid": worker.pid,
                "state": worker.state,
                "restarts": worker.restarts,
                "started_at": worker.started_at,
            }
            for worker in self._workers.values()
        ]

    async def _supervise(self, index: int) -> None:
        worker = self._workers[index]
        delay = RESTART_DELAY_S
        while not self._stopping:
            began = time.monotonic()
            try:
                code = await self._run(worker)
            except OSError as exc:  # could not start a process at all
                code = None
                log.error("ingest worker could not start", worker=index, error=str(exc))
            except Exception:  # whatever went wrong, the worker is started again
                code = None
                log.exception("ingest worker failed", worker=index)
            worker.ready.set()  # nobody waits for a worker that is not there
            worker.state = "stopped" if self._stopping else "restarting"
            worker.pid, worker.channel = None, None
            self._hub.metrics.retire(f"worker-{index}")
            for waiter in worker.reloaded.values():
                if not waiter.done():
                    waiter.set_result(None)  # a restarted worker reads subscriptions afresh
            worker.reloaded.clear()
            if self._stopping:
                return
            if time.monotonic() - began > STABLE_AFTER_S:
                delay = RESTART_DELAY_S
            log.error("ingest worker exited; restarting", worker=index, code=code, in_s=delay)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._stopped.wait()
            delay = min(delay * 2, RESTART_MAX_DELAY_S)
            worker.restarts += 1

    async def _run(self, worker: _Worker) -> int | None:
        """One life of a worker process: start it, relay its messages, return its exit code."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "hub.webhooks.worker",
                str(theirs.fileno()),
                pass_fds=(theirs.fileno(),),
                start_new_session=True,  # Ctrl-C reaches the daemon, which stops workers in order
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self._processes[worker.index] = process
        if self._stopping:  # stop() ran while it was being started
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        channel = await Channel.open(ours)
        worker.channel = channel
        channel.send(self._start[worker.index])
        try:
            await self._relay(worker, channel)
        finally:
            channel.close()
            if not self._stopping and process.returncode is None:
                process.kill()  # it broke the channel but did not exit
            code = await process.wait()
            self._processes.pop(worker.index, None)
        return code

    async def _relay(self, worker: _Worker, channel: Channel) -> None:
        """Act on the worker's messages until it closes the channel (it exits)."""
        hub = self._hub
        origin = f"worker-{worker.index}"
        while (message := await channel.receive()) is not None:
            if isinstance(message, Wake):
                hub.dispatcher.wake()
            elif isinstance(message, MetricsSnapshot):
                hub.metrics.absorb(origin, message.families)
            elif isinstance(message, Reloaded):
                waiter = worker.reloaded.pop(message.number, None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)
            elif isinstance(message, Ready):
                worker.pid, worker.state, worker.started_at = message.pid, "running", time.time()
                worker.ready.set()
                log.info("ingest worker listening", worker=worker.index, pid=message.pid)

    async def _reload_subscriptions(self) -> None:
        """Have every running worker re-read subscriptions; wait for them (bounded)."""
        loop = asyncio.get_running_loop()
        waiters: dict[int, asyncio.Future[None]] = {}
        for worker in self._workers.values():
            if worker.channel is None:
                continue  # a worker that starts later reads them then
            number = next(self._numbers)
            waiters[worker.index] = worker.reloaded[number] = loop.create_future()
            worker.channel.send(ReloadSubscriptions(number))
        if not waiters:
            return
        await asyncio.wait(waiters.values(), timeout=RELOAD_TIMEOUT_S)
        for index, waiter in waiters.items():
            process = self._processes.get(index)
            if not waiter.done() and process is not None:
                # its own copy of the subscriptions is stale: a new worker reads them afresh
                log.error("an ingest worker did not re-read subscriptions in time; restarting it")
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
