"""Tests of hub.webhooks.urlguard: SSRF refusals, with no network beyond 127.0.0.1."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.test_utils import TestServer

from hub.webhooks import urlguard
from hub.webhooks.urlguard import (
    ForbiddenAddressError,
    GuardedResolver,
    UnsafeURLError,
    check_destination,
    check_url,
    forbidden_reason,
    guarded_session,
    is_forbidden_address,
    unsafe_cause,
)

FORBIDDEN = [
    "127.0.0.1",
    "127.255.0.9",
    "::1",
    "10.0.0.1",
    "10.255.255.254",
    "172.16.0.1",
    "172.31.255.255",
    "192.168.1.1",
    "169.254.169.254",  # cloud metadata
    "169.254.0.1",
    "::ffff:127.0.0.1",
    "::ffff:169.254.169.254",
    "::ffff:10.0.0.1",
    "0.0.0.0",
    "::",
    "100.64.0.1",
    "100.127.255.254",
    "fd00::1",
    "fc00::1",
    "fe80::1",
    "fec0::1",  # site-local
    "224.0.0.1",
    "239.255.255.250",
    "ff02::1",
    "240.0.0.1",
    "255.255.255.255",
    "192.0.0.1",
    "198.18.0.1",
    "192.0.2.1",
    "64:ff9b::7f00:1",  # NAT64 form of 127.0.0.1
    "2002:7f00:1::1",  # 6to4 form of 127.0.0.1
    "2002:a9fe:a9fe::1",  # 6to4 form of 169.254.169.254
    "2001:db8::1",
]
ALLOWED = ["8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700::1", "2a00:1450:4001::1"]


@pytest.mark.parametrize("address", FORBIDDEN)
def test_forbidden_addresses(address: str) -> None:
    ip = ipaddress.ip_address(address)
    assert is_forbidden_address(ip)
    assert forbidden_reason(ip)


@pytest.mark.parametrize("address", ALLOWED)
def test_public_addresses_are_allowed(address: str) -> None:
    """Only the address check: nothing here touches the network."""
    ip = ipaddress.ip_address(address)
    assert not is_forbidden_address(ip)
    assert forbidden_reason(ip) is None


def test_public_addresses_in_ipv6_wrappers_are_allowed() -> None:
    for address in ["::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1"]:
        assert not is_forbidden_address(ipaddress.ip_address(address)), address


def test_reasons_are_specific() -> None:
    def reason(address: str) -> str:
        found = forbidden_reason(ipaddress.ip_address(address))
        assert found is not None
        return found

    assert "metadata" in reason("169.254.169.254")
    assert "loopback" in reason("127.0.0.1")
    assert reason("::ffff:127.0.0.1").startswith("IPv4-mapped loopback")
    assert "shared address space" in reason("100.64.0.1")
    assert "unique-local" in reason("fd00::1")
    assert "private" in reason("192.168.1.1")
    assert "unspecified" in reason("0.0.0.0")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.com/x", "only http and https"),
        ("file:///etc/passwd", "only http and https"),
        ("javascript:alert(1)", "only http and https"),
        ("gopher://example.com:70/", "only http and https"),
        ("//example.com/hook", "only http and https"),
        ("http://user:pass@example.com/hook", "credentials"),
        ("https://user@example.com/hook", "credentials"),
        ("https://:secret@example.com/hook", "credentials"),
        ("http:///hook", "no host"),
        ("http://", "no host"),
        ("http:example.com", "no host"),
        ("", "empty"),
        ("http://exa mple.com/", "whitespace"),
        ("http://example.com/\nHost: evil", "whitespace"),
        ("http://example.com:0/", "port"),
        ("http://example.com:99999/", "not valid"),
    ],
)
def test_check_url_refusals(url: str, message: str) -> None:
    with pytest.raises(UnsafeURLError, match=message):
        check_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/hook",
        "http://example.com:8080/x?y=1#z",
        "HTTPS://Hooks.Zapier.com/hooks/catch/1/abc/",
        "http://8.8.8.8/",
        "http://[2606:4700::1]:443/",
        "http://127.0.0.1/",  # addresses are check_destination's job
    ],
)
def test_check_url_accepts(url: str) -> None:
    check_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://127.0.0.1:8080/hook",
        "http://[::1]:8080/",
        "http://10.1.2.3/",
        "http://172.16.5.4/",
        "http://192.168.0.10/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:7f00:1]/",
        "http://0.0.0.0:8000/",
        "http://100.64.0.1/",
        "http://[fd00::1]/",
        "http://[fe80::1%25eth0]/",
        "http://2130706433/",  # decimal 127.0.0.1
        "http://0177.0.0.1/",  # octal 127.0.0.1
        "http://127.1/",
    ],
)
async def test_check_destination_refuses_literal_addresses(url: str) -> None:
    with pytest.raises(ForbiddenAddressError, match="refused webhook destination") as caught:
        await check_destination(url, allow_private=False)
    assert isinstance(caught.value, UnsafeURLError)
    assert isinstance(caught.value, OSError)
    assert "allow_private" in str(caught.value)
    assert not str(caught.value).startswith("[Errno")


@pytest.mark.parametrize("url", ["http://8.8.8.8/hook", "https://[2606:4700::1]:8443/"])
async def test_check_destination_accepts_public_literals_without_network(url: str) -> None:
    await check_destination(url, allow_private=False, resolver=ExplodingResolver())


async def test_check_destination_allow_private() -> None:
    await check_destination("http://127.0.0.1:9/", allow_private=True)
    await check_destination("http://[::1]/", allow_private=True)
    await check_destination("http://169.254.169.254/", allow_private=True)
    with pytest.raises(UnsafeURLError, match="only http"):
        await check_destination("ftp://127.0.0.1/", allow_private=True)
    with pytest.raises(UnsafeURLError, match="credentials"):
        await check_destination("http://a:b@127.0.0.1/", allow_private=True)


class FakeResolver(AbstractResolver):
    """Answers every name with fixed addresses; no network."""

    def __init__(self, *addresses: str) -> None:
        self.addresses = addresses
        self.calls: list[tuple[str, int, int]] = []
        self.closed = False

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.calls.append((host, port, family))
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in self.addresses
        ]

    async def close(self) -> None:
        self.closed = True


class ExplodingResolver(AbstractResolver):
    """Fails the test if anything resolves through it."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        raise AssertionError(f"unexpected resolution of {host}")

    async def close(self) -> None:
        pass


async def test_check_destination_resolves_names() -> None:
    public = FakeResolver("93.184.216.34", "2606:2800:220:1::1")
    await check_destination("https://hooks.example:8443/x", False, public)
    assert public.calls == [("hooks.example", 8443, socket.AF_UNSPEC)]
    assert not public.closed  # a resolver passed in belongs to the caller

    with pytest.raises(ForbiddenAddressError, match=r"169\.254\.169\.254 is a link-local"):
        await check_destination("http://metadata.example/", False, FakeResolver("169.254.169.254"))


async def test_check_destination_refuses_a_name_with_any_forbidden_address() -> None:
    """A rebinding-style answer mixing public and private addresses is refused up front."""
    mixed = FakeResolver("93.184.216.34", "10.0.0.7")
    pattern = r"resolves to a forbidden address.*10\.0\.0\.7"
    with pytest.raises(ForbiddenAddressError, match=pattern):
        await check_destination("http://mixed.example/", False, mixed)
    # also when handed the guarded resolver: the check looks at the unfiltered answer
    with pytest.raises(ForbiddenAddressError):
        await check_destination("http://mixed.example/", False, GuardedResolver(inner=mixed))
    # allowed with allow_private, without even resolving
    await check_destination("http://mixed.example/", True, ExplodingResolver())


async def test_guarded_resolver_filters_answers() -> None:
    inner = FakeResolver("10.0.0.7", "93.184.216.34", "::1", "2606:4700::1", "::ffff:127.0.0.1")
    resolver = GuardedResolver(inner=inner)
    answers = await resolver.resolve("mixed.example", 443, socket.AF_UNSPEC)
    assert [answer["host"] for answer in answers] == ["93.184.216.34", "2606:4700::1"]

    with pytest.raises(ForbiddenAddressError, match="resolves only to forbidden") as caught:
        await GuardedResolver(inner=FakeResolver("127.0.0.1", "::1")).resolve("evil.example")
    assert "127.0.0.1 is a loopback address" in str(caught.value)

    passthrough = await GuardedResolver(True, inner=FakeResolver("10.0.0.7")).resolve("lan")
    assert [answer["host"] for answer in passthrough] == ["10.0.0.7"]

    await resolver.close()
    assert inner.closed


async def test_localhost_is_refused_by_the_resolver() -> None:
    """``localhost`` resolves to loopback from the hosts file: no network involved."""
    resolver = GuardedResolver()
    try:
        with pytest.raises(ForbiddenAddressError, match="loopback"):
            await resolver.resolve("localhost", 80, socket.AF_UNSPEC)
        answers = await GuardedResolver(allow_private=True).resolve("localhost", 80)
        assert answers and all(ipaddress.ip_address(a["host"]).is_loopback for a in answers)
    finally:
        await resolver.close()
    with pytest.raises(ForbiddenAddressError, match="loopback"):
        await check_destination("http://localhost:8080/hook", allow_private=False)


def test_unsafe_cause() -> None:
    refused = ForbiddenAddressError("refused")
    assert unsafe_cause(refused) is refused
    wrapped = aiohttp.ClientConnectorError(_connection_key(), refused)
    assert unsafe_cause(wrapped) is refused
    try:
        try:
            check_url("ftp://x")
        except UnsafeURLError as exc:
            raise RuntimeError("delivery failed") from exc
    except RuntimeError as outer:
        assert isinstance(unsafe_cause(outer), UnsafeURLError)
    assert unsafe_cause(OSError("connection refused")) is None
    assert unsafe_cause(aiohttp.ClientConnectorError(_connection_key(), OSError(111, "x"))) is None


def _connection_key() -> aiohttp.client_reqrep.ConnectionKey:
    """A connection key for building aiohttp errors by hand."""
    return aiohttp.client_reqrep.ConnectionKey("h", 80, False, True, None, None, None)


@pytest.fixture
async def local_server() -> AsyncIterator[TestServer]:
    """An aiohttp server on 127.0.0.1 that answers every request with 200 ``ok``."""

    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", ok)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield server
    await server.close()


async def test_guarded_session_reaches_a_local_server_with_allow_private(
    local_server: TestServer,
) -> None:
    url = f"http://127.0.0.1:{local_server.port}/hook"
    await check_destination(url, allow_private=True)
    async with guarded_session(allow_private=True, timeout=5) as session:
        async with session.post(url, data=b"{}") as response:
            assert response.status == 200
            assert await response.text() == "ok"
        async with session.get(f"http://localhost:{local_server.port}/") as response:
            assert response.status == 200


async def test_guarded_session_refuses_a_literal_loopback_at_connect_time(
    local_server: TestServer,
) -> None:
    """aiohttp skips the resolver for literal IPs: the socket factory refuses them."""
    url = f"http://127.0.0.1:{local_server.port}/hook"
    with pytest.raises(ForbiddenAddressError):
        await check_destination(url, allow_private=False)
    async with guarded_session(allow_private=False, timeout=5) as session:
        with pytest.raises(aiohttp.ClientConnectorError) as caught:
            await session.post(url, data=b"{}")
    message = str(caught.value)
    assert "refused to connect to 127.0.0.1: loopback address" in message
    assert "allow_private" in message
    assert isinstance(unsafe_cause(caught.value), ForbiddenAddressError)


async def test_guarded_session_refuses_a_name_resolving_to_loopback(
    local_server: TestServer,
) -> None:
    url = f"http://localhost:{local_server.port}/hook"
    async with guarded_session(allow_private=False, timeout=5) as session:
        with pytest.raises(aiohttp.ClientConnectorDNSError) as caught:
            await session.get(url)
    assert "resolves only to forbidden addresses" in str(caught.value)
    assert "loopback" in str(caught.value)
    assert isinstance(unsafe_cause(caught.value), ForbiddenAddressError)


@pytest.mark.parametrize(
    "host", ["2130706433", "0177.0.0.1", "127.1", "[::ffff:127.0.0.1]", "[::1]"]
)
async def test_guarded_session_refuses_other_loopback_spellings(
    local_server: TestServer, host: str
) -> None:
    url = f"http://{host}:{local_server.port}/"
    async with guarded_session(allow_private=False, timeout=5) as session:
        with pytest.raises(aiohttp.ClientConnectorError) as caught:
            await session.get(url)
    assert isinstance(unsafe_cause(caught.value), ForbiddenAddressError)


def test_guarded_session_needs_a_running_loop() -> None:
    with pytest.raises(RuntimeError):
        urlguard.guarded_session(allow_private=False, timeout=5)
