"""How long and how many connections the daemon holds, so that no client can take it down by
keeping sockets open.

Each open connection holds a file descriptor. At the open-file limit the daemon can accept
nothing, ``/healthz`` and webhooks included, and its database needs descriptors too. So:

- **Header deadline**: a new connection has ``server.header_timeout`` seconds to send its
  request's headers, however slowly they trickle in; then it is closed. A kept-alive
  connection has ``server.keepalive_timeout`` for its next request (aiohttp's own timer).
- **Body deadline**: a request's body has ``server.body_timeout`` seconds from the end of its
  headers to arrive. Then the handler's read fails with 408, so whatever the request reserved
  (a webhook's share of the ingest bounds) is given back, and the connection is closed
  without an answer (a client that stalls would not read one).
- **Cap**: at most ``server.max_connections`` connections are open (by default half the
  open-file limit). A connection past the cap closes the one that has waited
  longest for a request, so a flood of idle sockets never locks out ``/healthz``. When every
  connection is busy with a request, the newcomer is answered 503 and closed.
- **Logs**: a malformed request is logged by its problem and peer, never with its bytes (a
  header can hold a session cookie). Closed connections and failed accepts (the event loop
  reports them when file descriptors run out) are logged at most once per
  :data:`LOG_INTERVAL_S`, with a count of the lines left out.

aiohttp has the keep-alive timer but no header or body deadline and no cap: the handler
subclass adds them where aiohttp's protocol has parsed a request's headers
(``data_received``) and has answered it (``finish_response``).
"""

from __future__ import annotations

import asyncio
import logging
import resource
import sys
import time
from collections.abc import Callable
from typing import Any

import orjson
import structlog
from aiohttp import web
from aiohttp.http_exceptions import (
    BadHttpMethod,
    BadStatusLine,
    HttpProcessingError,
    InvalidHeader,
    LineTooLong,
)
from aiohttp.streams import StreamReader

from hub.config import ServerSettings
from hub.web.api import json_response

log = structlog.get_logger("hub.web")

FREE_FDS_SHARE = 2
"""The default cap is the open-file limit divided by this: the other half is for the database,
the log, outbound calls (the shared HTTP client alone holds up to 100), and for connections
being accepted or closed at the moment (the event loop accepts up to a backlog of 128 per
turn before any of them is counted)."""
LOG_INTERVAL_S = 10.0
"""At most one line per this many seconds for each kind of closed connection or failed accept."""
ACCEPT_FAILED = "socket.accept() out of system resource"
"""The message asyncio's event loop gives its exception handler when ``accept()`` fails for
lack of file descriptors or memory (it retries a second later)."""
RETRY_AFTER_S = 1
CLOSED = {
    "header_timeout": "connection closed: its request headers did not arrive within "
    "server.header_timeout",
    "body_timeout": "connection closed: its request body did not arrive within server.body_timeout",
    "evicted": "connection closed to make room: server.max_connections reached, and it had "
    "waited longest for a request",
    "refused": "connection answered 503 and closed: server.max_connections reached and every "
    "connection is busy",
}
"""The log line for each reason a connection is closed early."""


def connection_cap(settings: ServerSettings) -> int:
    """``server.max_connections``, by default half the open-file limit (see
    :data:`FREE_FDS_SHARE`); a configured cap above that is kept, with a warning."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    room = sys.maxsize if soft == resource.RLIM_INFINITY else max(1, soft // FREE_FDS_SHARE)
    if settings.max_connections is None:
        return room
    if settings.max_connections > room:
        log.warning(
            "server.max_connections leaves too few file descriptors free: accepts may fail",
            max_connections=settings.max_connections,
            open_file_limit=soft,
        )
    return settings.max_connections


class Throttled:
    """A log line written at most once per :data:`LOG_INTERVAL_S`; each line says how many
    were left out since the one before (``suppressed``)."""

    def __init__(
        self, event: str, level: int = logging.WARNING, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._event = event
        self._level = level
        self._clock = clock
        self._next = -float("inf")
        self._suppressed = 0

    def __call__(self, **fields: Any) -> None:
        """Write the line with ``fields``, or count it if one was written too recently."""
        now = self._clock()
        if now < self._next:
            self._suppressed += 1
            return
        self._next = now + LOG_INTERVAL_S
        log.log(self._level, self._event, suppressed=self._suppressed, **fields)
        self._suppressed = 0


def log_accept_failures(loop: asyncio.AbstractEventLoop) -> None:
    """Make ``loop`` log failed accepts (out of file descriptors or memory) as one
    :class:`Throttled` line without a traceback; anything else goes to the exception handler
    it had. The loop reports a failed accept up to a backlog's worth of times a second."""
    previous = loop.get_exception_handler()
    failed = Throttled(
        "cannot accept connections: out of file descriptors or memory (retrying)", logging.ERROR
    )

    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if context.get("message") == ACCEPT_FAILED:
            failed(error=str(context.get("exception")))
        elif previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handle)


class GuardedRunner(web.AppRunner):
    """An :class:`aiohttp.web.AppRunner` whose connections are a :class:`GuardedServer`'s,
    with aiohttp's keep-alive timer set to ``server.keepalive_timeout``."""

    def __init__(self, app: web.Application, settings: ServerSettings, **kwargs: Any) -> None:
        super().__init__(app, keepalive_timeout=settings.keepalive_timeout, **kwargs)
        self.settings = settings
        self.cap = connection_cap(settings)

    async def _make_server(self) -> web.Server:
        plain = await super()._make_server()  # runs the app's startup
        return GuardedServer(plain, self.settings, self.cap)


class GuardedServer(web.Server):
    """aiohttp's low-level server, making each connection a :class:`GuardedHandler` and
    keeping count of them: which are open, which wait for a request (longest first)."""

    def __init__(self, plain: web.Server, settings: ServerSettings, cap: int) -> None:
        super().__init__(
            plain.request_handler,
            request_factory=plain.request_factory,
            handler_cancellation=plain.handler_cancellation,
            loop=asyncio.get_running_loop(),
            **plain._kwargs,  # what the app and runner give each connection (no public getter)
        )
        self.settings = settings
        self.cap = cap
        self._open: set[GuardedHandler] = set()
        self._waiting: dict[GuardedHandler, None] = {}
        """Open connections waiting for a request's headers, in the order they began to."""
        self._logs = {reason: Throttled(event) for reason, event in CLOSED.items()}
        self._refusal = _refusal(cap)

    def __call__(self) -> GuardedHandler:
        """The protocol of a new connection (asyncio calls this on each accept)."""
        return GuardedHandler(self, loop=self._loop, **self._kwargs)

    def admit(self, handler: GuardedHandler) -> bool:
        """Count a new connection; at the cap, first close the connection that has waited
        longest for a request, or refuse this one (503) when every connection is busy."""
        if len(self._open) >= self.cap:
            oldest = next(iter(self._waiting), None)
            if oldest is None:
                self._logs["refused"](peer=handler.peer)
                handler.refuse(self._refusal)
                return False
            self.drop(oldest, "evicted")
        self._open.add(handler)
        self._waiting[handler] = None
        return True

    def busy(self, handler: GuardedHandler) -> None:
        """``handler``'s request headers are in: it is no longer waiting."""
        self._waiting.pop(handler, None)

    def idle(self, handler: GuardedHandler) -> None:
        """``handler`` has answered its requests and waits for the next (keep-alive)."""
        if handler in self._open:
            self._waiting.pop(handler, None)
            self._waiting[handler] = None

    def drop(self, handler: GuardedHandler, reason: str) -> None:
        """Close ``handler``'s connection now, for ``reason`` (a key of :data:`CLOSED`)."""
        self.forget(handler)
        self._logs[reason](peer=handler.peer)
        handler.force_close()

    def forget(self, handler: GuardedHandler) -> None:
        """``handler``'s connection is closed: stop counting it."""
        self._open.discard(handler)
        self._waiting.pop(handler, None)


class GuardedHandler(web.RequestHandler):
    """One connection, under its :class:`GuardedServer`'s deadlines and cap."""

    __slots__ = ("_body", "_deadline", "_guard")

    def __init__(self, guard: GuardedServer, **kwargs: Any) -> None:
        super().__init__(guard, **kwargs)
        self._guard = guard
        self._deadline: asyncio.TimerHandle | None = None
        self._body: StreamReader | None = None
        """The body the deadline waits for (None: the deadline is for headers)."""

    @property
    def peer(self) -> str | None:
        """The client's address, without its port."""
        name = self.peername
        return str(name[0]) if isinstance(name, tuple) else name

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Admit the connection under the cap and start its header deadline."""
        super().connection_made(transport)
        if self._guard.admit(self):
            self._expect(None, self._guard.settings.header_timeout)

    def data_received(self, data: bytes) -> None:
        """Parse as aiohttp does; once a request's headers are in, the deadline is its body's."""
        queued = len(self._messages)  # aiohttp queues each request it has parsed the headers of
        super().data_received(data)
        if len(self._messages) > queued:  # a request's headers are in (its body may follow)
            self._guard.busy(self)
            body = self._messages[-1][1]
            if body.is_eof():
                self._expect_nothing()
            else:
                self._expect(body, self._guard.settings.body_timeout)

    async def finish_response(
        self, request: web.BaseRequest, resp: web.StreamResponse, start_time: float | None
    ) -> tuple[web.StreamResponse, bool]:
        """Answer as aiohttp does; then the connection waits for its next request."""
        if self._body is request.content:  # answered: the rest of its body is aiohttp's to
            self._expect_nothing()  # drain or drop, and a failed read there would be logged
        try:
            return await super().finish_response(request, resp, start_time)
        finally:
            if not self._messages:
                self._guard.idle(self)

    def connection_lost(self, exc: BaseException | None) -> None:
        """Stop the deadline and the counting."""
        self._expect_nothing()
        self._guard.forget(self)
        super().connection_lost(exc)

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """A request aiohttp's parser refused is answered 400 (431 for a line too long) and
        logged by its problem and peer: aiohttp's own log line and answer quote its bytes."""
        if not isinstance(exc, HttpProcessingError):
            return super().handle_error(request, status, exc, message)
        status, problem = self._malformed(exc)
        log.warning("malformed HTTP request refused", problem=problem, peer=request.remote)
        response = json_response({"error": problem}, status=status)
        response.force_close()
        return response

    def refuse(self, answer: bytes) -> None:
        """Send ``answer`` and close, without reading a request."""
        if self.transport is not None:
            self.transport.write(answer)  # closing sends what is buffered first
        self.force_close()

    def _malformed(self, exc: HttpProcessingError) -> tuple[int, str]:
        """The status and a description of the problem that quotes none of the request."""
        if isinstance(exc, LineTooLong):
            return 431, f"a header or the request line is over {self.max_field_size} bytes"
        if isinstance(exc, BadHttpMethod):
            return 400, "not an HTTP request (bad method)"
        if isinstance(exc, BadStatusLine):
            return 400, "bad request line"
        if isinstance(exc, InvalidHeader):
            return 400, "invalid header"
        return 400, f"malformed HTTP request ({type(exc).__name__})"

    def _expect(self, body: StreamReader | None, seconds: float) -> None:
        """Close the connection unless ``body`` (else the request headers) is in by then."""
        self._expect_nothing()
        self._body = body
        self._deadline = self._loop.call_later(seconds, self._late)

    def _expect_nothing(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._body = None

    def _late(self) -> None:
        self._deadline = None
        body, self._body = self._body, None
        if body is None:
            self._guard.drop(self, "header_timeout")
        elif not body.is_eof():  # the handler's read fails: it answers 408 and lets go
            timeout = self._guard.settings.body_timeout
            body.set_exception(
                web.HTTPRequestTimeout(text=f"request body not received within {timeout} s")
            )
            self._guard.drop(self, "body_timeout")


def _refusal(cap: int) -> bytes:
    """The raw 503 answer for a connection over the cap."""
    body = orjson.dumps(
        {
            "error": f"the hub has server.max_connections ({cap}) connections open, all "
            f"busy; retry in {RETRY_AFTER_S} s"
        }
    )
    head = (
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nRetry-After: {RETRY_AFTER_S}\r\nConnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body
