"""Start-up stays fast: loading and starting every plugin, as the daemon does, imports no
provider SDK (a plugin imports its SDK when its integration is enabled or first used). The
OpenAI integration is configured here: it imports ``openai`` and ``pypdf`` only at its first
call, not when it starts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SDKS = ("stripe", "openai", "azure", "sendgrid", "pypdf")
SEEN = "orjson"
"""A module the plugins do import at load: shows that the check sees such imports."""
ROOT = Path(__file__).resolve().parents[1]
SCRIPT = """
import asyncio, json, sys
from aiohttp import web
from hub.config import load_settings
from hub.web.app import create_app
from hub.web.keys import HUB

async def main():
    openai = {"api_key": "sk-test", "base_url": "http://127.0.0.1:9/v1"}
    config = {"store": {"path": sys.argv[1]}, "integrations": {"openai": openai}}
    settings = load_settings(None, config, read_default=False)
    app = create_app(settings, schedule=False, announce=lambda token: None)
    runner = web.AppRunner(app)
    await runner.setup()  # starts the hub: migrations, startup hooks
    hub = app[HUB]
    loaded = sorted(info.name for info in hub.plugins.info.values() if info.hooks)
    failed = {info.name: info.error for info in hub.plugins.failed}
    await runner.cleanup()
    seen = sorted({name.partition(".")[0] for name in sys.modules} & set(sys.argv[2:]))
    print(json.dumps({"loaded": loaded, "failed": failed, "sdks": seen}))

asyncio.run(main())
"""


def test_loading_every_plugin_imports_no_provider_sdk(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "hub.db"), SEEN, *SDKS],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["failed"] == {}
    assert {"quickbooks", "custom_accounting", "log_alerts", "openai"} <= set(result["loaded"])
    assert result["sdks"] == [SEEN], f"imported at load: {result['sdks']}"
