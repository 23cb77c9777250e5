"""Start-up: from launch to ``/readyz`` answering 200, with every built-in plugin loaded and
nothing configured, beside a bare aiohttp app started the same way in the same run; then the
daemon's idle RSS.

    python bench/startup.py [--rounds 5]

Both are started as fresh processes (imports included), alternating; the figures are the
medians. Ends with one JSON line: {"hub_ready_s", "bare_ready_s", "ratio", "idle_rss_mb",
"plugins"}. Goal: ratio <= 3 (2 aimed for) as provider plugins arrive, which is why a plugin
imports its provider's SDK when its integration is enabled or first used, not at load.
"""

from __future__ import annotations

import argparse
import compileall
import json
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from custom_accounting.sandbox import free_port

TOKEN = "bench-startup-token-of-32-characters"
BARE = """
import sys
from aiohttp import web
async def ready(request):
    return web.json_response({"status": "ready"})
app = web.Application()
app.router.add_get("/readyz", ready)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
"""


def time_to_ready(command: list[str], port: int) -> tuple[float, subprocess.Popen[bytes]]:
    """Launch ``command``; seconds until ``/readyz`` on ``port`` answers 200 (still running)."""
    started = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/readyz"
    while time.perf_counter() - started < 60:
        if proc.poll() is not None:
            raise SystemExit(f"{command[:3]} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return time.perf_counter() - started, proc
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.005)
    proc.kill()
    raise SystemExit(f"{url} was not ready in 60 s")


def rss_mb(proc: subprocess.Popen[bytes]) -> float:
    """The process's resident memory now, in MB."""
    for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise SystemExit("no VmRSS in /proc")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Terminate and reap."""
    proc.terminate()
    proc.wait(30)


def plugins_loaded(port: int) -> list[str]:
    """The plugins the daemon reports (``/api/status``)."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/status", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        status = json.loads(response.read())
    return sorted(plugin["name"] for plugin in status["plugins"])


def compile_sources() -> None:
    """Write the bytecode of the hub's and the plugins' modules, as ``pip install`` does.

    aiohttp, the bare app's only import, comes compiled from its install; an editable
    checkout (with ``PYTHONDONTWRITEBYTECODE`` set, as on the CI machines) would otherwise
    compile every hub module at every start and time the compiler, not the start.
    """
    root = Path(__file__).resolve().parent.parent
    for folder in ("hub", "plugins", "examples"):
        compileall.compile_dir(root / folder, quiet=1)


def main() -> None:
    """Alternate bare and hub starts; print each round, then one JSON line of medians."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    compile_sources()
    hub_times, bare_times, rss = [], [], []
    plugins: list[str] = []
    with tempfile.TemporaryDirectory(prefix="hub-bench-start-") as tmp:
        for number in range(1, args.rounds + 1):
            port = free_port()
            bare_s, bare = time_to_ready([sys.executable, "-c", BARE, str(port)], port)
            stop(bare)
            port = free_port()
            config = Path(tmp) / "hub.toml"
            config.write_text(
                f'[server]\nport = {port}\n[store]\npath = "{tmp}/hub-{number}.db"\n'
                f'[logging]\nlevel = "warning"\n[admin]\ntoken = "{TOKEN}"\n'
            )
            command = [sys.executable, "-m", "hub.cli", "serve", "--config", str(config)]
            hub_s, hub = time_to_ready(command, port)
            try:
                time.sleep(1.0)  # idle: the first health checks and jobs have run
                rss.append(rss_mb(hub))
                plugins = plugins_loaded(port)
            finally:
                stop(hub)
            hub_times.append(hub_s)
            bare_times.append(bare_s)
            print(
                f"round {number}: hub {hub_s:.2f} s, bare {bare_s:.2f} s "
                f"({hub_s / bare_s:.1f}x), idle RSS {rss[-1]:.0f} MB"
            )
    hub_ready, bare_ready = statistics.median(hub_times), statistics.median(bare_times)
    print(f"plugins loaded: {', '.join(plugins)}")
    print(
        json.dumps(
            {
                "hub_ready_s": round(hub_ready, 3),
                "bare_ready_s": round(bare_ready, 3),
                "ratio": round(hub_ready / bare_ready, 2),
                "idle_rss_mb": round(statistics.median(rss), 1),
                "plugins": len(plugins),
            }
        )
    )


if __name__ == "__main__":
    main()
