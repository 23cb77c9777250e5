"""Running the hub: the daemon (``serve``), the offline ``demo``, and one-off ``sync``."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import gc
import logging
import os
import signal
import socket
import sys
import tempfile
from pathlib import Path
from typing import TextIO

import structlog
from aiohttp import web

from hub.config import HubSettings
from hub.core import Hub
from hub.errors import SyncBusyError
from hub.plugins import HubPlugins
from hub.progress import ProgressDisplay
from hub.store.files import real_path
from hub.sync_pass import SyncProgress
from hub.web.app import create_app
from hub.web.connections import GuardedRunner, log_accept_failures

log = structlog.get_logger("hub")

RECEIVE_BUFFER_BYTES = 64 * 1024
"""Each connection's kernel receive buffer: one read takes at most this much, so 500 clients
sending large bodies at once hold tens of megabytes in the daemon, not hundreds."""


def _only_daemon(lock_path: Path) -> TextIO | None:
    """Hold ``lock_path`` for this process's lifetime; None if another daemon holds it.

    Two daemons on one database would both schedule syncs and both deliver every event. (A
    one-off ``sync`` or ``check`` beside the daemon is fine: it takes no lock.)
    """
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    lock = open(lock_path, "a+")  # noqa: SIM115 (held open while the daemon runs)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.close()
        return None
    lock.truncate(0)
    lock.write(f"{os.getpid()}\n")
    lock.flush()
    return lock


async def serve(settings: HubSettings) -> int:
    """Run the daemon until SIGTERM or SIGINT; return the exit code.

    The single-daemon lock is named after the database's real path, so a symbolic link, a
    relative path or ``..`` cannot open a second daemon on the same file.
    """
    database = real_path(settings.store.path)
    lock_path = Path(f"{database}.lock")
    try:
        lock = _only_daemon(lock_path)
    except OSError as exc:
        print(f"advisoros-hub: error: {lock_path}: {exc.strerror}", file=sys.stderr)
        return 1
    if lock is None:
        print(
            f"advisoros-hub: error: another hub daemon is running on {database} (see {lock_path})",
            file=sys.stderr,
        )
        return 1
    try:
        return await _serve(settings)
    finally:
        lock.close()


async def _serve(settings: HubSettings) -> int:
    loop = asyncio.get_running_loop()
    log_accept_failures(loop)
    app = create_app(settings)
    runner = GuardedRunner(
        app,
        settings.server,
        handle_signals=False,
        shutdown_timeout=settings.server.shutdown_timeout,
        access_log=None,  # requests are counted in /metrics; errors are logged
    )
    await runner.setup()
    host, port = settings.server.host, settings.server.port
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        _limit_receive_buffers(site)
    except OSError as exc:
        await runner.cleanup()
        print(
            f"advisoros-hub: error: cannot listen on {host}:{port}: {exc.strerror}", file=sys.stderr
        )
        return 1
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):  # from here on, a signal stops in order
        loop.add_signal_handler(sig, stop.set)
    # start-up objects never need collecting: freezing them keeps full collections short;
    # no collection first, which would hold up the first requests for next to no garbage
    gc.freeze()
    url = f"http://{host}:{port}"
    log.info("hub listening", url=url, admin=f"{url}/admin", max_connections=runner.cap)
    await stop.wait()
    log.info("hub stopping")
    limit = settings.server.shutdown_timeout * 2 + 10
    try:
        async with asyncio.timeout(limit):
            await runner.cleanup()
    except TimeoutError:
        log.error("shutdown did not finish in time; exiting anyway", limit_s=limit)
        return 1
    log.info("hub stopped")
    return 0


def _limit_receive_buffers(site: web.TCPSite) -> None:
    """Give the listening sockets (and so every connection accepted from them) a small
    receive buffer (``RECEIVE_BUFFER_BYTES``)."""
    server = site._server  # aiohttp exposes no socket options; the asyncio server's sockets
    for sock in getattr(server, "sockets", ()):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER_BYTES)


async def demo(settings: HubSettings) -> int:
    """Serve with every plugin's sandbox started and connected, on a throwaway database."""
    async with contextlib.AsyncExitStack() as stack:
        plugins = HubPlugins()
        plugins.load(settings.plugins)
        integrations = dict(settings.integrations)
        for name, result in await plugins.broadcast("demo", stack=stack):
            if isinstance(result, dict):
                integrations.update(result)
                log.info("demo sandbox started", plugin=name, integrations=sorted(result))
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hub-demo-")))
        demo_settings = settings.model_copy(
            update={
                "integrations": integrations,
                "store": settings.store.model_copy(update={"path": folder / "demo.db"}),
            }
        )
        return await serve(demo_settings)


async def run_sync_command(
    settings: HubSettings,
    name: str,
    connection: str | None,
    full: bool,
    streams: list[str] | None,
) -> int:
    """``advisoros-hub sync``: sync one integration's connections now, with a progress line."""
    hub = Hub(settings)
    hub.load_plugins()
    if name not in hub.plugins.integrations:
        known = ", ".join(sorted(hub.plugins.integrations)) or "none"
        print(f"advisoros-hub: error: no integration {name!r} (loaded: {known})", file=sys.stderr)
        return 1
    if sys.stderr.isatty():  # the progress line says what the engine's info lines would
        logging.getLogger("hub.sync").setLevel(logging.WARNING)
    await hub.start(deliver=False)  # the daemon delivers the events this run emits
    try:
        targets = await hub.find_connections(name, connection)
        if not targets:
            what = f"connection {connection!r} of {name}" if connection else f"{name} connections"
            print(f"advisoros-hub: error: no {what}", file=sys.stderr)
            return 1
        failed = 0
        for target in targets:
            display = ProgressDisplay()
            last: list[SyncProgress] = []

            def show(
                progress: SyncProgress,
                display: ProgressDisplay = display,
                last: list[SyncProgress] = last,
            ) -> None:
                last[:] = [progress]
                display(progress)

            try:
                result = await hub.engine.run(
                    target.id, full=full, trigger="cli", streams=streams, progress=show
                )
            except (SyncBusyError, LookupError) as exc:
                print(f"advisoros-hub: error: {exc}", file=sys.stderr)
                failed += 1
                continue
            display.finish(result, last[0] if last else None)
            failed += result.state != "succeeded"
        return 1 if failed else 0
    finally:
        await hub.stop()
