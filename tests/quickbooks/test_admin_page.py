"""The admin page offers QuickBooks' connect flow and announces a new connection."""

from __future__ import annotations

from typing import Any

import pytest

from hub.testing import ADMIN_TOKEN
from hub.web.keys import HUB
from plugins.quickbooks.sandbox import RunningSandbox
from tests.browser import browser_page, sign_in
from tests.quickbooks.conftest import REALM, qb_config


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


@pytest.mark.slow
async def test_connecting_a_company_in_a_real_browser(
    hub_client: Any, sandbox: RunningSandbox
) -> None:
    """Login, "Connect an account", Intuit's (sandbox) consent, callback: the company is
    connected and announced, with the state bound to this browser through the redirects."""
    client = await hub_client(config=qb_config(sandbox), authorized=False, listen=True)
    base = str(client.make_url("")).rstrip("/")
    assert client.app[HUB].api.public_url == base  # where Intuit sends the browser back
    async with browser_page() as page:
        await sign_in(page, base, ADMIN_TOKEN)
        await page.click("text=Connect an account")
        await page.wait_for_url(f"{base}/admin?connected=*")
        notice = await page.get_by_role("status").inner_text()
        assert f"quickbooks:{REALM}" in notice
        connection = page.locator(f"[data-connection='quickbooks:{REALM}']")
        assert await connection.count() == 1
    assert [c.id for c in await client.app[HUB].connections("quickbooks")] == [
        f"quickbooks:{REALM}"
    ]
