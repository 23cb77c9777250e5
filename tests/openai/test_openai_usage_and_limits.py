"""Every call's tokens, cost and request id are recorded; the month's usage is answered
against the plan; a call whose worst case exceeds what is left is refused before it is made;
429s are retried as the answer asks, ``insufficient_quota`` never; a refused key disconnects."""

from __future__ import annotations

from decimal import Decimal

import pytest

from hub.testing import hub_of
from plugins.openai.runtime import runtime_of
from plugins.openai.settings import DEFAULT_PRICES, OpenAISettings
from plugins.openai.usage import Budget, BudgetExceeded, Call, Tokens, cost_units, record, usd
from tests.openai.conftest import RECEIPT, analyse


def runtime(client):
    running = runtime_of(hub_of(client).api)
    assert running is not None
    return running


async def test_a_call_records_its_tokens_cost_and_request_id(make_client):
    client = await make_client()
    await analyse(client, client.documents.add(RECEIPT), "receipt")
    [call] = client.sandbox.state.model_calls()
    answer = call.answer
    usage = await (await client.get("/api/openai/usage")).json()
    tokens = Tokens(
        answer["usage"]["input_tokens"],
        answer["usage"]["input_tokens_details"]["cached_tokens"],
        answer["usage"]["output_tokens"],
    )
    expected = usd(cost_units(DEFAULT_PRICES["gpt-4o-mini"], tokens))
    assert usage["plan"] == "starter"
    assert usage["limits"] == {"tokens": 2_000_000, "cost_usd": "25"}
    assert usage["used"] == {"tokens": tokens.total, "cost_usd": expected}
    assert usage["models"] == [
        {
            "model": "gpt-4o-mini",
            "calls": 1,
            "input_tokens": tokens.input,
            "cached_tokens": tokens.cached,
            "output_tokens": tokens.output,
            "cost_usd": expected,
        }
    ]
    assert usage["remaining"]["tokens"] == 2_000_000 - tokens.total
    headers = usage["rate_limits"]["headers"]
    assert (
        headers["x-ratelimit-limit-requests"] == call.response_headers["x-ratelimit-limit-requests"]
    )
    [row] = await hub_of(client).api.tables("plugins.openai").query("calls")
    assert row["request_id"] == call.response_headers["x-request-id"]
    assert row["purpose"] == "analysis" and row["outcome"] == "ok"


def test_costs_are_exact_decimals():
    price = DEFAULT_PRICES["gpt-4o-mini"]  # 0.15 / 0.075 / 0.60 per 1M
    units = cost_units(price, Tokens(input=1_000_000, cached=200_000, output=10))
    assert Decimal(usd(units)) == Decimal("0.12") + Decimal("0.015") + Decimal("0.000006")


async def test_a_call_over_the_plans_tokens_is_refused_before_it_is_made(make_client):
    client = await make_client(token_limit=1000)
    analysis = await analyse(client, client.documents.add(RECEIPT), "receipt")
    assert analysis["state"] == "failed" and analysis["error_class"] == "plan_limit"
    assert "plan limit: this call could use" in analysis["error"]
    assert "starter plan has 1000 of 1000 left" in analysis["error"]
    assert client.sandbox.state.model_calls() == []


async def test_the_budget_counts_this_months_usage(make_client):
    client = await make_client(cost_limit="0.01")
    hub = hub_of(client).api
    settings = runtime(client).settings
    spent = Call("analysis", "doc_0", "gpt-4o-mini", Tokens(60_000, 0, 0), "req_1", "ok")
    await record(hub, settings, spent, {})  # $0.009 of the $0.01
    analysis = await analyse(client, client.documents.add(RECEIPT), "receipt")
    assert analysis["error_class"] == "plan_limit" and "could cost $" in analysis["error"]
    assert "of $0.01 left" in analysis["error"]
    assert client.sandbox.state.model_calls() == []
    health = await hub.check_health((await hub.connections("openai"))[0])
    assert health.status == "warning" and "nearly used up" in health.message


async def test_calls_in_flight_reserve_their_worst_case(make_hub):
    hub = await make_hub(
        config={"integrations": {"openai": {"api_key": "sk-x", "token_limit": 3000}}},
        builtins=("plugins.openai",),
    )
    settings = hub.settings_for("openai")
    assert isinstance(settings, OpenAISettings)
    budget = Budget()
    async with budget.reserve(hub.api, settings, "gpt-4o-mini", 900):  # 900 + 2000 output
        with pytest.raises(BudgetExceeded, match="has 100 of 3000 left"):
            async with budget.reserve(hub.api, settings, "gpt-4o-mini", 900):
                pass
    async with budget.reserve(hub.api, settings, "gpt-4o-mini", 900):
        pass  # released when the first call ended


async def test_a_429_storm_is_retried_as_asked_then_reported_as_rate_limiting(make_client):
    client = await make_client(max_retries=2)
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    runtime(client).api.sleep = sleep
    client.sandbox.state.fail_next("rate_limit", times=10, retry_after=0.25)
    analysis = await analyse(client, client.documents.add(RECEIPT), "receipt")
    assert analysis["state"] == "failed" and analysis["error_class"] == "rate_limit"
    assert "OpenAI rate limit (429 rate_limit_exceeded" in analysis["error"]
    assert len(client.sandbox.state.model_calls()) == 3 and waits == [0.25, 0.25]


async def test_a_5xx_is_retried_and_the_analysis_succeeds(make_client):
    client = await make_client()
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    runtime(client).api.sleep = sleep
    client.sandbox.state.fail_next("server_error")
    analysis = await analyse(client, client.documents.add(RECEIPT), "receipt")
    assert analysis["state"] == "analyzed"
    assert len(client.sandbox.state.model_calls()) == 2 and len(waits) == 1


async def test_a_retry_after_over_the_limit_fails_at_once(make_client):
    client = await make_client(max_retry_wait=5)
    client.sandbox.state.fail_next("rate_limit", retry_after=30)
    analysis = await analyse(client, client.documents.add(RECEIPT), "receipt")
    assert analysis["error_class"] == "rate_limit" and "over max_retry_wait" in analysis["error"]
    assert len(client.sandbox.state.model_calls()) == 1


async def test_insufficient_quota_is_not_retried_and_not_called_rate_limiting(make_client):
    client = await make_client(max_retries=5)
    client.sandbox.state.fail_next("insufficient_quota", times=10)
    analysis = await analyse(client, client.documents.add(RECEIPT), "receipt")
    assert analysis["state"] == "failed" and analysis["error_class"] == "quota"
    assert "the OpenAI quota is used up (429 insufficient_quota" in analysis["error"]
    assert len(client.sandbox.state.model_calls()) == 1


async def test_a_refused_key_fails_the_analysis_and_disconnects_the_connection(make_client):
    client = await make_client(api_key="sk-wrong-key-0000")
    analysis = await analyse(client, client.documents.add(RECEIPT), "receipt")
    assert analysis["error_class"] == "authentication"
    assert "OpenAI refused the API key (401" in analysis["error"]
    assert "sk-wrong-key-0000" not in analysis["error"]
    hub = hub_of(client).api
    [connection] = await hub.connections("openai")
    state = hub.connection_state(connection.id)
    assert state.health == "disconnected" and state.needs_reauth
