"""Test support: Debian's Chromium driven by Playwright (which never downloads browsers)."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from playwright.async_api import Page, async_playwright

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@asynccontextmanager
async def browser_page() -> AsyncIterator[Page]:
    """A fresh headless page (its own profile), closed afterwards."""
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield await browser.new_page(viewport={"width": 1280, "height": 900})
        finally:
            await browser.close()


async def sign_in(page: Page, base: str, token: str) -> None:
    """Log in on the admin page's form."""
    await page.goto(base + "/admin/login")
    await page.fill("#token", token)
    await page.click("button[type=submit]")
    await page.wait_for_url(base + "/admin")
