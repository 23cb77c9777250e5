"""The Ledger API's HTTP calls, through the hub's shared client (retries, limits)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from hub.api import HttpClient


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
