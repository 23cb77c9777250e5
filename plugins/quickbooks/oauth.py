"""OAuth 2.0 with Intuit: connect, callback and disconnect routes, and token refresh.

Connect (``GET /oauth/quickbooks/connect``, admin only) sends the browser to Intuit with a
random ``state`` that is single-use, expires after :data:`STATE_TTL_S` and is bound to the
admin's browser. The hub's own session cookie is ``SameSite=Strict``, which browsers do not
send when Intuit redirects back, so connect also sets a short-lived ``SameSite=Lax`` binding
cookie; the server keeps only SHA-256 hashes of the state, of that cookie and of the admin
credential that started the flow (in memory: a restart forgets pending flows). The callback
refuses a wrong, reused, expired or foreign state, exchanges the code (HTTP Basic client
authentication) and stores the tokens encrypted as the connection of that ``realmId``. The
redirect URI is the ``redirect_uri`` setting, else ``hub.public_url`` + the callback path;
never the request's ``Host`` header, which the client chooses.

Refresh is single-flight per connection; the rotated refresh token is saved before the new
access token is used. ``invalid_grant`` re-reads the stored token once (another process may
have refreshed first); otherwise the token is marked dead, so no caller retries it, and the
connection needs reconnecting (the hub then shows it ``disconnected`` and alerts).

Every token request asks for the refresh token's hard expiry
(``x-include-refresh-token-hard-expires-in: true``); Intuit's figure is stored as
``refresh_hard_expires_at`` and health counts from it, else from an estimate (five years after
the company was connected).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

import structlog
from aiohttp import web

from hub.errors import AuthenticationError, ProviderError, SyncBusyError, ValidationError

from .client import QuickBooksClient
from .settings import QuickBooksSettings

if TYPE_CHECKING:
    from hub.api import HubAPI
    from hub.model import Connection, IntegrationSettings

log = structlog.get_logger("plugins.quickbooks")

NAME = "quickbooks"
SCOPE = "com.intuit.quickbooks.accounting"
STATE_TTL_S = 600.0
"""Seconds a connect request stays valid."""
MAX_PENDING = 64
REALM_ID = re.compile(r"[0-9]{1,32}")
"""A company id as Intuit sends it (``str.isdigit`` would also take other scripts' digits)."""
BINDING_COOKIE = "hub_oauth_quickbooks"
ROUTE_PREFIX = "/oauth/quickbooks"
REFRESH_MARGIN_S = 300.0
"""Refresh an access token this long before it expires."""
MAX_GRANT_AGE_S = 5 * 365.25 * 86400
"""Intuit's hard limit on a refresh token: five years after the company was connected (the
estimate used when Intuit's token answer does not state it)."""
HARD_EXPIRY_HEADER = "x-include-refresh-token-hard-expires-in"
"""Sent as ``true`` on every token request: Intuit then answers the refresh token's hard
expiry (``x_refresh_token_hard_expires_in``, seconds) instead of leaving it to an estimate."""


class InvalidGrantError(AuthenticationError):
    """Intuit refused the authorization code or refresh token (``invalid_grant``)."""


def settings_of(settings: IntegrationSettings | None) -> QuickBooksSettings:
    """``settings`` (what a hook receives) as the integration's settings.

    :raise AuthenticationError: the integration is not configured (no client id/secret).
    """
    if not isinstance(settings, QuickBooksSettings):
        raise AuthenticationError(
            "QuickBooks is not configured: set [integrations.quickbooks] client_id and "
            "client_secret (HUB_INTEGRATIONS__QUICKBOOKS__CLIENT_SECRET)"
        )
    return settings


def _digest(text: str) -> str:
    """The SHA-256 hex digest under which a state or binding cookie is kept."""
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


def _basic(settings: QuickBooksSettings) -> str:
    pair = f"{settings.client_id}:{settings.client_secret.get_secret_value()}"
    return "Basic " + base64.b64encode(pair.encode()).decode()


# --------------------------------------------------------------------------- token endpoint


async def token_request(hub: HubAPI, settings: QuickBooksSettings, form: dict[str, str]) -> Any:
    """POST ``form`` to Intuit's token endpoint with HTTP Basic client authentication.

    :raise InvalidGrantError: the code or refresh token was refused.
    :raise AuthenticationError: the app's client id or secret was refused.
    """
    headers = {
        "Authorization": _basic(settings),
        "Accept": "application/json",
        HARD_EXPIRY_HEADER: "true",
    }
    try:
        response = await hub.http.request("POST", settings.token_url, headers=headers, data=form)
    except ValidationError as exc:
        if "invalid_grant" in str(exc):
            raise InvalidGrantError(f"Intuit refused the grant: {exc}", status=exc.status) from None
        raise
    except AuthenticationError as exc:
        raise AuthenticationError(
            f"Intuit refused the app's client_id/client_secret: {exc}", status=exc.status
        ) from None
    body = response.json()
    if not isinstance(body, dict) or not body.get("access_token") or not body.get("refresh_token"):
        raise ProviderError("Intuit's token endpoint answered without tokens")
    return body


def credentials_from(
    tokens: dict[str, Any], realm_id: str, previous: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The stored credentials for a token response (expiries as epoch seconds); an expiry the
    answer does not state is kept from ``previous``."""
    now = time.time()
    previous = previous or {}
    refresh_in = tokens.get("x_refresh_token_expires_in")
    hard_in = tokens.get("x_refresh_token_hard_expires_in")
    return {
        "realm_id": realm_id,
        "access_token": tokens["access_token"],
        "refresh_token": tokens["refresh_token"],
        "token_type": tokens.get("token_type", "bearer"),
        "expires_at": now + float(tokens.get("expires_in", 3600)),
        "refresh_expires_at": (
            now + float(refresh_in) if refresh_in else previous.get("refresh_expires_at")
        ),
        "refresh_hard_expires_at": (
            now + float(hard_in) if hard_in else previous.get("refresh_hard_expires_at")
        ),
        "connected_at": previous.get("connected_at", now),
        "refreshed_at": now,
    }


def hard_deadline(credentials: dict[str, Any]) -> tuple[float, bool]:
    """The refresh token's hard expiry (epoch seconds) and whether Intuit stated it
    (``x_refresh_token_hard_expires_in``); else five years after the connection, estimated."""
    stated = credentials.get("refresh_hard_expires_at")
    if stated is not None:
        return float(stated), True
    return float(credentials.get("connected_at") or time.time()) + MAX_GRANT_AGE_S, False


def refresh_deadline(credentials: dict[str, Any]) -> tuple[float, str]:
    """When the refresh token stops working (epoch seconds) and why: its rolling expiry
    (``x_refresh_token_expires_in``) or Intuit's five-year limit, whichever comes first."""
    hard, stated = hard_deadline(credentials)
    rolling = credentials.get("refresh_expires_at")
    if rolling is not None and float(rolling) < hard:  # equal: Intuit capped it at the limit
        return float(rolling), "rolling expiry"
    return hard, "five-year limit" if stated else "five-year limit, estimated"


DEAD_TOKEN = (
    f"Intuit refused the refresh token (invalid_grant): reconnect the company at "
    f"{ROUTE_PREFIX}/connect"
)


def _usable(connection: Connection) -> dict[str, Any]:
    credentials = connection.credentials
    if credentials.get("invalid_grant_at"):
        raise AuthenticationError(DEAD_TOKEN)
    if not credentials.get("refresh_token"):
        raise AuthenticationError("no QuickBooks tokens stored: connect the company first")
    return credentials


def _expiring(credentials: dict[str, Any]) -> bool:
    return float(credentials.get("expires_at") or 0) - time.time() < REFRESH_MARGIN_S


async def ensure_fresh(hub: HubAPI, connection: Connection) -> Connection:
    """Refresh the access token if it expires within :data:`REFRESH_MARGIN_S`."""
    if _expiring(_usable(connection)):
        await refresh(hub, connection)
    return connection


async def refresh(hub: HubAPI, connection: Connection, rejected: str | None = None) -> None:
    """Refresh the connection's tokens, single-flight per connection.

    :param rejected: the access token the API just refused (a 401): refresh unless the stored
        token is already another one. Without it, refresh only if the token is expiring.
    :raise AuthenticationError: the refresh token is dead; the connection needs reconnecting.

    The exchange and the save run shielded from cancellation (a health-check timeout, a
    shutdown): once Intuit has rotated the refresh token, the new one is always stored.
    """
    await asyncio.shield(asyncio.ensure_future(_refresh(hub, connection, rejected)))


async def _refresh(hub: HubAPI, connection: Connection, rejected: str | None) -> None:
    async with hub.single_flight(f"quickbooks:refresh:{connection.id}"):
        await hub.reload_credentials(connection)
        credentials = _usable(connection)
        if rejected is not None and credentials.get("access_token") != rejected:
            return  # another caller refreshed while this one waited
        if rejected is None and not _expiring(credentials):
            return
        settings = settings_of(hub.settings_for(NAME))
        form = {"grant_type": "refresh_token", "refresh_token": credentials["refresh_token"]}
        try:
            tokens = await token_request(hub, settings, form)
        except InvalidGrantError:
            await hub.reload_credentials(connection)
            if connection.credentials.get("refresh_token") != credentials["refresh_token"]:
                log.info("token refreshed by another process meanwhile", connection=connection.id)
                return
            await hub.save_credentials(connection, {**credentials, "invalid_grant_at": time.time()})
            log.warning("refresh token refused (invalid_grant)", connection=connection.id)
            raise AuthenticationError(DEAD_TOKEN) from None
        # Persist the rotated refresh token before the new access token is used anywhere.
        await hub.save_credentials(
            connection, credentials_from(tokens, connection.key, credentials)
        )
        log.info("access token refreshed", connection=connection.id)


def client_for(hub: HubAPI, connection: Connection) -> QuickBooksClient:
    """An API client for ``connection`` that refreshes its token on a 401."""

    async def on_unauthorized(rejected: str) -> None:
        """The API refused ``rejected``: refresh unless someone already did."""
        await refresh(hub, connection, rejected)

    return QuickBooksClient(
        hub.http, connection, settings_of(hub.settings_for(NAME)), on_unauthorized
    )


async def revoke(hub: HubAPI, settings: QuickBooksSettings, token: str) -> None:
    """Revoke a refresh (or access) token at Intuit."""
    headers = {"Authorization": _basic(settings), "Accept": "application/json"}
    await hub.http.request("POST", settings.revoke_url, headers=headers, json={"token": token})


# --------------------------------------------------------------------------- routes


@dataclass(frozen=True)
class _Pending:
    binding: str
    admin: str
    redirect_uri: str
    expires: float


def _refuse(status: int, reason: str) -> web.Response:
    log.warning("quickbooks connect refused", reason=reason)
    return web.json_response({"error": reason}, status=status)


def _redirect(status: int, location: str) -> web.Response:
    return web.Response(status=status, headers={"Location": location})


def _wants_json(request: web.Request) -> bool:
    return "application/json" in request.headers.get("Accept", "")


class OAuthRoutes:
    """The connect flow's handlers and its pending states (one instance per app)."""

    def __init__(self, hub: HubAPI) -> None:
        self._hub = hub
        self._pending: dict[str, _Pending] = {}

    def routes(self) -> list[web.RouteDef]:
        """The aiohttp route definitions."""
        return [
            web.get(f"{ROUTE_PREFIX}/connect", self.connect, name="quickbooks_connect"),
            web.get(f"{ROUTE_PREFIX}/callback", self.callback, name="quickbooks_callback"),
            web.post(f"{ROUTE_PREFIX}/disconnect", self.disconnect, name="quickbooks_disconnect"),
        ]

    def _remember(self, state: str, pending: _Pending) -> None:
        now = time.monotonic()
        self._pending = {k: v for k, v in self._pending.items() if v.expires > now}
        while len(self._pending) >= MAX_PENDING:
            self._pending.pop(next(iter(self._pending)))
        self._pending[_digest(state)] = pending

    async def connect(self, request: web.Request) -> web.StreamResponse:
        """Send the admin's browser to Intuit's consent page."""
        admin = self._hub.require_admin(request)
        try:
            settings = settings_of(self._hub.settings_for(NAME))
        except AuthenticationError as exc:
            return _refuse(409, str(exc))
        # Never from the request's Host header: a client could send Intuit's code elsewhere.
        redirect_uri = settings.redirect_uri or f"{self._hub.public_url}{ROUTE_PREFIX}/callback"
        state, binding = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        self._remember(
            state,
            _Pending(
                binding=_digest(binding),
                admin=admin,
                redirect_uri=redirect_uri,
                expires=time.monotonic() + STATE_TTL_S,
            ),
        )
        params = {
            "client_id": settings.client_id,
            "response_type": "code",
            "scope": SCOPE,
            "redirect_uri": redirect_uri,
            "state": state,
        }
        response = _redirect(302, f"{settings.authorize_url}?{urlencode(params)}")
        response.set_cookie(
            BINDING_COOKIE,
            binding,
            max_age=int(STATE_TTL_S),
            httponly=True,
            samesite="Lax",
            secure=request.secure or self._hub.public_url.startswith("https://"),
            path=f"{ROUTE_PREFIX}/",
        )
        return response

    def _take(self, request: web.Request) -> _Pending | str:
        """The pending flow this callback completes, or why it is refused."""
        state = request.query.get("state", "")
        pending = self._pending.pop(_digest(state), None) if state else None
        if pending is None:
            return "unknown or already used state: start again at " + ROUTE_PREFIX + "/connect"
        if pending.expires < time.monotonic():
            return "the connect request expired: start again at " + ROUTE_PREFIX + "/connect"
        binding = request.cookies.get(BINDING_COOKIE, "")
        if not binding or not hmac.compare_digest(_digest(binding), pending.binding):
            return "this callback does not belong to the browser session that started it"
        try:  # the admin session usually stays behind: its cookie is SameSite=Strict
            admin = self._hub.require_admin(request)
        except web.HTTPUnauthorized:
            return pending
        if not hmac.compare_digest(admin, pending.admin):
            return "this callback belongs to another admin session"
        return pending

    async def callback(self, request: web.Request) -> web.StreamResponse:
        """Complete the flow: check the state, exchange the code, store the connection."""
        pending = self._take(request)
        if isinstance(pending, str):
            return _refuse(400, pending)
        query = request.query
        if query.get("error"):
            return _refuse(400, f"Intuit did not grant access: {query['error']}")
        code, realm = query.get("code", ""), query.get("realmId", "")
        if not code:
            return _refuse(400, "the callback has no code")
        if not REALM_ID.fullmatch(realm):
            return _refuse(400, "the callback's realmId is not 1 to 32 ASCII digits")
        hub = self._hub
        try:
            settings = settings_of(hub.settings_for(NAME))
            form = {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": pending.redirect_uri,
            }
            tokens = await token_request(hub, settings, form)
        except ProviderError as exc:
            return _refuse(400, f"the authorization code was not accepted: {exc}")
        connection = await hub.add_connection(
            NAME, realm, f"QuickBooks {realm}", credentials_from(tokens, realm), origin="oauth"
        )
        await self._welcome(request, hub, connection, settings)
        response = _redirect(303, f"/admin?connected={quote(connection.id)}")
        response.del_cookie(BINDING_COOKIE, path=f"{ROUTE_PREFIX}/")
        return response

    async def _welcome(
        self,
        request: web.Request,
        hub: HubAPI,
        connection: Connection,
        settings: QuickBooksSettings,
    ) -> None:
        """Name the connection after the company, schedule it, check it, start a first sync."""
        try:
            info, _ = await client_for(hub, connection).company_info()
            name = str(info.get("CompanyName") or "").strip()
            if name:
                await hub.add_connection(
                    NAME, connection.key, name, connection.credentials, origin="oauth"
                )
        except ProviderError as exc:
            log.warning("CompanyInfo unavailable after connect", error=str(exc)[:200])
        log.info("quickbooks company connected", connection=connection.id)
        await hub.check_health(connection)
        if settings.sync_on_connect:
            with contextlib.suppress(SyncBusyError):  # a sync already running does the job
                await hub.request_sync(connection, full=True)

    async def disconnect(self, request: web.Request) -> web.StreamResponse:
        """Revoke the company's tokens at Intuit and remove its connection (records stay)."""
        hub = self._hub
        hub.require_admin(request)
        fields: dict[str, Any] = dict(request.query)
        try:
            if request.content_type == "application/json":
                fields.update(await request.json())
            elif request.can_read_body:
                fields.update(await request.post())
        except (ValueError, TypeError):
            return web.json_response({"error": "the body must be a form or JSON"}, status=400)
        wanted = str(fields.get("connection", ""))
        found = await hub.find_connections(NAME, wanted) if wanted else []
        if not wanted or not found:
            return web.json_response({"error": f"no QuickBooks connection {wanted!r}"}, status=404)
        connection = found[0]
        revoked = False
        token = connection.credentials.get("refresh_token")
        if token and not connection.credentials.get("invalid_grant_at"):
            try:
                await revoke(hub, settings_of(hub.settings_for(NAME)), str(token))
                revoked = True
            except (ProviderError, AuthenticationError) as exc:
                log.warning("token revocation failed", connection=connection.id, error=str(exc))
        await hub.remove_connection(connection.id)
        log.info("quickbooks company disconnected", connection=connection.id, revoked=revoked)
        if _wants_json(request):
            return web.json_response({"disconnected": connection.id, "revoked": revoked})
        return _redirect(303, "/admin")
