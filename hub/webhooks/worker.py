"""An ingest worker process: ``python -m hub.webhooks.worker FD``, started by the daemon
(``webhooks.workers``; see :mod:`hub.webhooks.workers`), never by hand.

It reads its settings from the daemon over the socketpair ``FD``, opens the store, listens
on the daemon's address beside it (``SO_REUSEPORT``), answers webhooks exactly as the daemon
does and forwards everything else to it. It stops on SIGTERM or SIGINT, or when the
daemon is gone, after finishing the requests in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import socket
import sys
from collections.abc import Sequence

import structlog
from aiohttp import web

from hub.core import Hub
from hub.errors import ConfigError, StoreError
from hub.logs import configure_logging
from hub.store.clock import set_id_tag
from hub.web.app import create_worker_app
from hub.web.forward import Forwarder
from hub.webhooks import channel as messages
from hub.webhooks.channel import Channel

log = structlog.get_logger("hub.workers")

METRICS_INTERVAL_S = 1.0


def main(argv: Sequence[str] | None = None) -> int:
    """Run one worker on the inherited socketpair named by the only argument."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1 or not args[0].isdigit():
        print("usage: python -m hub.webhooks.worker FD (the hub daemon starts workers)")
        return 2
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C before the loop handles it
        return asyncio.run(_work(socket.socket(fileno=int(args[0]))))
    return 130


async def _work(sock: socket.socket) -> int:
    channel = await Channel.open(sock)
    start = await channel.receive()
    if not isinstance(start, messages.WorkerStart):
        return 2
    settings = start.settings
    configure_logging(settings.logging.level, settings.logging.format)
    structlog.contextvars.bind_contextvars(worker=start.index)
    set_id_tag(start.index + 1)
    hub = Hub(settings)
    try:
        await hub.start_ingest()
    except (ConfigError, StoreError) as exc:
        log.error("ingest worker cannot start", error=str(exc))
        return 1
    forwarder = Forwarder(start.upstream)
    await forwarder.start()
    runner = web.AppRunner(
        create_worker_app(hub, forwarder),
        handle_signals=False,
        shutdown_timeout=settings.server.shutdown_timeout,
        access_log=None,
    )
    try:
        await runner.setup()
        try:
            await web.TCPSite(runner, start.host, start.port, reuse_port=True).start()
        except OSError as exc:
            log.error("ingest worker cannot listen", port=start.port, error=exc.strerror)
            return 1
        gc.collect()
        gc.freeze()
        channel.send(messages.Ready(os.getpid()))
        await _serve(hub, channel)
    finally:
        await runner.cleanup()  # stops listening, then finishes requests in flight
        channel.send(messages.MetricsSnapshot(hub.metrics.snapshot()))
        await channel.flush()
        await forwarder.close()
        await hub.stop()
        channel.close()
    return 0


async def _serve(hub: Hub, channel: Channel) -> None:
    """Relay wake-ups and metrics to the daemon and act on its messages, until a signal or
    the daemon's end of the channel closes."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    tasks = [
        asyncio.create_task(_listen(hub, channel)),
        asyncio.create_task(_pass_wakes(hub, channel)),
        asyncio.create_task(_send_metrics(hub, channel)),
        asyncio.create_task(stop.wait()),
    ]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _listen(hub: Hub, channel: Channel) -> None:
    """Act on the daemon's messages; return when it is gone."""
    while (message := await channel.receive()) is not None:
        if isinstance(message, messages.ReloadSubscriptions):
            try:
                await hub.dispatcher.reload_subscriptions()
            except Exception:
                log.exception("subscriptions could not be re-read")
                return  # exit: the daemon starts a worker that reads them afresh
            channel.send(messages.Reloaded(message.number))
    log.warning("the daemon is gone; the ingest worker stops")


async def _pass_wakes(hub: Hub, channel: Channel) -> None:
    while True:
        await hub.dispatcher.woken()
        channel.send(messages.Wake())


async def _send_metrics(hub: Hub, channel: Channel) -> None:
    while True:
        await asyncio.sleep(METRICS_INTERVAL_S)
        channel.send(messages.MetricsSnapshot(hub.metrics.snapshot()))


if __name__ == "__main__":
    sys.exit(main())
