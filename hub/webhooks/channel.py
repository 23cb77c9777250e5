"""The private channel between the daemon and one ingest worker: pickled messages over a
socketpair the daemon creates, each framed by its length.

Only the two ends of the pair can write to it (it is never bound to an address), so pickle
is safe here; it carries the settings (with their secrets) without another encoding.
"""

from __future__ import annotations

import asyncio
import contextlib
import pickle
import socket
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog

if TYPE_CHECKING:
    from hub.config import HubSettings

log = structlog.get_logger("hub.workers")
FRAME = struct.Struct("!I")
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class WorkerStart:
    """Daemon to worker, first: what to serve and where."""

    index: int
    settings: HubSettings
    host: str
    port: int
    upstream: str
    """The daemon's private Unix socket, where requests other than webhooks are forwarded."""


@dataclass(frozen=True)
class Ready:
    """Worker to daemon: listening, with its process id."""

    pid: int


@dataclass(frozen=True)
class Wake:
    """Worker to daemon: events with handlers were stored."""


@dataclass(frozen=True)
class MetricsSnapshot:
    """Worker to daemon: the worker's metrics so far (cumulative)."""

    families: list[Any]


@dataclass(frozen=True)
class ReloadSubscriptions:
    """Daemon to worker: subscriptions changed; answer with :class:`Reloaded` of ``number``."""

    number: int


@dataclass(frozen=True)
class Reloaded:
    """Worker to daemon: subscriptions re-read after :class:`ReloadSubscriptions`."""

    number: int


class Channel:
    """One end of the socketpair, on the running event loop."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    @classmethod
    async def open(cls, sock: socket.socket) -> Channel:
        """Wrap a connected Unix stream socket."""
        reader, writer = await asyncio.open_unix_connection(sock=sock)
        return cls(reader, writer)

    def send(self, message: object) -> None:
        """Queue ``message`` for the other end; a gone peer is ignored (its EOF tells)."""
        if self._writer.is_closing():
            return
        payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        self._writer.write(FRAME.pack(len(payload)) + payload)

    async def flush(self) -> None:
        """Wait until what was sent is handed to the kernel (before exiting)."""
        with contextlib.suppress(ConnectionError):
            await self._writer.drain()

    async def receive(self) -> object | None:
        """The next message; None when the other end is gone or sent a broken frame."""
        try:
            header = await self._reader.readexactly(FRAME.size)
            (size,) = FRAME.unpack(header)
            if size > MAX_MESSAGE_BYTES:
                return None
            message: object = pickle.loads(await self._reader.readexactly(size))  # noqa: S301
            return message
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        except Exception:  # a message this side cannot rebuild (e.g. code changed on disk)
            log.exception("unreadable message on the worker channel")
            return None

    def close(self) -> None:
        """Close this end; the peer reads EOF."""
        self._writer.close()
