"""The admin token: from configuration, or generated once, stored only as a SHA-256 hash.

``/admin`` and ``/api/*`` accept ``Authorization: Bearer <token>`` or the admin page's session
cookie (HMAC-signed with a key that lives only in this process's memory, expiring, HttpOnly,
SameSite=Strict). A state-changing request authenticated by the cookie must also come from
the hub's own origin (``Origin`` or ``Sec-Fetch-Site``), which SameSite alone does not
guarantee for other ports of the same host. Comparisons are constant-time and never raise.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

from aiohttp import web
from yarl import URL

from hub.store import Store
from hub.web.params import parse_int

TOKEN_META_KEY = "admin_token_sha256"  # noqa: S105 (a meta table key, not a secret)
SESSION_COOKIE = "hub_session"
SESSION_TTL_S = 12 * 3600
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
    """Verifies admin tokens and session cookies."""

    def __init__(self, token_hash: str) -> None:
        self._hash = token_hash
        self._session_key = secrets.token_bytes(32)  # a restart signs everyone out

    @classmethod
    async def setup(cls, configured: str | None, store: Store) -> tuple[AdminAuth, str | None]:
        """Use the configured token, else the stored hash, else generate a token.

        :return: the auth and, only when generated now, the plain token to print once.
        """
        if configured:
            return cls(token_digest(configured)), None
        stored = await store.get_meta(TOKEN_META_KEY)
        if stored:
            return cls(stored), None
        token = secrets.token_urlsafe(32)
        await store.set_meta(TOKEN_META_KEY, token_digest(token))
        return cls(token_digest(token)), token

    def check_token(self, token: str) -> bool:
        """Constant-time check of a presented admin token."""
        return hmac.compare_digest(token_digest(token), self._hash)

    def _sign(self, issued: str) -> str:
        message = f"session:{self._hash}:{issued}".encode()
        return hmac.new(self._session_key, message, "sha256").hexdigest()

    def new_session(self) -> str:
        """A session cookie value valid for SESSION_TTL_S."""
        issued = str(int(time.time()))
        return f"{issued}.{self._sign(issued)}"

    def check_session(self, value: str) -> bool:
        """True for an unexpired cookie value made by :meth:`new_session` in this process."""
        issued, _, signature = value.partition(".")
        when = parse_int(issued, max_digits=12)
        if when is None or time.time() - when > SESSION_TTL_S:
            return False
        return hmac.compare_digest(_bytes(signature), self._sign(issued).encode())

    def authorized(self, request: web.Request) -> bool:
        """True if the request carries a valid bearer token, or a valid session cookie and
        (for a state-changing method) comes from the hub's own origin."""
        credential = presented_credential(request)
        kind, _, value = credential.partition(":")
        if kind == "bearer":
            return self.check_token(value)
        if kind != "session" or not self.check_session(value):
            return False
        return request.method in SAFE_METHODS or same_origin(request)
