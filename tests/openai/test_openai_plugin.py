"""The plugin as the hub sees it: settings, the upload event, the bounded queue, health and
the redacted diagnostics."""

from __future__ import annotations

import pytest

from hub.errors import ConfigError
from hub.testing import hub_of
from plugins.openai.runtime import runtime_of
from tests.openai.conftest import RECEIPT, Documents, finished


def test_settings_need_a_price_for_every_model_they_name(hub_config, make_hub):
    from hub.testing import build_hub

    config = {"integrations": {"openai": {"api_key": "sk-x", "models": {"invoice": "my-model"}}}}
    with pytest.raises(
        ConfigError, match=r"integrations.openai: .*models.invoice: model 'my-model'"
    ):
        build_hub(hub_config(config), builtins=("plugins.openai",))


def test_settings_plans_and_overrides():
    from plugins.openai.settings import OpenAISettings

    settings = OpenAISettings(api_key="sk-x", plan="professional")
    assert (settings.limits.tokens, str(settings.limits.cost)) == (10_000_000, "150")
    settings = OpenAISettings(api_key="sk-x", plan="enterprise", token_limit=5, cost_limit="1.5")
    assert (settings.limits.tokens, str(settings.limits.cost)) == (5, "1.5")
    priced = OpenAISettings(
        api_key="sk-x",
        model="local",
        prices={"local": {"input": "0.1", "cached_input": "0", "output": "0.2"}},
    )
    assert (
        "gpt-4o-mini" in priced.prices
        and priced.price_of("local").output == 2 * priced.price_of("local").input
    )
    with pytest.raises(ValueError, match="at most 4 decimals"):
        OpenAISettings(
            api_key="sk-x", prices={"m": {"input": "0.00001", "cached_input": "0", "output": "0"}}
        )


async def test_an_upload_is_analysed_once_when_analyze_on_upload(make_client):
    client = await make_client(analyze_on_upload=True)
    document_id = client.documents.add(RECEIPT)
    hub = hub_of(client)
    data = {"id": document_id, "client": "acme", "name": "receipt.txt"}
    await hub.emit("document.uploaded", data, source="azure_storage")
    await hub.dispatcher.drain()
    analysis = await finished(client, document_id)
    assert analysis["state"] == "analyzed" and analysis["trigger"] == "upload"
    await hub.emit("document.uploaded", data, source="azure_storage")  # a second delivery
    await hub.dispatcher.drain()
    await finished(client, document_id)
    assert len(client.sandbox.state.model_calls()) == 1


async def test_uploads_are_not_analysed_when_analyze_on_upload_is_off(make_client):
    client = await make_client(analyze_on_upload=False)
    document_id = client.documents.add(RECEIPT)
    hub = hub_of(client)
    await hub.emit("document.uploaded", {"id": document_id}, source="azure_storage")
    await hub.dispatcher.drain()
    response = await client.get(f"/api/documents/{document_id}/analysis")
    assert response.status == 404


async def test_past_the_queue_a_request_gets_503_with_retry_after(make_client):
    client = await make_client(concurrency=1, queue_size=1)
    client.sandbox.state.fail_next("slow", delay=0.5)
    ids = [client.documents.add(RECEIPT) for _ in range(3)]
    answers = [await client.post(f"/api/documents/{i}/analyze") for i in ids]
    assert [a.status for a in answers] == [202, 202, 503]
    assert answers[2].headers["Retry-After"] == "10"
    assert "the analysis queue is full" in (await answers[2].json())["error"]
    for document_id in ids[:2]:
        assert (await finished(client, document_id))["state"] == "analyzed"


async def test_at_most_concurrency_analyses_run_at_once(make_client):
    client = await make_client(concurrency=2, queue_size=10)
    runtime = runtime_of(hub_of(client).api)
    assert runtime is not None
    structured, running, most = runtime.api.structured, [0], [0]

    async def counted(*args, **kwargs):
        running[0] += 1
        most[0] = max(most[0], running[0])
        try:
            return await structured(*args, **kwargs)
        finally:
            running[0] -= 1

    runtime.api.structured = counted
    client.sandbox.state.fail_next("slow", delay=0.2, times=5)
    ids = [client.documents.add(RECEIPT) for _ in range(5)]
    for document_id in ids:
        assert (await client.post(f"/api/documents/{document_id}/analyze")).status == 202
    await runtime.queue.drain()
    assert most[0] == 2 and len(client.sandbox.state.model_calls()) == 5


async def test_health_reports_the_key_models_and_plan_usage(make_client):
    client = await make_client(models={"invoice": "gpt-4.1"})
    hub = hub_of(client).api
    [connection] = await hub.connections("openai")
    report = await hub.check_health(connection)
    assert report.status == "healthy"
    checks = {check.name: check for check in report.checks}
    assert checks["API key valid"].ok and checks["models offered"].ok
    assert "starter plan" in checks["plan usage"].detail
    assert client.sandbox.state.requests[-1].path == "/v1/models"


async def test_health_disconnects_on_a_refused_key(make_client):
    client = await make_client(api_key="sk-not-the-key")
    hub = hub_of(client).api
    [connection] = await hub.connections("openai")
    report = await hub.check_health(connection)
    assert report.status == "disconnected"


async def test_diagnostics_are_redacted(make_client):
    client = await make_client()
    [connection] = await hub_of(client).api.connections("openai")
    response = await client.get(f"/api/connections/{connection.id}/diagnostics")
    text = await response.text()
    assert response.status == 200 and client.sandbox.state.config.api_key not in text
    dump = (await response.json())["plugin"]
    assert dump["api"] == "responses" and dump["usage"]["plan"] == "starter"
    assert dump["queue"] == {"depth": 0, "size": 100}


async def test_not_configured_answers_503(hub_client):
    client = await hub_client(plugins=[Documents()], builtins=("plugins.openai",))
    response = await client.get("/api/openai/usage")
    assert response.status == 503 and "not configured" in (await response.json())["error"]
