"""SSRF protection for outbound webhook deliveries.

A subscriber URL is user input that the hub will call, so it must not reach the hub's own
machine, its LAN or the cloud metadata service. Unless ``allow_private`` is set (the
``webhooks.outbound.allow_private`` option, for firms whose tools live on their LAN), three
layers apply, and callers should use all of them:

1. :func:`check_url` - only ``http``/``https``, a host, no credentials in the URL.
2. :func:`check_destination` - before each request: ``check_url``, then the host is resolved
   (or, for a literal IP, parsed) and refused when *any* address is forbidden. This gives the
   clear "400" reason at subscription time and re-checks on every delivery (DNS can change).
3. :func:`guarded_session` - the session that sends the request, checked at connect time so
   there is no gap between check and connect (DNS rebinding):

   * its :class:`GuardedResolver` drops forbidden addresses from every DNS answer, so the
     address aiohttp connects to is one that was checked; when nothing safe remains it raises
     :class:`ForbiddenAddressError` (an :class:`OSError`, which aiohttp reports as
     ``ClientConnectorDNSError`` with the reason in its message);
   * aiohttp skips the resolver for literal IP hosts (``http://127.0.0.1/``, also redirect
     targets), so the connector's ``socket_factory`` checks the exact address handed to
     ``connect()`` as well, and refuses non-canonical numeric hosts (``2130706433``,
     ``0177.0.0.1``) that the C library would otherwise turn into loopback.

Use :func:`unsafe_cause` to tell a refusal (a permanent 400-type failure) from a network error.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import socket
from collections.abc import Iterable

import aiohttp
from aiohappyeyeballs import AddrInfoType
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from yarl import URL

__all__ = [
    "ALLOWED_SCHEMES",
    "ForbiddenAddressError",
    "GuardedResolver",
    "UnsafeURLError",
    "check_destination",
    "check_url",
    "forbidden_reason",
    "guarded_session",
    "is_forbidden_address",
    "unsafe_cause",
]

ALLOWED_SCHEMES = frozenset({"http", "https"})

_SHARED_SPACE = ipaddress.IPv4Network("100.64.0.0/10")  # RFC 6598 carrier-grade NAT
_UNIQUE_LOCAL = ipaddress.IPv6Network("fc00::/7")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052 well-known prefix
_HINT = "set webhooks.outbound.allow_private = true to allow LAN destinations"


class UnsafeURLError(ValueError):
    """A webhook URL is refused: bad scheme, missing host, credentials, or a forbidden address.

    ``str(exc)`` is a sentence fit for a 400 answer.
    """


class ForbiddenAddressError(OSError, UnsafeURLError):
    """A destination resolves to (or is) a forbidden address.

    It is an :class:`OSError` so that aiohttp's connector treats it as a connection failure
    (wrapped in ``aiohttp.ClientConnectorError``, message kept), and an
    :class:`UnsafeURLError` so that one ``except`` catches every refusal.
    """

    def __init__(self, message: str) -> None:
        """Build the error with ``errno.EACCES`` and ``message`` as its ``strerror``."""
        super().__init__(errno.EACCES, message)

    def __str__(self) -> str:
        """Return the plain message (without the ``[Errno 13]`` prefix)."""
        return self.strerror or super().__str__()


def _v4_reason(ip: ipaddress.IPv4Address) -> str | None:
    """Return why an IPv4 address is forbidden, or None when it is publicly routable."""
    if ip.is_unspecified:
        return "unspecified address"
    if ip.is_loopback:
        return "loopback address"
    if ip.is_link_local:
        return "link-local address (includes cloud metadata 169.254.169.254)"
    if ip in _SHARED_SPACE:
        return "shared address space (100.64.0.0/10)"
    return _general_reason(ip)


def _general_reason(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """The checks both address families share, after their own specific ones."""
    if ip.is_private:
        return "private address"
    if ip.is_multicast:
        return "multicast address"
    if ip.is_reserved:
        return "reserved address"
    if not ip.is_global:
        return "address not globally routable"
    return None


def _v6_reason(ip: ipaddress.IPv6Address) -> str | None:
    """Return why an IPv6 address is forbidden, or None when it is publicly routable."""
    mapped = ip.ipv4_mapped
    if mapped is not None:
        inner = _v4_reason(mapped)
        return f"IPv4-mapped {inner}" if inner else None
    if ip in _NAT64:
        inner = _v4_reason(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        return f"NAT64-embedded {inner}" if inner else None
    sixtofour = ip.sixtofour
    if sixtofour is not None:
        inner = _v4_reason(sixtofour)
        if inner:
            return f"6to4-embedded {inner}"
    if ip.is_unspecified:
        return "unspecified address"
    if ip.is_loopback:
        return "loopback address"
    if ip.is_link_local:
        return "link-local address"
    if ip.is_site_local:
        return "site-local address"
    if ip in _UNIQUE_LOCAL:
        return "unique-local address (fc00::/7)"
    return _general_reason(ip)


def forbidden_reason(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Return why ``ip`` may not be a webhook destination, or None when it may."""
    if isinstance(ip, ipaddress.IPv4Address):
        return _v4_reason(ip)
    return _v6_reason(ip)


def is_forbidden_address(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Return True for loopback, private, link-local, metadata, shared, reserved, … addresses.

    IPv4-mapped (``::ffff:a.b.c.d``), NAT64 and 6to4 IPv6 forms are judged by the embedded
    IPv4 address; anything not globally routable is forbidden.
    """
    return forbidden_reason(ip) is not None


def _looks_numeric(host: str) -> bool:
    """Return True when aiohttp would treat ``host`` as a literal IP (and skip the resolver)."""
    return ":" in host or host.replace(".", "").isdigit()


def _address_reason(host: str) -> str | None:
    """Return why connecting to the numeric ``host`` is forbidden, or None when it is safe.

    Only canonical addresses are accepted: a numeric form that :mod:`ipaddress` does not parse
    (``2130706433``, ``0177.0.0.1``, ``127.1``) is refused, since ``connect()`` could read it as
    a forbidden address.
    """
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return "not a canonical IP address"
    return forbidden_reason(ip)


def check_url(url: str) -> None:
    """Raise :class:`UnsafeURLError` unless ``url`` is an absolute http(s) URL fit for a webhook.

    Refused: another scheme, no host, credentials (``user:pass@``), port 0, whitespace or
    control characters, anything yarl cannot parse, a host name that is not valid IDNA (an
    empty or over-long label). Addresses are checked by :func:`check_destination`, not here.
    """
    if not isinstance(url, str) or not url:
        raise UnsafeURLError("the webhook URL is empty")
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        raise UnsafeURLError("the webhook URL contains whitespace or control characters")
    try:
        parsed = URL(url)
        scheme = parsed.scheme.lower()
        host = parsed.raw_host
        port = parsed.port
        has_credentials = parsed.raw_user is not None or parsed.raw_password is not None
    except (ValueError, TypeError) as exc:
        raise UnsafeURLError(f"the webhook URL is not valid: {exc}") from None
    if scheme not in ALLOWED_SCHEMES:
        shown = f"{scheme}://" if scheme else "none"
        raise UnsafeURLError(f"only http and https webhook URLs are allowed (scheme: {shown})")
    if not host:
        raise UnsafeURLError("the webhook URL has no host")
    if has_credentials:
        raise UnsafeURLError("the webhook URL must not contain credentials (user:password@)")
    if port == 0:
        raise UnsafeURLError("the webhook URL has an invalid port (0)")
    if not _looks_numeric(host):
        try:  # what getaddrinfo does with a name; an empty or over-long label raises here
            host.encode("idna")
        except UnicodeError:
            raise UnsafeURLError(f"the webhook URL host {host!r} is not a valid name") from None


def _format_refusal(host: str, refused: Iterable[tuple[str, str]], *, only: bool) -> str:
    """Return the sentence explaining why ``host`` was refused, with each address and reason."""
    listed = "; ".join(f"{address} is a {reason}" for address, reason in refused)
    verb = "resolves only to forbidden addresses" if only else "resolves to a forbidden address"
    return f"refused webhook destination {host!r}: {verb} ({listed}); {_HINT}"


class GuardedResolver(AbstractResolver):
    """An aiohttp resolver that drops forbidden addresses from every answer.

    Wraps aiohttp's ``DefaultResolver`` (``ThreadedResolver`` unless aiodns is installed),
    created on first use, or ``inner``. With ``allow_private=True`` answers pass unchanged.
    Note that aiohttp does not call a resolver for literal IP hosts: :func:`guarded_session`
    covers those at connect time, :func:`check_destination` before the request.
    """

    def __init__(self, allow_private: bool = False, inner: AbstractResolver | None = None) -> None:
        """Guard ``inner`` (default: a DefaultResolver made on first use)."""
        self.allow_private = allow_private
        self._inner = inner

    @property
    def inner(self) -> AbstractResolver:
        """Return the wrapped resolver, creating the default one (needs a running loop)."""
        if self._inner is None:
            self._inner = DefaultResolver()
        return self._inner

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """Resolve ``host`` and return only safe addresses.

        Raises :class:`ForbiddenAddressError` when every address is forbidden; resolution
        failures of the wrapped resolver (``OSError``) propagate unchanged.
        """
        answers = await self.inner.resolve(host, port, family)
        if self.allow_private:
            return answers
        safe: list[ResolveResult] = []
        refused: list[tuple[str, str]] = []
        for answer in answers:
            reason = _address_reason(answer["host"])
            if reason is None:
                safe.append(answer)
            else:
                refused.append((answer["host"], reason))
        if not safe:
            if not refused:
                raise OSError(f"no address found for {host!r}")
            raise ForbiddenAddressError(_format_refusal(host, refused, only=True))
        return safe

    async def close(self) -> None:
        """Close the wrapped resolver if one was created."""
        if self._inner is not None:
            await self._inner.close()


async def check_destination(
    url: str, allow_private: bool, resolver: AbstractResolver | None = None
) -> None:
    """Validate ``url`` and where it points, before a request; raise UnsafeURLError if refused.

    Runs :func:`check_url`; then, unless ``allow_private``, parses a literal IP host or resolves
    a name (with ``resolver``, unwrapped if it is a :class:`GuardedResolver`; default: a fresh
    ``DefaultResolver``) and raises :class:`ForbiddenAddressError` if *any* address is
    forbidden. A name that does not resolve raises the resolver's ``OSError`` (a network
    failure, not a refusal). Apply it before every delivery *and* send with
    :func:`guarded_session`, which re-checks the address actually connected to.
    """
    check_url(url)
    if allow_private:
        return
    parsed = URL(url)
    host = parsed.raw_host or ""
    port = parsed.port or 0
    if _looks_numeric(host):
        reason = _address_reason(host)
        if reason is not None:
            raise ForbiddenAddressError(_format_refusal(host, [(host, reason)], only=False))
        return
    if isinstance(resolver, GuardedResolver):
        resolver = resolver.inner
    own = resolver is None
    active = DefaultResolver() if resolver is None else resolver
    try:
        answers = await active.resolve(host, port, socket.AF_UNSPEC)
    finally:
        if own:
            await active.close()
    if not answers:
        raise OSError(f"no address found for {host!r}")
    refused = [
        (answer["host"], reason)
        for answer in answers
        if (reason := _address_reason(answer["host"])) is not None
    ]
    if refused:
        raise ForbiddenAddressError(
            _format_refusal(host, refused, only=len(refused) == len(answers))
        )


def _guarded_socket(addr_info: AddrInfoType) -> socket.socket:
    """Socket factory for the connector: refuse to connect to a forbidden or non-canonical IP.

    This sees the exact address given to ``connect()``, literal-IP hosts included.
    """
    family, type_, proto, _, address = addr_info
    host = str(address[0])
    reason = _address_reason(host)
    if reason is not None:
        raise ForbiddenAddressError(f"refused to connect to {host}: {reason}; {_HINT}")
    return socket.socket(family=family, type=type_, proto=proto)


def guarded_session(allow_private: bool, timeout: float) -> aiohttp.ClientSession:
    """Return a ClientSession for deliveries: guarded resolver and connect-time address check.

    ``timeout`` is the total seconds per request. Environment proxies are ignored
    (``trust_env=False``): a proxy would hide the destination from the guard. Call it inside a
    running event loop and close the session when done.
    """
    asyncio.get_running_loop()  # fail early and clearly outside a loop
    connector = aiohttp.TCPConnector(
        resolver=GuardedResolver(allow_private),
        socket_factory=None if allow_private else _guarded_socket,
        ttl_dns_cache=10,
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=timeout),
        trust_env=False,
    )


def unsafe_cause(exc: BaseException) -> UnsafeURLError | None:
    """Return the :class:`UnsafeURLError` behind ``exc`` (itself, an aiohttp ``os_error``, or a
    cause/context), or None when ``exc`` is not a refusal by this module."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, UnsafeURLError):
            return current
        if isinstance(current, aiohttp.ClientConnectorError):
            current = current.os_error
            continue
        current = current.__cause__ or current.__context__
    return None
