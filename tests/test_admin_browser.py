"""The admin page in a real browser (Debian's Chromium driven by Playwright)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.store.client_match import Candidate
from hub.testing import ADMIN_TOKEN, sync_records
from hub.web.keys import HUB
from tests.browser import browser_page
from tests.conftest import ledger_config

pytestmark = pytest.mark.slow


async def test_login_status_page_and_sync_button(hub_client, ledger, tmp_path: Path):
    client = await hub_client(config=ledger_config(ledger), authorized=False)
    hub = client.app[HUB]
    await sync_records(hub, "custom_accounting")
    await hub.health.check("custom_accounting:default")
    base = str(client.make_url("")).rstrip("/")

    async with browser_page() as page:
        await page.goto(base + "/admin")
        assert page.url.endswith("/admin/login")

        await page.fill("#token", "not-the-token")
        await page.click("button[type=submit]")
        assert await page.get_by_role("alert").inner_text() == "That token is not right."

        await page.fill("#token", ADMIN_TOKEN)
        await page.click("button[type=submit]")
        await page.wait_for_url(base + "/admin")
        card = page.locator("[data-integration=custom_accounting]")
        assert "Ledger (example)" in await card.inner_text()
        connection = card.locator("[data-connection='custom_accounting:default']")
        assert await connection.locator(".pill").inner_text() == "healthy"
        assert "transactions: 2,500" in await connection.inner_text()
        await page.screenshot(path=str(tmp_path / "admin.png"), full_page=True)

        button = connection.locator("button[data-sync]")
        await button.click()
        await page.wait_for_function(
            "document.querySelector(\"[data-connection='custom_accounting:default'] "
            "button\").textContent.startsWith('Started run')"
        )
        run_id = int((await button.inner_text()).rsplit(" ", 1)[1])

    run = await hub.store.runs.get(run_id)
    assert run is not None and run["trigger"] == "api"


async def test_a_client_to_review_is_linked_from_the_admin_page(hub_client):
    client = await hub_client(authorized=False)
    clients = client.app[HUB].store.clients
    await clients.match("quickbooks", "quickbooks:1", [Candidate("1", "Acme", "a@acme.test")])
    await clients.match("quickbooks", "quickbooks:1", [Candidate("2", "Bolt", "b@bolt.test")])
    await clients.match("quickbooks", "quickbooks:2", [Candidate("10", "Acme", "b@bolt.test")])
    await client.app[HUB].add_connection("quickbooks", "2", "Company 2", {}, origin="test")
    base = str(client.make_url("")).rstrip("/")

    async with browser_page() as page:
        await page.goto(base + "/admin/login")
        await page.fill("#token", ADMIN_TOKEN)
        await page.click("button[type=submit]")
        await page.wait_for_url(base + "/admin")
        row = page.locator("[data-review='quickbooks|quickbooks:2|10']")
        assert "different clients" in await row.inner_text()
        await row.locator("select").select_option("2")
        await row.locator("button[data-link]").click()
        await page.wait_for_function(
            "document.querySelector(\"[data-review='quickbooks|quickbooks:2|10'] "
            "button\").textContent.startsWith('Linked to')"
        )
        assert "Bolt" in await row.locator("button").inner_text()

    assert await clients.reviews() == []
    bolt = next(c for c in await clients.list() if c["id"] == 2)
    assert any(link["provider_id"] == "10" for link in bolt["links"])
