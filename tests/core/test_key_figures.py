"""Key figures: gathered from the owning plugins' ``key_figures`` hooks, served exactly."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from hub import hookimpl
from hub.api import HubAPI
from hub.model import KEY_FIGURES, Connection, Integration, KeyFigures
from hub.testing import hub_of


def figures_for(connection: Connection, client_id: int | None, hour: int) -> KeyFigures:
    return KeyFigures(
        integration=connection.integration,
        connection_id=connection.id,
        client_id=client_id,
        company=f"Company {connection.key}",
        currency="USD",
        basis="accrual",
        period_start=date(2026, 11, 1),
        period_end=date(2026, 11, 30),
        figures={name: None for name in KEY_FIGURES} | {"current_ratio": Decimal("1.3333")},
        amounts={"current_assets": Decimal("4000.10"), "current_liabilities": Decimal("3000.05")},
        computed_at=datetime(2026, 12, 1, hour, tzinfo=UTC),
        sources=({"report": "BalanceSheet", "period": "2026-11", "basis": "accrual"},),
    )


class Books:
    """An integration whose connections ``a`` and ``b`` have figures; ``c`` has none yet,
    ``d``'s hook raises, ``e``'s answers the wrong type."""

    @hookimpl
    def register(self) -> Integration:
        return Integration(name="books", title="Books", default_sync_interval=None)

    @hookimpl
    def key_figures(self, connection: Connection) -> Any:
        if connection.key == "c":
            return None
        if connection.key == "d":
            raise RuntimeError("table missing")
        if connection.key == "e":
            return {"current_ratio": 1.5}
        return figures_for(connection, 7 if connection.key == "a" else 8, hour=3)


class Other:
    """An integration without the hook."""

    @hookimpl
    def register(self) -> Integration:
        return Integration(name="other", title="Other", default_sync_interval=None)


async def books_client(hub_client: Any) -> Any:
    client = await hub_client(plugins=[Books(), Other()])
    hub = hub_of(client)
    for key in "abcde":
        await hub.add_connection("books", key, f"Books {key}", {}, origin="test")
    await hub.add_connection("other", "x", "Other", {}, origin="test")
    return client


async def test_financials_route_serves_exact_decimals(hub_client: Any) -> None:
    client = await books_client(hub_client)
    answer = await client.get("/api/connections/books:a/financials")
    assert answer.status == 200
    body = await answer.json()
    assert body["figures"]["current_ratio"] == "1.3333"
    assert body["figures"]["gross_margin"] is None
    assert body["amounts"] == {"current_assets": "4000.10", "current_liabilities": "3000.05"}
    assert body["period"] == {"start": "2026-11-01", "end": "2026-11-30"}
    assert body["client_id"] == 7 and body["basis"] == "accrual"
    assert body["sources"] == [{"report": "BalanceSheet", "period": "2026-11", "basis": "accrual"}]


async def test_financials_route_refuses_clearly(hub_client: Any) -> None:
    client = await books_client(hub_client)
    for connection, reason in [
        ("books:zzz", "no connection"),
        ("books:c", "no reports synced yet"),
        ("books:d", "no reports synced yet"),
        ("books:e", "no reports synced yet"),
        ("other:x", "computes none"),
    ]:
        answer = await client.get(f"/api/connections/{connection}/financials")
        assert answer.status == 404, connection
        assert reason in (await answer.json())["error"], connection


async def test_the_plugin_api_filters_by_client_and_skips_failures(hub_client: Any) -> None:
    client = await books_client(hub_client)
    api: HubAPI = hub_of(client).api
    everyone = await api.key_figures()
    assert [figures.connection_id for figures in everyone] == ["books:a", "books:b"]
    mine = await api.key_figures(client_id=8)
    assert [figures.connection_id for figures in mine] == ["books:b"]
    assert await api.key_figures(client_id=99) == []
    assert [f.connection_id for f in await api.key_figures("books:a")] == ["books:a"]
