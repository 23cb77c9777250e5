"""Admin sessions of the login form, kept in this process's memory.

A session id is 256 random bits, handed to the browser as its cookie; the server keeps only
its SHA-256 digest and when it expires. Every request's cookie is looked up here, so signing
out (:meth:`Sessions.end`) refuses the cookie at once, replayed or not. Sessions last
``ttl_s`` from sign-in; at most ``max_sessions`` are held, and a sign-in past that ends the
oldest one. Nothing is stored: a restart of the daemon signs every browser out.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("utf-8", "surrogateescape")).hexdigest()


class Sessions:
    """The live sessions: digest of the id → expiry (monotonic seconds), oldest first.

    :param clock: monotonic seconds (tests pass their own).
    """

    def __init__(
        self, max_sessions: int, ttl_s: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl_s = ttl_s
        self._max = max_sessions
        self._clock = clock
        self._expiry: OrderedDict[str, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._expiry)

    def new(self) -> str:
        """Start a session; return its id (the cookie value)."""
        self._drop_expired()
        while len(self._expiry) >= self._max:
            self._expiry.popitem(last=False)  # the oldest session ends
        session_id = secrets.token_urlsafe(32)
        self._expiry[_digest(session_id)] = self._clock() + self.ttl_s
        return session_id

    def valid(self, session_id: str) -> bool:
        """True while ``session_id`` is a live session (not ended, not expired)."""
        expires = self._expiry.get(_digest(session_id))
        return expires is not None and expires > self._clock()

    def end(self, session_id: str) -> bool:
        """End ``session_id``; True if it was live."""
        return self._expiry.pop(_digest(session_id), None) is not None

    def _drop_expired(self) -> None:
        """Every session lasts the same ``ttl_s``, so the expired ones are at the front."""
        now = self._clock()
        while self._expiry and next(iter(self._expiry.values())) <= now:
            self._expiry.popitem(last=False)
