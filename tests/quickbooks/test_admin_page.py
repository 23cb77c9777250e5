"""The admin page offers QuickBooks' connect flow and announces a new connection."""

from __future__ import annotations

from typing import Any

from plugins.quickbooks.sandbox import RunningSandbox
from tests.quickbooks.conftest import qb_config


async def test_connect_link_only_when_configured(hub_client: Any, sandbox: RunningSandbox) -> None:
    bare = await hub_client()
    page = await (await bare.get("/admin")).text()
    assert "/oauth/quickbooks/connect" not in page  # not configured: nothing to connect with

    client = await hub_client(config=qb_config(sandbox))
    page = await (await client.get("/admin?connected=quickbooks%3A123")).text()
    assert 'href="/oauth/quickbooks/connect"' in page
    assert "Connected <strong>quickbooks:123</strong>" in page
    hostile = await (await client.get("/admin?connected=%3Cscript%3E")).text()
    assert "Connected <strong>&lt;script&gt;</strong>" in hostile  # escaped, never markup
