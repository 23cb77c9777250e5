"""Settings: one transport at least, the EU host, config errors as one line naming the key."""

from __future__ import annotations

import pytest

from hub.errors import ConfigError
from plugins.sendgrid.settings import SendGridSettings


def test_the_eu_region_uses_sendgrids_eu_host():
    settings = SendGridSettings(api_key="SG.x", from_email="a@b.test", region="eu")
    assert settings.api_base_url == "https://api.eu.sendgrid.com"
    assert SendGridSettings(api_key="SG.x", from_email="a@b.test").api_base_url == (
        "https://api.sendgrid.com"
    )


async def test_a_section_without_any_channel_is_a_config_error_naming_it(make_hub):
    with pytest.raises(ConfigError, match=r"integrations\.sendgrid"):
        await make_hub(config={"integrations": {"sendgrid": {"from_email": "a@b.test"}}})


async def test_a_bad_sender_address_names_the_key(make_hub):
    with pytest.raises(ConfigError, match=r"integrations\.sendgrid\.from_email"):
        await make_hub(
            config={"integrations": {"sendgrid": {"api_key": "SG.x", "from_email": "nope"}}}
        )


async def test_unconfigured_email_loads_and_sends_nothing(hub_client):
    client = await hub_client()
    response = await client.post(
        "/api/notifications", json={"recipients": ["a@b.test"], "subject": "s", "text": "t"}
    )
    assert response.status == 409


async def test_a_malformed_webhook_key_names_the_key(make_hub):
    section = {"api_key": "SG.x", "from_email": "a@b.test", "event_webhook_public_keys": ["QUJD"]}
    with pytest.raises(ConfigError, match=r"integrations\.sendgrid\.event_webhook_public_keys"):
        await make_hub(config={"integrations": {"sendgrid": section}})


async def test_smtp_only_syncs_nothing_and_stays_connected(make_hub):
    from hub.testing import sync_records

    section = {"from_email": "a@b.test", "smtp": {"host": "127.0.0.1"}}
    hub = await make_hub(config={"integrations": {"sendgrid": section}})
    records = await sync_records(hub, "sendgrid")
    assert all(rows == {} for rows in records.values())
