"""The admin token: from configuration, or generated once, stored only as a SHA-256 hash.

``/admin`` and ``/api/*`` accept ``Authorization: Bearer <token>`` or the admin page's session
cookie (a random session id the server looks up on every request: :mod:`hub.web.sessions`;
HttpOnly, SameSite=Strict, Secure when the hub is reached over https). A state-changing
request authenticated by the cookie must also come from the hub's own origin (``Origin`` or
``Sec-Fetch-Site``), which SameSite alone does not guarantee for other ports of the same host.
Comparisons are constant-time and never raise.

Failed token attempts (the login form, a bearer token) are logged without the token and
throttled per client address (:mod:`hub.web.throttle`): past ``admin.max_failures`` within
``admin.failure_window``, that address's token attempts get 429 with ``Retry-After``, the
right token included, so a guess cannot be confirmed. Sessions are not throttled.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

import orjson
import structlog
from aiohttp import web
from yarl import URL

from hub.config import HubSettings
from hub.store import Store
from hub.web.sessions import Sessions
from hub.web.throttle import FailureLimiter, address_key

log = structlog.get_logger("hub.web")
TOKEN_META_KEY = "admin_token_sha256"  # noqa: S105 (a meta table key, not a secret)
SESSION_COOKIE = "hub_session"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _bytes(text: str) -> bytes:
    """Header and cookie text as bytes, whatever it holds (aiohttp keeps bad UTF-8 escaped)."""
    return text.encode("utf-8", "surrogateescape")


def token_digest(token: str) -> str:
    """The SHA-256 hex digest under which a token or credential is kept."""
    return hashlib.sha256(_bytes(token)).hexdigest()


def presented_credential(request: web.Request) -> str:
    """The admin credential the request carries (``bearer:…`` or ``session:…``), or ""."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return f"bearer:{token.strip()}"
    cookie = request.cookies.get(SESSION_COOKIE)
    return f"session:{cookie}" if cookie else ""


def same_origin(request: web.Request) -> bool:
    """True if a browser request comes from the hub's own pages."""
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site is not None:
        return fetch_site in {"same-origin", "none"}
    origin = request.headers.get("Origin")
    if origin is None:
        return True  # not sent by browsers for same-origin form posts in older versions
    try:
        return URL(origin).host_port_subcomponent == URL(f"//{request.host}").host_port_subcomponent
    except ValueError:
        return False


class AdminAuth:
    """Verifies admin tokens (throttled per client address) and session cookies.

    ``secure_cookies`` says whether cookies are marked ``Secure``: the hub is reached over
    https (``server.public_url``).
    """

    def __init__(self, token_hash: str, settings: HubSettings) -> None:
        self._hash = token_hash
        admin = settings.admin
        self.sessions = Sessions(admin.max_sessions, admin.session_ttl)
        self.failures = FailureLimiter(admin.max_failures, admin.failure_window)
        self.secure_cookies = settings.server.base_url.startswith("https://")

    @classmethod
    async def setup(cls, settings: HubSettings, store: Store) -> tuple[AdminAuth, str | None]:
        """Use the configured token, else the stored hash, else generate a token.

        :return: the auth and, only when generated now, the plain token to print once.
        """
        configured = settings.admin.token
        if configured is not None:
            return cls(token_digest(configured.get_secret_value()), settings), None
        stored = await store.get_meta(TOKEN_META_KEY)
        if stored:
            return cls(stored, settings), None
        token = secrets.token_urlsafe(32)
        await store.set_meta(TOKEN_META_KEY, token_digest(token))
        return cls(token_digest(token), settings), token

    def check_token(self, token: str) -> bool:
        """Constant-time check of a presented admin token (not throttled: see :meth:`sign_in`)."""
        return hmac.compare_digest(token_digest(token), self._hash)

    def sign_in(self, request: web.Request, token: str, via: str) -> bool:
        """Check a token presented by ``request``'s client; log and count a wrong one.

        :param via: how it came (``login form``, ``bearer``), for the log.
        :raise web.HTTPTooManyRequests: the client's address failed too often lately (JSON,
            with ``Retry-After``); the token is not checked.
        """
        address = address_key(request.remote)
        wait = self.failures.retry_after(address)
        if wait is not None:
            raise throttled(wait)
        if self.check_token(token):
            return True
        count = self.failures.failed(address)
        limit = self.failures.max_failures
        log.warning(
            "admin sign-in failed", address=address, via=via, path=request.path, failures=count
        )
        if count >= limit:
            log.warning(
                "admin sign-in throttled",
                address=address,
                failures=count,
                window_s=self.failures.window_s,
            )
        return False

    def new_session(self) -> str:
        """A new session's cookie value."""
        return self.sessions.new()

    def end_session(self, request: web.Request) -> None:
        """End the session whose cookie ``request`` carries (signing out)."""
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie:
            self.sessions.end(cookie)

    def authorized(self, request: web.Request) -> bool:
        """True if the request carries a valid bearer token, or a live session cookie and
        (for a state-changing method) comes from the hub's own origin.

        :raise web.HTTPTooManyRequests: a bearer token from a throttled address.
        """
        credential = presented_credential(request)
        kind, _, value = credential.partition(":")
        if kind == "bearer":
            return self.sign_in(request, value, "bearer")
        if kind != "session" or not self.sessions.valid(value):
            return False
        return request.method in SAFE_METHODS or same_origin(request)


def throttled(retry_after: int) -> web.HTTPTooManyRequests:
    """The 429 for a throttled address (JSON ``{"error": …}`` and ``Retry-After``)."""
    error = f"too many failed sign-in attempts from this address: retry in {retry_after} s"
    return web.HTTPTooManyRequests(
        text=orjson.dumps({"error": error}).decode(),
        content_type="application/json",
        headers={"Retry-After": str(retry_after)},
    )
