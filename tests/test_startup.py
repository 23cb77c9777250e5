"""What the daemon does between its start and its first answer: nothing it could leave."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = """
import asyncio, gc, json, os, signal, sys
from hub import daemon
from hub.config import load_settings

collections = []
collect = gc.collect
gc.collect = lambda *args: collections.append(args) or collect(*args)

async def main():
    config = {"store": {"path": sys.argv[1]}, "server": {"port": 0}}
    settings = load_settings(None, config, read_default=False)
    served = asyncio.create_task(daemon.serve(settings))
    while not gc.get_freeze_count():  # frozen: started, about to serve
        await asyncio.sleep(0.01)
    os.kill(os.getpid(), signal.SIGTERM)
    print(json.dumps({"code": await served, "collections": len(collections)}))

asyncio.run(main())
"""


def test_the_daemon_freezes_start_up_objects_without_a_full_collection(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "hub.db")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == {"code": 0, "collections": 0}
