"""Settings: the three ways to authenticate, the defaults, and bad values refused at start
with one line per problem naming the key."""

from __future__ import annotations

import importlib.util

import pytest

from hub.errors import ConfigError
from hub.testing import hub_of
from plugins.azure_storage import settings as module
from plugins.azure_storage.sandbox import ACCOUNT, ACCOUNT_KEY
from plugins.azure_storage.settings import MIB, AzureStorageSettings
from tests.azure_storage.conftest import azure_config
from tests.azure_storage.test_documents import PDF, upload

KEY = "integrations.azure_storage"


def test_the_defaults():
    settings = AzureStorageSettings(connection_string="UseDevelopmentStorage=true")
    assert settings.max_upload_bytes == 100 * MIB
    assert (settings.sas_minutes, settings.sas_max_minutes) == (60, 24 * 60)
    assert settings.container == "documents"
    assert (settings.block_size, settings.transfer_concurrency) == (4 * MIB, 2)


async def test_account_url_and_key_store_and_read_documents(hub_client, azurite, container_name):
    config = azure_config(azurite, container_name)
    section = config["integrations"]["azure_storage"]
    del section["connection_string"]
    section |= {"account_url": azurite.blob_url, "account_key": ACCOUNT_KEY}
    client = await hub_client(config=config)
    [connection] = await hub_of(client).connections("azure_storage")
    assert connection.id == f"azure_storage:{ACCOUNT}"
    status, doc = await upload(client)
    assert status == 201, doc
    assert await (await client.get(f"/api/documents/{doc['id']}/content")).read() == PDF
    link = await (await client.get(f"/api/documents/{doc['id']}/link")).json()
    assert "sig=" in link["url"]  # a service SAS signed with the key


async def test_an_account_name_comes_from_the_endpoint(make_hub):
    section = {"account_url": "https://firmdocs.blob.core.windows.net", "account_key": "a2V5"}
    hub = await make_hub(config={"integrations": {"azure_storage": section}})
    [connection] = await hub.connections("azure_storage")
    assert (connection.id, connection.title) == ("azure_storage:firmdocs", "firmdocs/documents")


def test_azure_ad_needs_azure_identity(monkeypatch):
    absent = {"account_url": "https://firmdocs.blob.core.windows.net", "azure_ad": True}
    monkeypatch.setattr(module.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ValueError, match="needs the azure-identity package"):
        AzureStorageSettings(**absent)
    spec = importlib.util.spec_from_loader("azure.identity", loader=None)
    monkeypatch.setattr(module.importlib.util, "find_spec", lambda name: spec)
    assert AzureStorageSettings(**absent).azure_ad is True


SECRET = "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=c2VjcmV0LXZhbHVl"
BAD = [
    ({}, ["account_url: Value error, required: connection_string, or account_url"]),
    (
        {"connection_string": SECRET, "account_url": "https://a.blob.core.windows.net"},
        ["account_url: Value error, give connection_string or account_url, not both"],
    ),
    (
        {"account_url": "https://a.blob.core.windows.net"},
        ["azure_ad: Value error, with account_url give account_key or azure_ad = true"],
    ),
    (
        {"account_url": "https://a.blob.core.windows.net", "account_key": "k", "azure_ad": True},
        ["azure_ad: Value error, give account_key or azure_ad = true, not both"],
    ),
    ({"connection_string": SECRET, "account_key": "k"}, ["account_key: Value error"]),
    (
        {"account_url": "ftp://a", "account_key": "k"},
        ["account_url: String should match", "account_key: Value error"],
    ),
    ({"connection_string": SECRET, "container": "My_Docs"}, ["container: Value error"]),
    ({"connection_string": SECRET, "max_upload_bytes": 0}, ["max_upload_bytes: Input"]),
    ({"connection_string": SECRET, "max_upload_bytes": "big"}, ["max_upload_bytes: Input"]),
    ({"connection_string": SECRET, "sas_minutes": 0}, ["sas_minutes: Input"]),
    ({"connection_string": SECRET, "sas_minutes": 90, "sas_max_minutes": 30}, ["sas_minutes: V"]),
    ({"connection_string": SECRET, "sas_max_minutes": 10081}, ["sas_max_minutes: Input"]),
    ({"connection_string": SECRET, "transfer_concurrency": 0}, ["transfer_concurrency: Input"]),
    ({"connection_string": SECRET, "block_size": 1024}, ["block_size: Input"]),
    ({"connection_string": SECRET, "recovery_containers": ["ok-one", "-bad"]}, ["recovery_c"]),
    ({"connection_string": SECRET, "account": "x"}, ["account: unknown key"]),
]


@pytest.mark.parametrize(("section", "starts"), BAD)
async def test_bad_values_are_one_line_each_naming_the_key(make_hub, section, starts):
    with pytest.raises(ConfigError) as caught:
        await make_hub(config={"integrations": {"azure_storage": section}})
    lines = str(caught.value).splitlines()
    assert len(lines) == len(starts), lines
    for line, start in zip(lines, starts, strict=True):
        assert line.startswith(f"configuration: {KEY}."), line
        assert line[len(f"configuration: {KEY}.") :].startswith(start), line
    assert "c2VjcmV0" not in str(caught.value)  # never the connection string's key
