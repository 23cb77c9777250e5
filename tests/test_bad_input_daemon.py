"""Bad input against a real daemon over a real socket: a 4xx with a reason, never a 5xx, and
a gzip bomb is refused without being inflated."""

from __future__ import annotations

import zlib
from pathlib import Path

import aiohttp
import pytest

from hub.testing import generic_signature
from tests.daemon import Daemon, query

pytestmark = pytest.mark.slow
SECRET = "bad-input-secret"
SENDER = {"HUB_WEBHOOKS__GENERIC__ZAP__SECRET": SECRET}
MIB = 1024 * 1024


def nested(depth: int) -> bytes:
    """A JSON object whose innermost value is ``depth`` levels deep (the object counts)."""
    return b'{"a":' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"


def gzip_bomb(size: int) -> bytes:
    """A gzip stream of a JSON string ``size`` bytes long: about a thousandth of that."""
    packer = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    parts = [packer.compress(b'{"pad": "')]
    spaces = b" " * MIB
    parts += [packer.compress(spaces) for _ in range(size // MIB)]
    return b"".join([*parts, packer.compress(b'"}'), packer.flush()])


def peak_rss(pid: int) -> int:
    """The process's peak resident memory in bytes (``VmHWM``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


async def post(
    session: aiohttp.ClientSession, daemon: Daemon, body: bytes, signed: bytes, **headers: str
) -> tuple[int, str]:
    headers["X-Signature"] = generic_signature(SECRET, signed)
    async with session.post(
        f"{daemon.url}/webhooks/generic/zap", data=body, headers=headers
    ) as response:
        return response.status, (await response.json())["error"] if response.status >= 400 else ""


async def test_signed_json_deeper_than_the_store_writes_is_400(tmp_path, reap_daemons):
    daemon = Daemon(tmp_path, "", SENDER)
    async with aiohttp.ClientSession() as session:
        await daemon.ready(session)
        assert await post(session, daemon, nested(254), nested(254)) == (200, "")
        for depth in (255, 1000):
            assert await post(session, daemon, nested(depth), nested(depth)) == (
                400,
                "event data cannot be stored as JSON: nested deeper than 254 levels",
            )
    assert daemon.stop() == 0
    assert len(query(daemon.db, "SELECT id FROM webhook_requests")) == 1


async def test_a_gzip_bomb_is_413_and_never_inflated(tmp_path, reap_daemons):
    """256 MiB of JSON in 256 KiB of gzip: refused once 2 MiB are decoded. (aiohttp on its own
    inflates each received chunk to 32 MiB before it looks at any limit.)"""
    daemon = Daemon(tmp_path, "[webhooks]\nmax_body_bytes = 2097152\n", SENDER)
    bomb = gzip_bomb(256 * MIB)
    assert len(bomb) < MIB
    async with aiohttp.ClientSession() as session:
        await daemon.ready(session)
        Path(f"/proc/{daemon.proc.pid}/clear_refs").write_text("5")  # peak := current
        before = peak_rss(daemon.proc.pid)
        status, reason = await post(session, daemon, bomb, b"", **{"Content-Encoding": "gzip"})
        assert (status, reason) == (413, "body over 2097152 bytes once decoded")
        grown = peak_rss(daemon.proc.pid) - before
        assert grown < 16 * MIB, f"the daemon grew by {grown // MIB} MiB"

        invalid = await post(session, daemon, b"not gzip", b"", **{"Content-Encoding": "gzip"})
        assert invalid == (400, "the body is not valid gzip data")
        async with session.get(f"{daemon.url}/readyz") as response:
            assert response.status == 200
    assert daemon.stop() == 0
    assert query(daemon.db, "SELECT id FROM webhook_requests") == []


async def test_a_login_form_in_an_unknown_charset_is_400(tmp_path, reap_daemons):
    daemon = Daemon(tmp_path, "")
    async with aiohttp.ClientSession() as session:
        await daemon.ready(session)
        for content_type, body in [
            ("application/x-www-form-urlencoded; charset=no-such-charset", b"token=abc"),
            ("application/x-www-form-urlencoded", b"token=\xff"),
        ]:
            async with session.post(
                f"{daemon.url}/admin/login", data=body, headers={"Content-Type": content_type}
            ) as response:
                assert response.status == 400
                error = (await response.json())["error"]
                assert error.startswith("the request body cannot be decoded: "), error
    assert daemon.stop() == 0
