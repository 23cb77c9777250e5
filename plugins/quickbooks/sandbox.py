"""A local, wire-compatible fake of the QuickBooks Online v3 API and Intuit's OAuth 2.0 server.

Used by the QuickBooks plugin's tests, its benchmarks and the offline demo. It serves generated,
deterministic companies (see :mod:`plugins.quickbooks._sandbox_data`) through the endpoints a
sync client uses — ``query`` (Intuit's query language: :mod:`plugins.quickbooks._sandbox_query`),
read by id, ``cdc`` — behind Intuit's OAuth 2.0 (authorization code, rotating refresh tokens
with their five-year limit, revocation) and OpenID Connect (RS256 id_tokens, JWKS, userinfo,
discovery: :mod:`plugins.quickbooks._sandbox_oidc`), with Intuit's throttling, Fault bodies and
webhook signatures, plus run-time fault injection for tests.

Run it standalone with ``python -m plugins.quickbooks.sandbox --port 8765``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import hmac
import math
import re
import secrets
import sys
import time
import uuid
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Literal
from urllib.parse import urlencode

import aiohttp
import orjson
from aiohttp import web
from aiohttp.typedefs import Handler

from . import _sandbox_oidc as oidc
from ._sandbox_data import (
    BY_LOWER,
    CDC_UNSUPPORTED,
    JSON,
    KEYLESS,
    LIST_ENTITIES,
    Company,
    CompanySpec,
    answer_name,
    default_counts,
    scaled_counts,
)
from ._sandbox_query import (
    EXPLICIT_ONLY,
    QueryError,
    QueryPlan,
    parse_query,
    parse_timestamp,
    run,
)
from ._sandbox_reports import ReportBook, ReportProblem

__all__ = [
    "DEFAULT_REALM",
    "STATE_KEY",
    "CompanySpec",
    "GrantRefused",
    "InjectedFault",
    "Operation",
    "RequestRecord",
    "RunningSandbox",
    "SandboxClock",
    "SandboxConfig",
    "SandboxState",
    "TokenPair",
    "WebhookDelivery",
    "WebhookEvent",
    "create_app",
    "default_counts",
    "main",
    "scaled_counts",
    "sign_intuit_webhook",
    "start_sandbox",
]

DEFAULT_REALM = "9130350000000001"
_OBJECT_NOT_FOUND = (
    "Object Not Found : Something you're trying to use has been made inactive. "
    "Check the fields with accounts, customers, items, vendors or employees."
)
_GATEWAY_ERRORS = {401: ("AuthenticationFailed", "3200"), 403: ("AuthorizationFailed", "3100")}
_ACCOUNTING_SCOPE = "com.intuit.quickbooks.accounting"
_NOT_JSON = "the sandbox serves JSON only: send Accept: application/json"
_SYSTEM_FAULT = ("10000", "An application error has occurred while processing your request")
_PAST_TENSE = {"Create": "created", "Update": "updated", "Delete": "deleted"}
_PAST_TENSE |= {"Merge": "merged", "Void": "voided", "Emailed": "emailed"}


@dataclass(frozen=True)
class SandboxConfig:
    """Everything that shapes a sandbox; the defaults mimic Intuit's production limits.

    ``start_time`` is where the sandbox clock starts (``None``: the current time); generated
    data spans ``history_days`` before it, in a fixed UTC offset of ``utc_offset_minutes``.
    An empty ``redirect_uris`` accepts any redirect URI at the authorize endpoint. A grant's
    refresh tokens expire ``refresh_token_lifetime`` seconds after their last use, and never
    later than ``refresh_token_max_age`` (Intuit's five years) after the first grant.
    :func:`start_sandbox` serves the API on ``port`` and OAuth on ``oauth_port`` (0: free ports).
    """

    companies: tuple[CompanySpec, ...] = (CompanySpec(DEFAULT_REALM),)
    client_id: str = "ABsandboxClientId0000000000000000000000000000000"
    client_secret: str = "sandboxClientSecret0000000000000000000000"
    redirect_uris: tuple[str, ...] = ()
    host: str = "127.0.0.1"
    port: int = 0
    oauth_port: int = 0
    start_time: datetime | None = None
    freeze_clock: bool = False
    history_days: int = 365
    utc_offset_minutes: int = -420
    access_token_lifetime: int = 3600
    refresh_token_lifetime: int = 8_726_400
    refresh_token_max_age: int = 157_680_000
    auth_code_lifetime: int = 300
    throttle: bool = True
    rate_limit_per_minute: int = 500
    rate_limit_per_second: int = 10
    max_concurrent: int = 10
    prerender: bool = False
    prerender_max_bytes: int = 2 * 1024**3
    cdc_max_objects: int = 1000
    cdc_lookback_days: int = 30
    require_json_accept: bool = True
    request_log_size: int = 100_000
    webhook_source: str = "intuit.dsnBgbseACLLRZNxo2dfc4evmEJdxde58xeeYcZliOU="


class SandboxClock:
    """The sandbox's notion of now: starts at a given time and runs (unless frozen)."""

    def __init__(self, start: datetime, frozen: bool) -> None:
        self.frozen = frozen
        self._base = _aware(start)
        self._mark = time.monotonic()

    def now(self) -> datetime:
        """The current sandbox time (timezone-aware)."""
        if self.frozen:
            return self._base
        return self._base + timedelta(seconds=time.monotonic() - self._mark)

    def set(self, when: datetime) -> None:
        """Jump to ``when`` (timezone-aware); the clock keeps running from there."""
        self._base = _aware(when)
        self._mark = time.monotonic()

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds``."""
        self.set(self.now() + timedelta(seconds=seconds))


def _aware(when: datetime) -> datetime:
    if when.tzinfo is None:
        raise ValueError("the sandbox clock needs a timezone-aware datetime")
    return when


@dataclass(frozen=True)
class TokenPair:
    """Tokens of one OAuth grant, as the token endpoint would return them."""

    realm_id: str
    access_token: str
    refresh_token: str
    expires_in: int
    x_refresh_token_expires_in: int
    x_refresh_token_hard_expires_in: int


@dataclass
class RequestRecord:
    """One request the sandbox received; ``status`` is None when the connection was dropped,
    ``at`` its arrival (monotonic seconds, the clock the throttle counts on), ``intuit_tid``
    the id its answer carried."""

    method: str
    path: str
    realm_id: str | None
    minorversion: str | None
    query: str | None = None
    grant_type: str | None = None
    status: int | None = None
    at: float = field(default_factory=time.monotonic)
    intuit_tid: str | None = None


@dataclass
class InjectedFault:
    """A fault for the next ``remaining`` requests whose path matches ``path`` (a regex),
    once ``skip`` matching requests have been answered normally."""

    kind: Literal["status", "delay", "drop", "fault_body"]
    remaining: int = 1
    path: str | None = None
    status: int = 0
    retry_after: float | None = None
    delay: float = 0.0
    skip: int = 0

    def matches(self, path: str) -> bool:
        """Whether this fault applies to a request for ``path``."""
        return self.remaining > 0 and (self.path is None or re.search(self.path, path) is not None)


Operation = Literal["Create", "Update", "Delete", "Merge", "Void", "Emailed"]


@dataclass(frozen=True)
class WebhookEvent:
    """One data-change event, as Intuit's webhooks report it (``deleted_id``: on a Merge, the
    entity merged away into ``entity_id``)."""

    realm_id: str
    entity: str
    entity_id: str
    operation: Operation
    last_updated: datetime
    deleted_id: str | None = None


@dataclass(frozen=True)
class WebhookDelivery:
    """What :meth:`SandboxState.send_webhook` sent and what the receiver answered."""

    status: int
    response_body: str
    payload: bytes
    signature: str


def sign_intuit_webhook(body: bytes, verifier_token: str) -> str:
    """The ``intuit-signature`` header: base64 of HMAC-SHA256 of the raw body."""
    digest = hmac.new(verifier_token.encode(), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


# --------------------------------------------------------------------------- OAuth tokens


@dataclass
class _Grant:
    realm_id: str
    scope: str
    granted_at: float
    hard_expires: float
    refresh_token: str = ""
    refresh_expires: float = 0.0
    revoked: bool = False


class GrantRefused(Exception):
    """The token endpoint's ``invalid_grant``, with its ``error_description``."""


@dataclass
class _Access:
    grant: _Grant
    expires: float


@dataclass
class _Code:
    realm_id: str
    redirect_uri: str
    scope: str
    expires: float
    used: bool = False


class _Tokens:
    """Intuit's token server: codes, rotating refresh tokens, expiring access tokens."""

    def __init__(self, config: SandboxConfig, clock: SandboxClock) -> None:
        self.config = config
        self.clock = clock
        self.codes: dict[str, _Code] = {}
        self.refresh: dict[str, _Grant] = {}
        self.access: dict[str, _Access] = {}
        self._serial = 0

    def _now(self) -> float:
        return self.clock.now().timestamp()

    def new_code(self, realm_id: str, redirect_uri: str, scope: str) -> str:
        """An authorization code the token endpoint will exchange once."""
        code = f"AB11{secrets.token_urlsafe(24)}"
        expires = self._now() + self.config.auth_code_lifetime
        self.codes[code] = _Code(realm_id, redirect_uri, scope, expires)
        return code

    def issue(self, realm_id: str, scope: str) -> TokenPair:
        """Start a new grant for ``realm_id`` and return its first tokens."""
        return self._rotate(self.grant(realm_id, scope))

    def grant(self, realm_id: str, scope: str) -> _Grant:
        """A new grant, its five-year limit counted from now."""
        now = self._now()
        return _Grant(realm_id, scope, now, now + self.config.refresh_token_max_age)

    def _rotate(self, grant: _Grant) -> TokenPair:
        self._serial += 1
        now = self._now()
        grant.refresh_token = f"RT1-{self._serial}-H0-{secrets.token_hex(16)}"
        grant.refresh_expires = min(now + self.config.refresh_token_lifetime, grant.hard_expires)
        self.refresh[grant.refresh_token] = grant
        access = f"sbx.at.{self._serial}.{secrets.token_urlsafe(32)}"
        self.access[access] = _Access(grant, now + self.config.access_token_lifetime)
        return TokenPair(
            realm_id=grant.realm_id,
            access_token=access,
            refresh_token=grant.refresh_token,
            expires_in=self.config.access_token_lifetime,
            x_refresh_token_expires_in=int(grant.refresh_expires - now),
            x_refresh_token_hard_expires_in=int(grant.hard_expires - now),
        )

    def exchange(self, code: str, redirect_uri: str) -> tuple[TokenPair, _Grant]:
        """Tokens and grant for an unused, unexpired code.

        :raise GrantRefused: the code is unknown, used, expired or for another redirect URI.
        """
        entry = self.codes.get(code)
        if entry is None or entry.used or entry.expires < self._now():
            raise GrantRefused("The authorization code is invalid, expired or already used")
        if entry.redirect_uri != redirect_uri:
            raise GrantRefused("The redirect_uri does not match the authorization request")
        entry.used = True
        grant = self.grant(entry.realm_id, entry.scope)
        return self._rotate(grant), grant

    def use_refresh(self, token: str) -> tuple[TokenPair, _Grant]:
        """New tokens for the grant's current refresh token.

        :raise GrantRefused: the token is unknown, rotated away, revoked or expired.
        """
        grant = self.refresh.get(token)
        if grant is None:
            raise GrantRefused("Incorrect or invalid refresh token")
        if grant.revoked:
            raise GrantRefused("The refresh token was revoked")
        if grant.refresh_token != token:
            raise GrantRefused("The refresh token was rotated: use the latest one")
        if grant.refresh_expires < self._now():
            raise GrantRefused("The refresh token has expired")
        return self._rotate(grant), grant

    def revoke(self, token: str) -> None:
        """Revoke the grant an access or refresh token belongs to (unknown tokens: no-op)."""
        access = self.access.get(token)
        grant = access.grant if access is not None else self.refresh.get(token)
        if grant is not None:
            grant.revoked = True

    def expire_access(self) -> None:
        """Make every access token issued so far expired."""
        past = self._now() - 1
        for entry in self.access.values():
            entry.expires = min(entry.expires, past)

    def check(self, token: str, realm_id: str) -> tuple[int, str] | None:
        """None if ``token`` may call ``realm_id``, else (HTTP status, Fault detail)."""
        entry = self.access.get(token)
        if entry is None:
            return 401, "Token invalid" if token else "Malformed bearer token"
        if entry.grant.revoked:
            return 401, "Token revoked"
        if entry.expires <= self._now():
            return 401, f"Token expired: {token[:12]}..."
        if entry.grant.realm_id != realm_id:
            return 403, ""
        return None


# --------------------------------------------------------------------------- state


@dataclass
class _Load:
    in_flight: int = 0
    recent: deque[float] = field(default_factory=deque)


class SandboxState:
    """The running sandbox's data, tokens, logs and fault queue; tests drive it directly."""

    def __init__(self, config: SandboxConfig) -> None:
        if not config.companies:
            raise ValueError("a sandbox needs at least one company")
        self.config = config
        self.tz = timezone(timedelta(minutes=config.utc_offset_minutes))
        start = config.start_time or datetime.now(self.tz).replace(microsecond=0)
        self.clock = SandboxClock(start, config.freeze_clock)
        history = config.history_days * 86400
        self.companies = {
            spec.realm_id: Company(spec, self.tz, int(start.timestamp()), history)
            for spec in config.companies
        }
        self.tokens = _Tokens(config, self.clock)
        self.signer = oidc.Signer()
        self.requests: deque[RequestRecord] = deque(maxlen=config.request_log_size)
        self.faults: list[InjectedFault] = []
        self.events: list[WebhookEvent] = []
        self.reports = ReportBook()
        self.authorize_realm = config.companies[0].realm_id
        self.authorize_error: str | None = None
        self.oauth_port: int | None = None
        self._loads: dict[str, _Load] = {}
        self._pages: dict[tuple[str, QueryPlan], bytes] = {}
        self._page_bytes = 0

    # ---- clock

    def now(self) -> datetime:
        """The sandbox's current time."""
        return self.clock.now().astimezone(self.tz)

    def set_clock(self, when: datetime) -> None:
        """Set the sandbox clock (timezone-aware datetime)."""
        self.clock.set(when)

    def advance_clock(self, seconds: float) -> None:
        """Move the sandbox clock forward."""
        self.clock.advance(seconds)

    def stamp(self) -> str:
        """The ``time`` field of responses: ISO 8601 with milliseconds and offset."""
        return self.now().isoformat(timespec="milliseconds")

    # ---- data

    def company(self, realm_id: str) -> Company:
        """The generated company of ``realm_id`` (KeyError if unknown)."""
        return self.companies[realm_id]

    def get(self, realm_id: str, entity: str, entity_id: str) -> JSON:
        """The entity as the API would return it (KeyError if missing or deleted)."""
        name = _entity_name(entity)
        company = self.company(realm_id)
        index = company.find(name, entity_id)
        if index is None:
            raise KeyError(f"{name} {entity_id} not found in realm {realm_id}")
        return company.tables[name].render(index)

    def update(
        self, realm_id: str, entity: str, entity_id: str, changes: Mapping[str, Any] | None = None
    ) -> JSON:
        """Record an edit: bump SyncToken, set LastUpdatedTime to now, apply ``changes``."""
        name = _entity_name(entity)
        index = self._existing(realm_id, name, entity_id)
        self.company(realm_id).tables[name].touch(index, self._ts(), changes or {}, False)
        return self._changed(realm_id, name, index, "Update")

    def create(self, realm_id: str, entity: str, fields: Mapping[str, Any] | None = None) -> JSON:
        """Create a new row now (generated fields, overridden by ``fields``); returns it."""
        name = _entity_name(entity, writable=True)
        index = self.company(realm_id).tables[name].add(self._ts(), fields or {})
        return self._changed(realm_id, name, index, "Create")

    def delete(self, realm_id: str, entity: str, entity_id: str) -> None:
        """Delete a row now: queries and reads stop finding it, CDC reports it Deleted.

        Real QuickBooks never hard-deletes list entities (Customer, Vendor, Item, Account, ...);
        it makes them inactive: use :meth:`deactivate` for those to stay realistic.
        """
        name = _entity_name(entity, writable=True)
        index = self._existing(realm_id, name, entity_id)
        self.company(realm_id).tables[name].touch(index, self._ts(), {}, True)
        self._changed(realm_id, name, index, "Delete")

    def merge(self, realm_id: str, entity: str, from_id: str, into_id: str) -> JSON:
        """Merge list entity ``from_id`` into ``into_id``, as QuickBooks merges duplicates.

        The survivor gets a new version, the merged-away row is deleted (CDC reports it
        Deleted), and webhooks get one Merge event on the survivor with its ``deletedId``.
        """
        name = _entity_name(entity)
        if name not in LIST_ENTITIES:
            raise ValueError(f"QuickBooks merges list entities, not {name}")
        company = self.company(realm_id)
        survivor = self._existing(realm_id, name, into_id)
        merged = self._existing(realm_id, name, from_id)
        company.tables[name].touch(merged, self._ts(), {}, True)
        company.tables[name].touch(survivor, self._ts(), {}, False)
        return self._changed(realm_id, name, survivor, "Merge", deleted_id=from_id)

    def deactivate(self, realm_id: str, entity: str, entity_id: str) -> JSON:
        """Make a list entity inactive (``Active: false``), as QuickBooks "deletes" them.

        Default queries stop returning it; ``where Active = false`` and CDC still do.
        """
        name = _entity_name(entity)
        if name not in LIST_ENTITIES:
            raise ValueError(f"{name} has no Active flag; delete() transactions instead")
        return self.update(realm_id, name, entity_id, {"Active": False})

    def _existing(self, realm_id: str, name: str, entity_id: str) -> int:
        index = self.company(realm_id).find(name, entity_id)
        if index is None:
            raise KeyError(f"{name} {entity_id} not found in realm {realm_id}")
        return index

    def _ts(self) -> int:
        return int(self.clock.now().timestamp())

    def _changed(
        self,
        realm_id: str,
        name: str,
        index: int,
        operation: Operation,
        deleted_id: str | None = None,
    ) -> JSON:
        if any(key[0] == realm_id for key in self._pages):
            self._pages = {k: v for k, v in self._pages.items() if k[0] != realm_id}
            self._page_bytes = sum(len(v) for v in self._pages.values())
        table = self.company(realm_id).tables[name]
        entity_id = "1" if name == "CompanyInfo" else str(index + 1)
        event = WebhookEvent(realm_id, name, entity_id, operation, self.now(), deleted_id)
        self.events.append(event)
        return table.render(index) if table.is_live(index) else table.tombstone(index)

    def take_events(self) -> list[WebhookEvent]:
        """Webhook events for the mutations made since the last call (and forget them)."""
        events, self.events = self.events, []
        return events

    # ---- rendering

    def query_body(self, realm_id: str, plan: QueryPlan) -> bytes:
        """The full JSON body answering ``plan`` in ``realm_id``."""
        key = (realm_id, plan)
        inner = self._pages.get(key)
        if inner is None:
            inner = self._render_query(self.company(realm_id), plan)
            self._remember(key, inner)
        return b'{"QueryResponse":%s,"time":"%s"}' % (inner, self.stamp().encode())

    @staticmethod
    def _render_query(company: Company, plan: QueryPlan) -> bytes:
        total, page = run(company, plan)
        if plan.count_only:
            return b'{"totalCount":%d}' % total
        if not page:
            return b"{}"
        rows = b",".join(orjson.dumps(row) for row in page)
        tail = b'"startPosition":%d,"maxResults":%d' % (plan.start_position, len(page))
        return b'{"%s":[%s],%s}' % (answer_name(plan.entity).encode(), rows, tail)

    def _remember(self, key: tuple[str, QueryPlan], inner: bytes) -> None:
        if not self.config.prerender or len(inner) > self.config.prerender_max_bytes:
            return
        while self._pages and self._page_bytes + len(inner) > self.config.prerender_max_bytes:
            oldest = next(iter(self._pages))
            self._page_bytes -= len(self._pages.pop(oldest))
        self._pages[key] = inner
        self._page_bytes += len(inner)

    @property
    def prerendered_pages(self) -> int:
        """How many query pages the prerender cache holds."""
        return len(self._pages)

    async def prerender(
        self,
        realm_id: str,
        entity: str,
        page_size: int = 1000,
        *,
        step: int | None = None,
        include_inactive: bool = False,
    ) -> int:
        """Render and cache every page of ``select * from <entity>`` ordered by Id (plus the
        properties Intuit answers only when named, as a full sync asks: ``select *, Sku``).

        ``step`` (default ``page_size``) is the distance between page starts (a client whose
        pages overlap by one row uses ``page_size - 1``); ``include_inactive`` caches the
        ``where Active in (true, false)`` pages instead. Needs ``prerender=True``; returns how
        many pages were rendered. Yields to the event loop between pages, so the sandbox keeps
        serving while it warms up.
        """
        if not self.config.prerender:
            raise ValueError("prerender() needs SandboxConfig(prerender=True)")
        name = _entity_name(entity)
        active = frozenset({True, False}) if include_inactive else None
        total, _ = self.company(realm_id).select(QueryPlan(name, True, active=active))
        starts = range(1, total + 1, step or page_size)
        columns = EXPLICIT_ONLY.get(name, ())
        for start in starts:
            plan = QueryPlan(
                name, active=active, start_position=start, max_results=page_size, columns=columns
            )
            self.query_body(realm_id, plan)
            await asyncio.sleep(0)
        return len(starts)

    def read_body(self, realm_id: str, entity: str, index: int) -> bytes:
        """The JSON body of a read by id."""
        row = orjson.dumps(self.company(realm_id).tables[entity].render(index))
        name = answer_name(entity).encode()
        return b'{"%s":%s,"time":"%s"}' % (name, row, self.stamp().encode())

    def cdc_body(self, realm_id: str, entities: list[str], since: int) -> bytes:
        """The JSON body of a CDC call (at most ``cdc_max_objects`` objects in total)."""
        limit = self.config.cdc_max_objects
        parts = []
        for entity, rows in self.company(realm_id).changes(entities, since, limit):
            if not rows:
                parts.append(b"{}")
                continue
            joined = b",".join(orjson.dumps(row) for row in rows)
            tail = b'"startPosition":1,"maxResults":%d' % len(rows)
            parts.append(b'{"%s":[%s],%s}' % (answer_name(entity).encode(), joined, tail))
        body = b'{"CDCResponse":[{"QueryResponse":[%s]}],"time":"%s"}'
        return body % (b",".join(parts), self.stamp().encode())

    # ---- tokens

    def issue_tokens(self, realm_id: str, scope: str = _ACCOUNTING_SCOPE) -> TokenPair:
        """Tokens for ``realm_id`` without going through the authorize page."""
        self.company(realm_id)
        return self.tokens.issue(realm_id, scope)

    def expire_access_tokens(self) -> None:
        """Expire every access token issued so far (refresh tokens stay valid)."""
        self.tokens.expire_access()

    @property
    def token_requests(self) -> list[RequestRecord]:
        """Requests received by the token endpoint (any outcome, faults included)."""
        return [r for r in self.requests if r.path == oidc.PATHS["token_endpoint"]]

    @property
    def minor_versions(self) -> list[str | None]:
        """The ``minorversion`` of every API request, in order (None when absent)."""
        return [r.minorversion for r in self.requests if r.path.startswith("/v3/")]

    # ---- throttling

    def admit(self, realm_id: str) -> bool:
        """Count a request against the realm's limits (in flight, per second, per minute, as
        Intuit counts them); False means answer 429."""
        load = self._loads.setdefault(realm_id, _Load())
        now = time.monotonic()
        while load.recent and load.recent[0] <= now - 60:
            load.recent.popleft()
        if load.in_flight >= self.config.max_concurrent:
            return False
        if len(load.recent) >= self.config.rate_limit_per_minute:
            return False
        per_second = self.config.rate_limit_per_second
        if len(load.recent) >= per_second and load.recent[-per_second] > now - 1:
            return False
        load.in_flight += 1
        load.recent.append(now)
        return True

    def release(self, realm_id: str) -> None:
        """A request admitted by :meth:`admit` has finished."""
        self._loads[realm_id].in_flight -= 1

    # ---- fault injection

    def fail_next(
        self,
        status: int,
        count: int = 1,
        path: str | None = None,
        retry_after: float | None = None,
        skip: int = 0,
    ) -> InjectedFault:
        """Answer the next ``count`` matching requests with ``status`` (e.g. 429, 500, 502, 503),
        after letting ``skip`` of them through.

        429 carries Intuit's ThrottleExceeded Fault (and ``Retry-After`` when given), 500 a
        SystemFault, 502/503 the gateway's HTML page.
        """
        return self._inject(InjectedFault("status", count, path, status, retry_after, skip=skip))

    def delay_next(self, seconds: float, count: int = 1, path: str | None = None) -> InjectedFault:
        """Delay the next ``count`` matching requests by ``seconds`` before answering."""
        return self._inject(InjectedFault("delay", count, path, delay=seconds))

    def drop_next(self, count: int = 1, path: str | None = None) -> InjectedFault:
        """Close the connection of the next ``count`` matching requests without answering."""
        return self._inject(InjectedFault("drop", count, path))

    def fault_next(self, count: int = 1, path: str | None = None) -> InjectedFault:
        """Answer the next ``count`` matching requests 200 with a ``Fault`` body."""
        return self._inject(InjectedFault("fault_body", count, path))

    def clear_faults(self) -> None:
        """Forget every pending injected fault."""
        self.faults.clear()

    def _inject(self, fault: InjectedFault) -> InjectedFault:
        self.faults.append(fault)
        return fault

    def take_fault(self, path: str) -> InjectedFault | None:
        """The first pending fault matching ``path``, consuming one of its uses."""
        for fault in self.faults:
            if fault.matches(path):
                if fault.skip > 0:
                    fault.skip -= 1
                    return None
                fault.remaining -= 1
                if fault.remaining == 0:
                    self.faults.remove(fault)
                return fault
        return None

    # ---- webhooks

    async def send_webhook(
        self,
        url: str,
        verifier_token: str,
        events: Sequence[WebhookEvent] | None = None,
        format: Literal["classic", "cloudevents"] = "classic",
    ) -> WebhookDelivery:
        """POST a signed webhook notification to ``url``, as Intuit would.

        ``events`` defaults to :meth:`take_events` (the mutations since the last call).
        """
        chosen = self.take_events() if events is None else list(events)
        if format == "classic":
            payload = orjson.dumps(_classic_payload(chosen))
        else:
            payload = orjson.dumps(_cloudevents_payload(chosen, self.config.webhook_source))
        signature = sign_intuit_webhook(payload, verifier_token)
        headers = {"intuit-signature": signature, "Content-Type": "application/json"}
        async with (
            aiohttp.ClientSession() as session,
            session.post(url, data=payload, headers=headers) as response,
        ):
            return WebhookDelivery(response.status, await response.text(), payload, signature)


def _entity_name(entity: str, writable: bool = False) -> str:
    name = BY_LOWER.get(entity.lower())
    if name is None:
        raise KeyError(f"unknown QuickBooks entity {entity!r}")
    if writable and name == "CompanyInfo":
        raise ValueError("CompanyInfo can be updated, not created or deleted")
    return name


def _webhook_time(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _classic_payload(events: Iterable[WebhookEvent]) -> JSON:
    by_realm: dict[str, list[JSON]] = {}
    for event in events:
        by_realm.setdefault(event.realm_id, []).append(
            {
                "name": event.entity,
                "id": event.entity_id,
                "operation": event.operation,
                "lastUpdated": _webhook_time(event.last_updated),
            }
            | ({"deletedId": event.deleted_id} if event.deleted_id else {})
        )
    notifications = [
        {"realmId": realm, "dataChangeEvent": {"entities": entities}}
        for realm, entities in by_realm.items()
    ]
    return {"eventNotifications": notifications}


def _cloudevents_payload(events: Iterable[WebhookEvent], source: str) -> list[JSON]:
    return [
        {
            "specversion": "1.0",
            "id": str(uuid.uuid4()),
            "source": source,
            "type": f"qbo.{e.entity.lower()}.{_PAST_TENSE[e.operation]}.v1",
            "datacontenttype": "application/json",
            "time": _webhook_time(e.last_updated),
            "intuitentityid": e.entity_id,
            "intuitaccountid": e.realm_id,
            "data": {"deletedid": e.deleted_id} if e.deleted_id else {},
        }
        for e in events
    ]


# --------------------------------------------------------------------------- HTTP responses

STATE_KEY = web.AppKey("qbo_sandbox_state", SandboxState)
_RECORD = "qbo_sandbox_record"
_DELAY = "qbo_sandbox_delay"
_DROPPED = "qbo_sandbox_dropped"


def _state(request: web.Request) -> SandboxState:
    return request.app[STATE_KEY]


def _json(body: bytes, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    response = web.Response(body=body, status=status, content_type="application/json")
    response.headers.update(headers or {})
    return response


def _fault(
    state: SandboxState,
    code: str,
    message: str,
    detail: str,
    kind: str = "ValidationFault",
    status: int = 400,
) -> web.Response:
    """Intuit's data-services Fault body."""
    error = {"Message": message, "Detail": detail, "code": code}
    body = {"Fault": {"Error": [error], "type": kind}, "time": state.stamp()}
    return _json(orjson.dumps(body), status)


def _gateway_fault(state: SandboxState, status: int, detail: str) -> web.Response:
    """The platform gateway's lower-case fault (401 authentication, 403 authorization)."""
    kind, code = _GATEWAY_ERRORS[status]
    message = f"message={kind}; errorCode=00{code}; statusCode={status}"
    error = {"message": message, "detail": detail or None, "code": code, "element": None}
    body: JSON = {
        "warnings": None,
        "intuitObject": None,
        "fault": {"error": [error], "type": "AUTHENTICATION" if status == 401 else "SERVICE"},
        "report": None,
        "queryResponse": None,
        "batchItemResponse": [],
        "attachableResponse": [],
        "syncErrorResponse": None,
        "requestId": None,
        "time": int(state.clock.now().timestamp() * 1000),
        "status": None,
        "cdcresponse": [],
    }
    return _json(orjson.dumps(body), status)


def _throttled(state: SandboxState, retry_after: float | None = None) -> web.Response:
    message = "message=ThrottleExceeded; errorCode=003001; statusCode=429"
    detail = "The request limit was reached.  Try again later"
    response = _fault(state, "3001", message, detail, "SERVICE")
    response.set_status(429)
    response.headers.update({"Retry-After": f"{retry_after:g}"} if retry_after is not None else {})
    return response


def _status_fault(state: SandboxState, fault: InjectedFault) -> web.Response:
    if fault.status == 429:
        return _throttled(state, fault.retry_after)
    if fault.status in (502, 503, 504):
        title = {502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Time-out"}
        html = f"<html><head><title>{fault.status} {title[fault.status]}</title></head></html>"
        return web.Response(text=html, status=fault.status, content_type="text/html")
    return _system_fault(state, fault.status)


def _system_fault(state: SandboxState, status: int) -> web.Response:
    code, message = _SYSTEM_FAULT
    return _fault(state, code, message, "System Failure Error: injected", "SystemFault", status)


def _oauth_error(error: str, description: str | None = None, status: int = 400) -> web.Response:
    """Intuit's failure document: ``error``, and ``error_description`` (the token endpoint's)."""
    body = {"error": error}
    if description is not None:
        body["error_description"] = description
    return _json(orjson.dumps(body), status)


# --------------------------------------------------------------------------- middlewares


async def _stamp_tid(request: web.Request, response: web.StreamResponse) -> None:
    """Give every answer (errors and HTML pages included) an ``intuit_tid``, as Intuit does,
    and note it on the request's record."""
    tid = str(uuid.uuid4())
    response.headers["intuit_tid"] = tid
    record = request.get(_RECORD)
    if record is not None:
        record.intuit_tid = tid


@web.middleware
async def _record(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Log every request (with its minorversion) and its final status."""
    state = _state(request)
    realm = request.path.split("/")[3] if request.path.startswith("/v3/company/") else None
    record = RequestRecord(request.method, request.path, realm, request.query.get("minorversion"))
    state.requests.append(record)
    request[_RECORD] = record
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        record.status = exc.status
        raise
    except Exception:
        record.status = 500
        raise
    record.status = None if request.get(_DROPPED) else response.status
    return response


@web.middleware
async def _split_bases(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Once served on two ports, answer the API only on one and OAuth only on the other."""
    oauth_port = _state(request).oauth_port
    on_oauth_base = request.url.port == oauth_port
    if oauth_port is not None and on_oauth_base == request.path.startswith("/v3/"):
        raise web.HTTPNotFound(text="this endpoint is served on the other base URL")
    return await handler(request)


@web.middleware
async def _inject(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Apply the first pending injected fault that matches the request's path."""
    state = _state(request)
    fault = state.take_fault(request.path)
    if fault is None:
        return await handler(request)
    if fault.kind == "drop":
        request[_DROPPED] = True
        if request.transport is not None:
            request.transport.close()
        return web.Response(status=499)
    if fault.kind == "status":
        return _status_fault(state, fault)
    if fault.kind == "fault_body":
        return _system_fault(state, 200)
    request[_DELAY] = fault.delay
    return await handler(request)


@web.middleware
async def _guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """For the v3 API: Accept header, bearer token, then Intuit's per-realm throttling."""
    if not request.path.startswith("/v3/company/"):
        return await handler(request)
    state = _state(request)
    accept = request.headers.get("Accept", "")
    if state.config.require_json_accept and "application/json" not in accept:
        return web.Response(status=406, text=_NOT_JSON)
    realm = request.path.split("/")[3]
    header = request.headers.get("Authorization", "")
    token = header[7:].strip() if header[:7].lower() == "bearer " else ""
    problem = state.tokens.check(token, realm)
    if problem is not None:
        return _gateway_fault(state, *problem)
    if not state.config.throttle:
        return await handler(request)
    if not state.admit(realm):
        return _throttled(state)
    try:
        return await handler(request)
    finally:
        state.release(realm)


@web.middleware
async def _delay(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Sleep for an injected delay (inside the throttled section, so it holds a slot)."""
    delay = request.get(_DELAY, 0.0)
    if delay > 0:
        await asyncio.sleep(delay)
    return await handler(request)


# --------------------------------------------------------------------------- API handlers


async def _query(request: web.Request) -> web.Response:
    state = _state(request)
    text = request.query.get("query", "")
    if request.method == "POST":
        text = await request.text()
    request[_RECORD].query = text
    try:
        plan = parse_query(text, state.tz)
        return _json(state.query_body(request.match_info["realm"], plan))
    except QueryError as exc:
        return _fault(state, exc.code, exc.message, exc.detail)


async def _read(request: web.Request) -> web.Response:
    state = _state(request)
    entity = BY_LOWER.get(request.match_info["entity"].lower())
    if entity is None or entity in KEYLESS:  # an exchange rate has no Id to read it by
        return _unsupported(request)
    realm = request.match_info["realm"]
    index = state.company(realm).find(entity, request.match_info["entity_id"])
    if index is None:
        return _fault(state, "610", "Object Not Found", _OBJECT_NOT_FOUND)
    return _json(state.read_body(realm, entity, index))


async def _cdc(request: web.Request) -> web.Response:
    state = _state(request)
    raw_entities = request.query.get("entities", "")
    changed_since = request.query.get("changedSince", "")
    request[_RECORD].query = raw_entities
    for name, value in (("entities", raw_entities), ("changedSince", changed_since)):
        if not value:
            detail = f"Required parameter {name} is missing in the request"
            return _fault(state, "2020", "Required param missing", detail)
    names = [BY_LOWER.get(e.strip().lower(), e.strip()) for e in raw_entities.split(",")]
    entities = list(dict.fromkeys(names))
    problem = _cdc_entities_problem(entities) or _cdc_since_problem(state, changed_since)
    if problem:
        code, message, detail = problem
        return _fault(state, code, message, detail)
    since = math.ceil(parse_timestamp(changed_since, state.tz))
    return _json(state.cdc_body(request.match_info["realm"], entities, since))


async def _report(request: web.Request) -> web.Response:
    """``GET …/reports/{report}``: a report computed from the company's transactions."""
    state = _state(request)
    company = state.company(request.match_info["realm"])
    name = request.match_info["report"]
    request[_RECORD].query = request.query_string
    try:
        report = state.reports.report(company, state.now(), name, request.query)
    except ReportProblem as exc:
        return _fault(state, exc.code, exc.message, exc.detail)
    return _json(orjson.dumps(report))


async def _preferences(request: web.Request) -> web.Response:
    """``GET …/preferences``: the company's Preferences entity."""
    state = _state(request)
    preferences = state.reports.preferences(state.company(request.match_info["realm"]), state.now())
    return _json(orjson.dumps({"Preferences": preferences, "time": state.stamp()}))


def _cdc_entities_problem(entities: list[str]) -> tuple[str, str, str] | None:
    for entity in entities:
        if entity not in BY_LOWER.values() or entity in CDC_UNSUPPORTED:
            detail = f"Operation cdc is not supported for entity {entity}."
            return "500", "Unsupported Operation", detail
    return None


def _cdc_since_problem(state: SandboxState, changed_since: str) -> tuple[str, str, str] | None:
    try:
        since = parse_timestamp(changed_since, state.tz)
    except QueryError:
        detail = "Property Name:changedSince specified is unsupported or invalid"
        return "2010", "Request has invalid or unsupported property", detail
    oldest = state.now() - timedelta(days=state.config.cdc_lookback_days)
    if since < oldest.timestamp():
        detail = (
            f"Operation cdc with changedSince date {changed_since} "
            "which is older than fixed days is not supported."
        )
        return "500", "Unsupported Operation", detail
    return None


def _unsupported(request: web.Request) -> web.Response:
    detail = (
        f"Operation Could not find resource for relative : {request.path} "
        f"of full path: {request.url} is not supported."
    )
    return _fault(_state(request), "500", "Unsupported Operation", detail)


async def _unknown(request: web.Request) -> web.Response:
    return _unsupported(request)


# --------------------------------------------------------------------------- OAuth handlers


def _client_ok(request: web.Request, form: Mapping[str, Any]) -> bool:
    """HTTP Basic client authentication (or client_secret_post)."""
    config = _state(request).config
    header = request.headers.get("Authorization", "")
    if header[:6].lower() == "basic ":
        try:
            pair = base64.b64decode(header[6:].strip()).decode()
        except ValueError:
            return False
        return pair == f"{config.client_id}:{config.client_secret}"
    return (form.get("client_id"), form.get("client_secret")) == (
        config.client_id,
        config.client_secret,
    )


HARD_EXPIRY_HEADER = "x-include-refresh-token-hard-expires-in"
"""Asked with ``true``, the token endpoint adds ``x_refresh_token_hard_expires_in``."""
_BAD_CLIENT = "Client authentication failed: unknown client_id or wrong client_secret"


async def _token(request: web.Request) -> web.Response:
    state = _state(request)
    form = await request.post()
    grant_type = str(form.get("grant_type", ""))
    request[_RECORD].grant_type = grant_type
    if not _client_ok(request, form):
        return _oauth_error("invalid_client", _BAD_CLIENT, 401)
    try:
        if grant_type == "authorization_code":
            code, redirect_uri = str(form.get("code", "")), str(form.get("redirect_uri", ""))
            pair, grant = state.tokens.exchange(code, redirect_uri)
        elif grant_type == "refresh_token":
            pair, grant = state.tokens.use_refresh(str(form.get("refresh_token", "")))
        else:
            detail = "grant_type must be authorization_code or refresh_token"
            return _oauth_error("unsupported_grant_type", detail)
    except GrantRefused as exc:
        return _oauth_error("invalid_grant", str(exc))
    body: JSON = {
        "token_type": "bearer",
        "expires_in": pair.expires_in,
        "refresh_token": pair.refresh_token,
        "x_refresh_token_expires_in": pair.x_refresh_token_expires_in,
        "access_token": pair.access_token,
    }
    if request.headers.get(HARD_EXPIRY_HEADER, "").strip().lower() == "true":
        body["x_refresh_token_hard_expires_in"] = pair.x_refresh_token_hard_expires_in
    if "openid" in grant.scope.split():
        issuer = oidc.discovery(str(request.url.origin()))["issuer"]
        now = int(state.clock.now().timestamp())
        body["id_token"] = state.signer.id_token(
            issuer, state.config.client_id, grant.realm_id, int(grant.granted_at), now
        )
    return _json(orjson.dumps(body), headers={"Cache-Control": "no-store"})


async def _revoke(request: web.Request) -> web.Response:
    state = _state(request)
    raw = await request.read()
    form: Mapping[str, Any]
    if request.content_type == "application/json":
        try:
            form = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            form = {}
    else:
        form = await request.post()
    if not _client_ok(request, form):
        return _oauth_error("invalid_client", status=401)
    token = form.get("token") if isinstance(form, Mapping) else None
    if not token:
        return _oauth_error("invalid_request")
    state.tokens.revoke(str(token))
    return web.Response(status=200)


async def _authorize(request: web.Request) -> web.Response:
    """Intuit's consent page, answered at once as if the user clicked Connect."""
    state = _state(request)
    query = request.query
    redirect_uri = query.get("redirect_uri", "")
    if query.get("client_id") != state.config.client_id:
        return web.Response(status=400, text="invalid client_id")
    allowed = state.config.redirect_uris
    if not redirect_uri or (allowed and redirect_uri not in allowed):
        return web.Response(status=400, text="redirect_uri is not registered for this app")
    params = {"state": query.get("state", "")}
    if query.get("response_type") != "code":
        params["error"] = "unsupported_response_type"
    elif not query.get("scope"):
        params["error"] = "invalid_scope"
    elif state.authorize_error:
        params["error"] = state.authorize_error
    else:
        realm = state.authorize_realm
        params["code"] = state.tokens.new_code(realm, redirect_uri, query["scope"])
        params["realmId"] = realm
    separator = "&" if "?" in redirect_uri else "?"
    raise web.HTTPFound(redirect_uri + separator + urlencode(params))


async def _discovery(request: web.Request) -> web.Response:
    """Intuit's OpenID discovery document, with the endpoints the sandbox serves."""
    return _json(orjson.dumps(oidc.discovery(str(request.url.origin()))))


async def _jwks(request: web.Request) -> web.Response:
    """The keys that verify the sandbox's id_tokens (the discovery document's ``jwks_uri``)."""
    return _json(orjson.dumps(_state(request).signer.jwks()))


async def _userinfo(request: web.Request) -> web.Response:
    """The connecting user's claims, for an access token granted with the ``openid`` scope."""
    state = _state(request)
    header = request.headers.get("Authorization", "")
    token = header[7:].strip() if header[:7].lower() == "bearer " else ""
    entry = state.tokens.access.get(token)
    if entry is None or entry.grant.revoked or entry.expires <= state.clock.now().timestamp():
        return _oauth_error("invalid_token", "The access token is invalid or expired", 401)
    scopes = set(entry.grant.scope.split())
    if "openid" not in scopes:
        return _oauth_error("insufficient_scope", "The access token lacks the openid scope", 403)
    return _json(orjson.dumps(oidc.userinfo(entry.grant.realm_id, scopes)))


# --------------------------------------------------------------------------- app and server


def create_app(config: SandboxConfig) -> web.Application:
    """The sandbox as an aiohttp application; its state is ``app[STATE_KEY]``."""
    app = web.Application(middlewares=[_record, _split_bases, _inject, _guard, _delay])
    app[STATE_KEY] = SandboxState(config)
    app.on_response_prepare.append(_stamp_tid)
    company = "/v3/company/{realm}"
    app.router.add_route("GET", f"{company}/query", _query)
    app.router.add_route("POST", f"{company}/query", _query)
    app.router.add_get(f"{company}/cdc", _cdc)
    app.router.add_get(f"{company}/reports/{{report}}", _report)
    app.router.add_get(f"{company}/preferences", _preferences)
    app.router.add_get(f"{company}/{{entity}}/{{entity_id}}", _read)
    app.router.add_route("*", "/v3/{tail:.*}", _unknown)
    paths = oidc.PATHS
    app.router.add_post(paths["token_endpoint"], _token)
    app.router.add_post(paths["revocation_endpoint"], _revoke)
    app.router.add_get(paths["authorization_endpoint"], _authorize)
    app.router.add_get(paths["jwks_uri"], _jwks)
    app.router.add_get(paths["userinfo_endpoint"], _userinfo)
    for name in ("openid_configuration", "openid_sandbox_configuration"):
        app.router.add_get(f"/.well-known/{name}", _discovery)
        app.router.add_get(f"/.well-known/{name}/", _discovery)
    return app


class RunningSandbox:
    """A sandbox served on a local port; use ``state`` to drive it, ``close()`` to stop it."""

    def __init__(self, runner: web.AppRunner, state: SandboxState, host: str) -> None:
        self._runner = runner
        self.state = state
        api_port, oauth_port = (address[1] for address in runner.addresses[:2])
        state.oauth_port = oauth_port
        self.base_url = f"http://{host}:{api_port}"
        self.oauth_base_url = f"http://{host}:{oauth_port}"

    @property
    def authorize_url(self) -> str:
        """Intuit's ``appcenter.intuit.com/connect/oauth2``."""
        return f"{self.oauth_base_url}{oidc.PATHS['authorization_endpoint']}"

    @property
    def token_url(self) -> str:
        """Intuit's ``oauth.platform.intuit.com/oauth2/v1/tokens/bearer``."""
        return f"{self.oauth_base_url}{oidc.PATHS['token_endpoint']}"

    @property
    def revoke_url(self) -> str:
        """Intuit's token revocation endpoint."""
        return f"{self.oauth_base_url}{oidc.PATHS['revocation_endpoint']}"

    async def close(self) -> None:
        """Stop serving and close open connections."""
        await self._runner.cleanup()

    async def __aenter__(self) -> RunningSandbox:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()


async def start_sandbox(config: SandboxConfig) -> RunningSandbox:
    """Serve a sandbox on ``config.host``: the API on ``port``, OAuth on ``oauth_port``."""
    app = create_app(config)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    for port in (config.port, config.oauth_port):
        await web.TCPSite(runner, config.host, port).start()
    return RunningSandbox(runner, app[STATE_KEY], config.host)


# --------------------------------------------------------------------------- command line


def _company_arg(text: str) -> CompanySpec:
    """``REALM`` or ``REALM:Entity=N,...`` (``transactions=N`` scales a whole company)."""
    realm, _, spec = text.partition(":")
    counts: dict[str, int] = {}
    for item in filter(None, spec.split(",")):
        key, _, value = item.partition("=")
        if key == "transactions":
            counts = {**scaled_counts(int(value)), **counts}
        else:
            counts[_entity_name(key)] = int(value)
    name = f"Sandbox Company {realm[-4:]}"
    return CompanySpec(realm, name=name, counts=counts or default_counts())


def _parse_args(argv: Sequence[str] | None) -> SandboxConfig:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="API port (0: any free port)")
    parser.add_argument("--oauth-port", type=int, default=8766, help="OAuth port (0: any)")
    companies_help = "REALM or REALM:Entity=N,... ('transactions=N' scales a whole company)"
    parser.add_argument("--companies", nargs="+", type=_company_arg, help=companies_help)
    parser.add_argument("--client-id", default=SandboxConfig.client_id)
    parser.add_argument("--client-secret", default=SandboxConfig.client_secret)
    parser.add_argument("--no-throttle", action="store_true", help="no 429s (benchmarks)")
    parser.add_argument("--prerender", action="store_true", help="cache rendered query pages")
    parser.add_argument("--access-token-lifetime", type=int, default=3600)
    args = parser.parse_args(argv)
    return SandboxConfig(
        companies=tuple(args.companies or (CompanySpec(DEFAULT_REALM),)),
        client_id=args.client_id,
        client_secret=args.client_secret,
        host=args.host,
        port=args.port,
        oauth_port=args.oauth_port,
        throttle=not args.no_throttle,
        prerender=args.prerender,
        access_token_lifetime=args.access_token_lifetime,
    )


async def _serve(config: SandboxConfig) -> None:
    sandbox = await start_sandbox(config)
    tokens = {realm: sandbox.state.issue_tokens(realm) for realm in sandbox.state.companies}
    summary = {
        "base_url": sandbox.base_url,
        "oauth_base_url": sandbox.oauth_base_url,
        "client_id": config.client_id,
        "client_secret": config.client_secret,
        "tokens": {realm: vars(pair) for realm, pair in tokens.items()},
    }
    sys.stdout.write(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode() + "\n")
    sys.stdout.flush()
    try:
        await asyncio.Event().wait()
    finally:
        await sandbox.close()


def main(argv: Sequence[str] | None = None) -> None:
    """Run the sandbox until interrupted; prints its URLs and ready-to-use tokens as JSON."""
    config = _parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(config))


if __name__ == "__main__":
    main()
