"""The Ledger API's HTTP calls, through the hub's shared client (retries, limits)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from hub.errors import AuthenticationError, ValidationError

if TYPE_CHECKING:
    from hub.api import HttpClient, HubAPI
    from hub.model import Connection

    from .settings import LedgerSettings


class LedgerClient:
    """Bearer-token client for ``/v1/me``, ``/v1/accounts`` and ``/v1/transactions``."""

    def __init__(self, http: HttpClient, base_url: str, token: str, limit_key: str) -> None:
        self._http = http
        self._base = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        self._key = limit_key
        http.configure_limit(limit_key, max_rate=600, period=60, max_concurrent=4)

    async def get(self, path: str, params: dict[str, str] | None = None) -> Any:
        """GET ``path`` and return the parsed JSON."""
        response = await self._http.request(
            "GET", self._base + path, headers=self._headers, params=params, limit_key=self._key
        )
        return response.json()

    async def me(self) -> dict[str, Any]:
        """The account the token belongs to."""
        result: dict[str, Any] = await self.get("/v1/me")
        return result

    async def record(self, stream: str, record_id: str) -> dict[str, Any] | None:
        """One record of ``stream`` as it is now, or None if Ledger has no such (live) record."""
        try:
            result: dict[str, Any] = await self.get(f"/v1/{stream}/{record_id}")
        except ValidationError as exc:
            if exc.status == 404:
                return None
            raise
        return result

    async def pages(
        self, path: str, after: str | None, page_size: int
    ) -> AsyncIterator[tuple[list[dict[str, Any]], str | None]]:
        """Yield (records, cursor after them) pages in (updated_at, id) order from ``after``."""
        while True:
            params = {"limit": str(page_size), "include_deleted": "true"}
            if after:
                params["after"] = after
            page = await self.get(path, params)
            records: list[dict[str, Any]] = page["data"]
            after = page.get("next_cursor") or after
            if records:
                yield records, after
            if not page.get("has_more"):
                return


def client_for(connection: Connection, settings: LedgerSettings, hub: HubAPI) -> LedgerClient:
    """A client with the connection's token and rate limit.

    :raise AuthenticationError: no token is stored.
    """
    token = connection.credentials.get("api_token")
    if not token:
        raise AuthenticationError("no API token stored for this connection")
    return LedgerClient(hub.http, settings.base_url, token, limit_key=connection.id)
