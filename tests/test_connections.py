"""Slow, idle and malformed connections against a real daemon: none of them can exhaust its
file descriptors, hold a connection past its deadline, or put a header's bytes in the log."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import os
import re
import resource
import time
from collections.abc import Iterator

import aiohttp
import pytest
import structlog

from hub.web.connections import LOG_INTERVAL_S, Throttled
from tests.daemon import Daemon

pytestmark = pytest.mark.slow

Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]
SLOW_REQUEST = b"GET /healthz HTTP/1.1\r\nHost: hub\r\nX-Slow: "
"""What a slow client sends a byte at a time, then endless ``a`` in its last header."""


@pytest.fixture
def many_files() -> Iterator[None]:
    """Enough open files in this process for a few thousand sockets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def connect(daemon: Daemon) -> Stream:
    """A new connection (fails if the daemon stops accepting)."""
    return await asyncio.wait_for(asyncio.open_connection("127.0.0.1", daemon.port), 10)


async def get(daemon: Daemon, path: str = "/healthz") -> bytes:
    """The daemon's whole answer to one GET on a new connection."""
    reader, writer = await connect(daemon)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: hub\r\nConnection: close\r\n\r\n".encode())
    try:
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


async def dribble(streams: list[Stream]) -> None:
    """Send each stream's request a byte at a time, forever (until cancelled)."""
    for byte in itertools.chain(SLOW_REQUEST, itertools.repeat(ord("a"))):
        for _, writer in streams:
            if not writer.is_closing():
                writer.write(bytes([byte]))
        await asyncio.sleep(0.02)


async def closed_by_daemon(reader: asyncio.StreamReader) -> None:
    """Return once the daemon has closed the connection (end of stream, or a reset)."""
    try:
        while await reader.read(65536):
            pass
    except ConnectionResetError:
        pass


async def all_closed(streams: list[Stream]) -> None:
    """Wait until the daemon has closed every stream (fails after 30 s)."""
    await asyncio.wait_for(asyncio.gather(*(closed_by_daemon(r) for r, _ in streams)), 30)


def close(streams: list[Stream]) -> None:
    for _, writer in streams:
        writer.close()


async def wait_for_output(daemon: Daemon, text: str) -> str:
    """The daemon's log, once it contains ``text`` (fails after 30 s)."""
    deadline = time.monotonic() + 30
    while text not in (output := daemon.output()):
        assert time.monotonic() < deadline, f"{text!r} never logged:\n{output[-3000:]}"
        await asyncio.sleep(0.05)
    return output


async def started(daemon: Daemon) -> Daemon:
    async with aiohttp.ClientSession() as session:
        await daemon.ready(session)
    return daemon


async def test_healthz_answers_while_2000_idle_and_100_slow_sockets_are_open(
    tmp_path, reap_daemons, many_files
):
    # long deadlines: the daemon would hold every socket if it had the descriptors
    env = {"HUB_SERVER__HEADER_TIMEOUT": "300", "HUB_SERVER__KEEPALIVE_TIMEOUT": "300"}
    daemon = await started(Daemon(tmp_path, "", env, open_files=1024))
    idle = [await connect(daemon) for _ in range(2000)]
    slow = [await connect(daemon) for _ in range(100)]
    dribbling = asyncio.create_task(dribble(slow))
    try:
        for _ in range(20):
            answer = await get(daemon)
            assert answer.startswith(b"HTTP/1.1 200 OK"), answer[:200]
        assert len(os.listdir(f"/proc/{daemon.proc.pid}/fd")) < 1024
        idle.append(await connect(daemon))  # still accepting
    finally:
        dribbling.cancel()
        close(idle + slow)
    output = daemon.output()
    assert "Too many open files" not in output
    assert "Traceback" not in output
    assert "server.max_connections reached" in output
    assert daemon.stop() == 0


async def test_idle_and_slow_sockets_are_closed_at_the_header_deadline(tmp_path, reap_daemons):
    daemon = await started(Daemon(tmp_path, "", {"HUB_SERVER__HEADER_TIMEOUT": "0.5"}))
    idle = [await connect(daemon) for _ in range(50)]
    slow = [await connect(daemon) for _ in range(50)]
    dribbling = asyncio.create_task(dribble(slow))
    try:
        await all_closed(idle + slow)  # the slow ones too, though bytes keep coming
    finally:
        dribbling.cancel()
        close(idle + slow)
    assert (await get(daemon)).startswith(b"HTTP/1.1 200 OK")
    output = daemon.output()
    assert "server.header_timeout" in output
    assert "Traceback" not in output


async def test_a_kept_alive_connection_is_closed_after_the_keepalive_timeout(
    tmp_path, reap_daemons
):
    daemon = await started(Daemon(tmp_path, "", {"HUB_SERVER__KEEPALIVE_TIMEOUT": "0.5"}))
    reader, writer = await connect(daemon)
    try:
        for _ in range(2):  # kept alive: the second request uses the same connection
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: hub\r\n\r\n")
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            assert head.startswith(b"HTTP/1.1 200 OK")
            length = re.search(rb"Content-Length: (\d+)", head)
            assert length is not None
            await reader.readexactly(int(length.group(1)))
        await all_closed([(reader, writer)])
    finally:
        writer.close()


async def test_a_webhook_body_that_stalls_is_dropped_and_its_reservation_released(
    tmp_path, reap_daemons
):
    secret = "stall-secret"
    config = (
        "[webhooks]\nqueue_max_requests = 1\n"  # one request held at a time: the stalled one
        f'[webhooks.generic.tool]\nsecret = "{secret}"\nheader = "X-Signature"\n'
        'encoding = "hex"\n'
    )
    env = {"HUB_SERVER__BODY_TIMEOUT": "0.5"}
    daemon = await started(Daemon(tmp_path, config, env))
    reader, writer = await connect(daemon)
    writer.write(
        b"POST /webhooks/generic/tool HTTP/1.1\r\nHost: hub\r\n"
        b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
        b'{"half": "a body'
    )
    try:
        await all_closed([(reader, writer)])
    finally:
        writer.close()

    body = b'{"whole": true}'
    signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{daemon.url}/webhooks/generic/tool",
            data=body,
            headers={"X-Signature": signature, "Content-Type": "application/json"},
        ) as response,
    ):
        assert response.status == 200, await response.text()
    output = daemon.output()
    assert "server.body_timeout" in output
    assert "Traceback" not in output


MARKER = "c00k1e-marker-5f2d"


@pytest.mark.parametrize(
    "cookie",
    [
        f"hub_session={MARKER}{'x' * 10_000}",  # over aiohttp's 8190-byte line limit
        f"hub_session={MARKER}\x01",  # a control character: the parser quotes the line
    ],
    ids=["oversized", "invalid"],
)
async def test_a_refused_header_is_logged_by_problem_and_peer_without_its_bytes(
    tmp_path, reap_daemons, cookie
):
    daemon = await started(Daemon(tmp_path, ""))
    reader, writer = await connect(daemon)
    writer.write(f"GET /admin HTTP/1.1\r\nHost: hub\r\nCookie: {cookie}\r\n\r\n".encode())
    try:
        answer = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    assert re.match(rb"HTTP/1\.[01] (431|400) ", answer), answer[:200]
    assert MARKER.encode() not in answer
    output = await wait_for_output(daemon, "malformed HTTP request refused")
    assert MARKER not in output
    (line,) = [line for line in output.splitlines() if "malformed HTTP request refused" in line]
    assert '"peer": "127.0.0.1"' in line
    assert '"problem": ' in line


async def test_failed_accepts_are_logged_once_per_interval_without_a_traceback(
    tmp_path, reap_daemons, many_files
):
    # a cap above what 256 descriptors hold: accepts fail until the idle sockets time out
    env = {"HUB_SERVER__MAX_CONNECTIONS": "5000", "HUB_SERVER__HEADER_TIMEOUT": "2"}
    began = time.monotonic()
    daemon = await started(Daemon(tmp_path, "", env, open_files=256))
    idle = [await connect(daemon) for _ in range(300)]  # the excess waits in the backlog
    try:
        await wait_for_output(daemon, "cannot accept connections")
        await all_closed(idle)  # the backlog was accepted once descriptors were free again
    finally:
        close(idle)
    assert (await get(daemon)).startswith(b"HTTP/1.1 200 OK")
    elapsed = time.monotonic() - began
    output = daemon.output()
    # (other parts may fail meanwhile, such as the database opening a reader: the cap is
    # too high for the limit on purpose)
    failures = [
        line for line in output.splitlines() if "accept" in line and "Too many open" in line
    ]
    assert 1 <= len(failures) <= 1 + elapsed / LOG_INTERVAL_S, failures
    assert all("cannot accept connections" in line for line in failures)
    assert not any("Traceback" in line for line in failures)
    assert "server.max_connections leaves too few file descriptors free" in output


def test_a_throttled_line_says_how_many_it_left_out():
    now = [100.0]
    throttled = Throttled("too many things", clock=lambda: now[0])
    with structlog.testing.capture_logs() as lines:
        for _ in range(5):
            throttled(peer="10.0.0.1")
        now[0] += LOG_INTERVAL_S
        throttled(peer="10.0.0.2")
    assert [(line["event"], line["suppressed"], line["peer"]) for line in lines] == [
        ("too many things", 0, "10.0.0.1"),
        ("too many things", 4, "10.0.0.2"),
    ]
