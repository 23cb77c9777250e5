"""Settings: defaults, environments, sandbox overrides, validation; the unconfigured plugin."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.cli import main
from hub.errors import ConfigError
from plugins.quickbooks.settings import QuickBooksSettings
from plugins.quickbooks.sync import SPECS

KEYS = {"client_id": "ABC", "client_secret": "shh"}


def test_defaults_follow_intuit():
    settings = QuickBooksSettings(**KEYS)
    assert settings.minor_version == 75 and settings.page_size == 1000
    assert (settings.requests_per_minute, settings.max_concurrent) == (500, 10)
    assert (settings.requests_per_second, settings.throttle_wait_s) == (10, 60.0)
    assert settings.api_base_url == "https://sandbox-quickbooks.api.intuit.com"
    assert settings.authorize_url == "https://appcenter.intuit.com/connect/oauth2"
    assert settings.token_url == "https://oauth.platform.intuit.com/oauth2/v1/tokens/bearer"
    assert settings.revoke_url == "https://developer.api.intuit.com/v2/oauth2/tokens/revoke"
    production = QuickBooksSettings(**KEYS, environment="production")
    assert production.api_base_url == "https://quickbooks.api.intuit.com"


def test_sandbox_overrides():
    settings = QuickBooksSettings(
        **KEYS, base_url="http://127.0.0.1:1/", oauth_base_url="http://127.0.0.1:2"
    )
    assert settings.api_base_url == "http://127.0.0.1:1"
    assert settings.token_url == "http://127.0.0.1:2/oauth2/v1/tokens/bearer"
    assert settings.authorize_url == "http://127.0.0.1:2/connect/oauth2"


async def test_bad_values_name_the_key(make_hub):
    with pytest.raises(ConfigError, match=r"integrations\.quickbooks\.streams.*invoicez"):
        await make_hub(config={"integrations": {"quickbooks": {**KEYS, "streams": ["invoicez"]}}})
    with pytest.raises(ConfigError, match=r"integrations\.quickbooks\.client_secret: required"):
        await make_hub(config={"integrations": {"quickbooks": {"client_id": "x"}}})
    with pytest.raises(ConfigError, match=r"integrations\.quickbooks\.environment"):
        await make_hub(config={"integrations": {"quickbooks": {**KEYS, "environment": "qa"}}})


async def test_without_a_section_the_plugin_loads_disconnected(hub_client):
    client = await hub_client()
    status = await (await client.get("/api/status")).json()
    (qbo,) = [i for i in status["integrations"] if i["name"] == "quickbooks"]
    assert (qbo["configured"], qbo["status"], qbo["connections"]) == (False, "disconnected", [])
    assert len(qbo["streams"]) == len(SPECS) + 1  # the entities' streams and ``reports``
    (plugin,) = [p for p in status["plugins"] if p["name"] == "quickbooks"]
    assert plugin["origin"] == "built-in" and plugin["error"] is None


def test_check_passes_without_a_section(tmp_path: Path, capsys, monkeypatch):
    monkeypatch.setattr("hub.cli.configure_logging", lambda *args: None)
    config = tmp_path / "hub.toml"
    config.write_text(f'[store]\npath = "{tmp_path / "hub.db"}"\n')
    assert main(["check", "--config", str(config)]) == 0
    output = capsys.readouterr().out
    assert "quickbooks         -           not configured" in output
