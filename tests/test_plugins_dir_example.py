"""The example third-party plugin loaded from ``plugins.dir`` (not as an entry point) and
synced end to end through the daemon's HTTP API."""

from __future__ import annotations

import shutil
from pathlib import Path

import custom_accounting

from hub.testing import stored_records, wait_for_run
from hub.web.keys import HUB
from tests.conftest import ledger_config


async def test_example_plugin_from_plugins_dir_syncs_through_the_api(hub_client, ledger, tmp_path):
    folder = tmp_path / "plugins"
    folder.mkdir()
    # a copy under another plugin name; the installed entry point of the same integration is
    # turned off, so the integration can only come from the folder
    shutil.copytree(Path(custom_accounting.__file__).parent, folder / "ledger_copy")
    config = ledger_config(ledger)
    config["plugins"] = {"dir": str(folder), "deny": ["custom_accounting"]}
    client = await hub_client(config=config)

    status = await (await client.get("/api/status")).json()
    plugins = {p["name"]: p for p in status["plugins"]}
    assert "custom_accounting" not in plugins
    assert plugins["ledger_copy"]["origin"].startswith("plugins_dir (")
    assert plugins["ledger_copy"]["integration"] == "custom_accounting"
    assert plugins["ledger_copy"]["error"] is None

    response = await client.post("/api/sync/custom_accounting", json={"full": True})
    assert response.status == 202
    run_id = (await response.json())["run_id"]
    run = await wait_for_run(client, run_id)
    assert run["state"] == "succeeded"
    hub = client.app[HUB]
    records = await stored_records(hub, "custom_accounting", "custom_accounting:default")
    assert records["transactions"] == ledger.state.live_records("transactions")
    assert records["accounts"] == ledger.state.live_records("accounts")
