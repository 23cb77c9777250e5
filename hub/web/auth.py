"""The admin token: from configuration, or generated once, stored only as a SHA-256 hash.

``/admin`` and ``/api/*`` accept ``Authorization: Bearer <token>`` or the admin page's session
cookie (HMAC-signed, expiring, HttpOnly, SameSite=Strict). Comparisons are constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

from aiohttp import web

from hub.store import Store

TOKEN_META_KEY = "admin_token_sha256"  # noqa: S105 (a meta table key, not a secret)
SESSION_COOKIE = "hub_session"
SESSION_TTL_S = 12 * 3600


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class AdminAuth:
    """Verifies admin tokens and session cookies."""

    def __init__(self, token_hash: str) -> None:
        self._hash = token_hash

    @classmethod
    async def setup(cls, configured: str | None, store: Store) -> tuple[AdminAuth, str | None]:
        """Use the configured token, else the stored hash, else generate a token.

        :return: the auth and, only when generated now, the plain token to print once.
        """
        if configured:
            return cls(_digest(configured)), None
        stored = await store.get_meta(TOKEN_META_KEY)
        if stored:
            return cls(stored), None
        token = secrets.token_urlsafe(32)
        await store.set_meta(TOKEN_META_KEY, _digest(token))
        return cls(_digest(token)), token

    def check_token(self, token: str) -> bool:
        """Constant-time check of a presented admin token."""
        return hmac.compare_digest(_digest(token), self._hash)

    def _sign(self, issued: str) -> str:
        return hmac.new(self._hash.encode(), f"session:{issued}".encode(), "sha256").hexdigest()

    def new_session(self) -> str:
        """A session cookie value valid for SESSION_TTL_S."""
        issued = str(int(time.time()))
        return f"{issued}.{self._sign(issued)}"

    def check_session(self, value: str) -> bool:
        """True for an unexpired cookie value made by :meth:`new_session`."""
        issued, _, signature = value.partition(".")
        if not issued.isdigit() or time.time() - int(issued) > SESSION_TTL_S:
            return False
        return hmac.compare_digest(signature, self._sign(issued))

    def authorized(self, request: web.Request) -> bool:
        """True if the request carries a valid bearer token or session cookie."""
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "bearer" and token:
            return self.check_token(token.strip())
        cookie = request.cookies.get(SESSION_COOKIE)
        return bool(cookie) and self.check_session(cookie or "")
