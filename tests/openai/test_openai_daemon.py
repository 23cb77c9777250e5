"""From outside the process: a real daemon storing documents in Azurite and analysing them
with the OpenAI sandbox -- an upload over a real socket is analysed on ``document.uploaded``,
the Azure record follows the outcome, and a scanned PDF is a clear "no text" result."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from tests.azure_storage.conftest import azurite  # noqa: F401 (the session's Azurite)
from tests.azure_storage.test_documents import form
from tests.daemon import TOKEN, Daemon
from tests.openai.conftest import RECEIPT
from tests.openai.pdfs import blank_pdf, text_pdf

pytestmark = pytest.mark.slow


async def poll(daemon: Daemon, session: aiohttp.ClientSession, path: str, done: Any) -> Any:
    """GET ``path`` until ``done(answer)``; the answer (for up to 30 s: the machine may be busy)."""
    for _ in range(600):
        status, answer = await daemon.api(session, "GET", path)
        if status == 200 and done(answer):
            return answer
        await asyncio.sleep(0.05)
    raise AssertionError(f"{path}: still {status} {answer}")


async def upload(daemon: Daemon, session: aiohttp.ClientSession, data: bytes, name: str) -> str:
    headers = {"Authorization": f"Bearer {TOKEN}", "X-Uploaded-By": "ann@example.com"}
    async with session.post(
        f"{daemon.url}/api/documents", data=form(data, name=name), headers=headers
    ) as response:
        assert response.status == 201, await response.text()
        document: dict[str, Any] = await response.json()
    return str(document["id"])


async def test_an_upload_to_the_daemon_is_analysed(tmp_path, azurite, sandbox, reap_daemons):  # noqa: F811
    config = (
        "[integrations.azure_storage]\n"
        'container = "analysed"\n'
        "[integrations.openai]\n"
        f'base_url = "{sandbox.base_url}"\n'
    )
    env = {
        "HUB_INTEGRATIONS__AZURE_STORAGE__CONNECTION_STRING": azurite.connection_string,
        "HUB_INTEGRATIONS__OPENAI__API_KEY": sandbox.state.config.api_key,
    }
    daemon = Daemon(tmp_path, config, env)
    finished = lambda answer: answer["state"] in ("analyzed", "failed")  # noqa: E731
    async with aiohttp.ClientSession() as session:
        await daemon.ready(session, "/readyz")
        pdf = text_pdf([line.decode() for line in RECEIPT.splitlines()])
        document_id = await upload(daemon, session, pdf, "receipt-nov.pdf")
        analysis = await poll(daemon, session, f"/api/documents/{document_id}/analysis", finished)
        assert analysis["state"] == "analyzed", analysis
        assert analysis["type"] == "receipt" and analysis["trigger"] == "upload"
        assert analysis["data"]["total"] == "10.80"
        record = await poll(
            daemon,
            session,
            f"/api/documents/{document_id}",
            lambda d: d["analysis_state"] != "pending",
        )
        assert record["analysis_state"] == "analyzed"

        scan_id = await upload(daemon, session, blank_pdf(), "scan.pdf")
        scan = await poll(daemon, session, f"/api/documents/{scan_id}/analysis", finished)
        assert (scan["state"], scan["error_class"]) == ("failed", "no_text")
        record = await poll(
            daemon, session, f"/api/documents/{scan_id}", lambda d: d["analysis_state"] != "pending"
        )
        assert record["analysis_state"] == "failed"

        status, queued = await daemon.api(
            session, "POST", f"/api/documents/{document_id}/analyze", json={"type": "invoice"}
        )
        assert status == 202 and queued["state"] == "queued"
        status, usage = await daemon.api(session, "GET", "/api/openai/usage")
        assert status == 200 and usage["used"]["tokens"] > 0
    daemon.stop()
