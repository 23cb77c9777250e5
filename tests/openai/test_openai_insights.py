"""Client insights: the hub's key figures, the model's narrative, and no number in the answer
that is not the hub's."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from hub import hookimpl
from hub.model import KEY_FIGURES, Connection, Integration, KeyFigures
from hub.testing import hub_of
from plugins.openai.grounding import foreign_numbers
from tests.openai.conftest import Documents, openai_config
from tests.stripe.test_actions import add_client

NARRATIVE = {
    "health": "stable",
    "summary": "The business is profitable. Margins held up well.",
    "strengths": ["The current ratio is comfortable.", "Gross margin is 42.5% of revenue."],
    "concerns": ["Debt is rising.", "Revenue fell 12% last month."],
    "recommendations": ["Review the cost of sales."],
    "risk_level": "medium",
}


def key_figures(connection: Connection, client_id: int) -> KeyFigures:
    return KeyFigures(
        integration=connection.integration,
        connection_id=connection.id,
        client_id=client_id,
        company="Willow Books LLC",
        currency="USD",
        basis="accrual",
        period_start=date(2026, 11, 1),
        period_end=date(2026, 11, 30),
        figures={name: None for name in KEY_FIGURES}
        | {
            "current_ratio": Decimal("1.3333"),
            "gross_margin": Decimal("0.4250"),
            "revenue_growth_mom": Decimal("-0.0312"),
        },
        amounts={"revenue": Decimal("125000.00"), "gross_profit": Decimal("53125.00")},
        computed_at=datetime(2026, 12, 1, 3, tzinfo=UTC),
    )


class Books:
    """An accounting integration whose connection's books are ``client_id``'s."""

    def __init__(self) -> None:
        self.client_id: int | None = None

    @hookimpl
    def register(self) -> Integration:
        return Integration(name="books", title="Books", default_sync_interval=None)

    @hookimpl
    def key_figures(self, connection: Connection) -> KeyFigures | None:
        return None if self.client_id is None else key_figures(connection, self.client_id)


async def insights_client(hub_client: Any, sandbox: Any, books: Books) -> Any:
    client = await hub_client(
        plugins=[books, Documents()], config=openai_config(sandbox), builtins=("plugins.openai",)
    )
    await hub_of(client).add_connection("books", "a", "Books a", {}, origin="test")
    return client


async def test_insights_carry_the_hubs_figures_and_the_models_words(hub_client, sandbox):
    books = Books()
    client = await insights_client(hub_client, sandbox, books)
    books.client_id = await add_client(hub_of(client), "Willow Books LLC", "ap@willow.example")
    sandbox.state.script_next(NARRATIVE)
    response = await client.post(f"/api/clients/{books.client_id}/insights")
    assert response.status == 200, await response.text()
    answer = await response.json()
    assert answer["client_id"] == books.client_id and answer["client_name"] == "Willow Books LLC"
    assert answer["figures"]["figures"]["current_ratio"] == "1.3333"
    assert answer["figures"]["amounts"]["revenue"] == "125000.00"
    narrative = answer["narrative"]
    assert narrative["health"] == "stable" and narrative["risk_level"] == "medium"
    # 42.5 % is the hub's gross margin; "fell 12%" is not its growth (-3.12 %): removed, flagged
    assert narrative["strengths"] == NARRATIVE["strengths"]
    assert narrative["concerns"] == ["Debt is rising."]
    [flag] = answer["flags"]
    assert flag["check"] == "foreign_number" and flag["field"] == "concerns[1]"
    assert flag["numbers"] == ["12%"]
    [call] = sandbox.state.model_calls()
    text = call.body["input"][0]["content"][0]["text"]
    assert "current_ratio: 1.3333" in text and "revenue: 125000.00" in text
    usage = await (await client.get("/api/openai/usage")).json()
    assert usage["models"][0]["calls"] == 1


async def test_unknown_client_404_and_a_client_without_figures_422(hub_client, sandbox):
    books = Books()
    client = await insights_client(hub_client, sandbox, books)
    assert (await client.post("/api/clients/999/insights")).status == 404
    assert (await client.post("/api/clients/x/insights")).status == 404
    client_id = await add_client(hub_of(client), "Willow Books LLC", "ap@willow.example")
    response = await client.post(f"/api/clients/{client_id}/insights")
    assert response.status == 422
    assert "has no key figures" in (await response.json())["error"]
    assert sandbox.state.model_calls() == []


async def test_a_nonconforming_narrative_is_a_502_and_stores_nothing(hub_client, sandbox):
    books = Books()
    client = await insights_client(hub_client, sandbox, books)
    books.client_id = await add_client(hub_of(client), "Willow Books LLC", "ap@willow.example")
    sandbox.state.fail_next("missing_field")
    response = await client.post(f"/api/clients/{books.client_id}/insights")
    assert response.status == 502
    assert (await response.json())["error_class"] == "nonconforming"
    assert await hub_of(client).api.tables("plugins.openai").query("insights") == []


def test_numbers_agree_with_the_hubs_at_their_own_precision():
    figures = key_figures(Connection("books:a", "books", "a", "Books", {}, None), 1)  # type: ignore[arg-type]
    assert foreign_numbers("a current ratio of 1.33 and margin of 42.5 %", figures) == []
    assert foreign_numbers("revenue of $125,000 in November 2026", figures) == []
    assert foreign_numbers("revenue dipped 3.1%", figures) == []
    assert foreign_numbers("a ratio of 1.4 and 7 problems", figures) == ["1.4", "7"]
