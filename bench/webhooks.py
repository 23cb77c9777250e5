"""Inbound webhook throughput: signed ~1 KB ``generic`` webhooks against the running daemon,
beside the same load against a bare aiohttp endpoint that only reads the body and answers 200.

    python bench/webhooks.py [--duration 10] [--connections 64] [--rounds 3]

Both servers run as their own processes; the load comes from wrk (Debian package ``wrk``)
with two threads. Every request carries a unique ``webhook-id``, so each one is a new event
the hub must commit before answering. After the hub's run the script checks that every
request answered 2xx is in the inbox.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from custom_accounting.sandbox import free_port

SECRET = "bench-secret"
BODY = json.dumps(
    {
        "event": "invoice.paid",
        "client": {"id": "cl_000123", "name": "Acme Bookkeeping LLC", "email": "ap@acme.test"},
        "invoice": {"id": "inv_000456", "amount": "1250.00", "currency": "USD"},
        "note": "x" * 760,
    }
)
LUA = """
local counter = 0
local threads = 0
function setup(thread) thread:set("tid", threads); threads = threads + 1 end
function init(args) prefix = tostring(tid) .. "-" .. tostring(math.random(1000000000)) end
request = function()
  counter = counter + 1
  return wrk.format("POST", nil, {["Content-Type"] = "application/json",
    ["X-Signature"] = "%(sig)s", ["webhook-id"] = prefix .. "-" .. counter}, %(body)s)
end
"""
BARE = """
import sys
from aiohttp import web
async def handle(request):
    await request.read()
    return web.Response(text="ok")
app = web.Application()
app.router.add_post("/webhooks/generic/bench", handle)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
"""


def wait_ready(url: str, proc: subprocess.Popen[bytes]) -> None:
    """Poll ``url`` until it answers with anything but 503 (not ready yet)."""
    for _ in range(600):
        if proc.poll() is not None:
            raise SystemExit(f"server exited early with {proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except urllib.error.HTTPError as exc:
            if exc.code != 503:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise SystemExit(f"{url} did not come up")


def run_wrk(url: str, script: Path, duration: int, connections: int) -> dict[str, float]:
    """Run wrk and parse requests/s, latency percentiles and the response counts."""
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    def ms(label: str) -> float:
        value, unit = re.search(rf"{label}\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),  # type: ignore[union-attr]
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
        "p50": ms("50%"),
        "p99": ms("99%"),
    }


def main() -> None:
    """Measure bare and hub in alternating rounds, check durability, print the figures and one
    JSON line: each figure's median over the rounds (these machines drift between runs), and
    the requests answered 2xx and events stored over all rounds."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3, help="bare + hub pairs")
    parser.add_argument(
        "--workers",
        type=int,
        default=max(0, (os.cpu_count() or 1) - 1),
        help="the hub's webhooks.workers (default: one per core beside the daemon's; 0: the "
        "daemon alone)",
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install wrk")
    signature = hmac.new(SECRET.encode(), BODY.encode(), hashlib.sha256).hexdigest()
    rounds: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="hub-bench-wh-") as tmp:
        folder = Path(tmp)
        script = folder / "post.lua"
        script.write_text(LUA % {"sig": signature, "body": json.dumps(BODY)})

        def load(command: list[str], port: int, ready_path: str) -> dict[str, float]:
            server = subprocess.Popen(command)
            try:
                wait_ready(f"http://127.0.0.1:{port}{ready_path}", server)
                url = f"http://127.0.0.1:{port}/webhooks/generic/bench"
                return run_wrk(url, script, args.duration, args.connections)
            finally:
                server.terminate()
                server.wait()

        for number in range(1, args.rounds + 1):
            bare_port, hub_port = free_port(), free_port()
            bare = load([sys.executable, "-c", BARE, str(bare_port)], bare_port, "/")
            database = folder / f"hub-{number}.db"
            config = folder / "hub.toml"
            config.write_text(
                f'[server]\nport = {hub_port}\n[store]\npath = "{database}"\n'
                f'[logging]\nlevel = "warning"\n[admin]\ntoken = "bench"\n'
                f"[webhooks]\nworkers = {args.workers}\n"
                f'[webhooks.generic.bench]\nsecret = "{SECRET}"\n'
            )
            serve = [sys.executable, "-m", "hub.cli", "serve", "--config", str(config)]
            hub = load(serve, hub_port, "/readyz")  # ready: the ingest workers listen too
            conn = sqlite3.connect(database)
            stored = conn.execute("SELECT count(*) FROM events WHERE source = 'generic'")
            rounds.append(report(number, bare, hub, stored.fetchone()[0]))
            conn.close()
            for leftover in folder.glob(f"{database.name}*"):  # its dirty pages would slow
                leftover.unlink()  # the next rounds' commits as the kernel writes them back
    medians = {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
    medians["answered_2xx"] = sum(r["answered_2xx"] for r in rounds)
    medians["stored"] = sum(r["stored"] for r in rounds)
    print(json.dumps({**medians, "rounds": len(rounds), "workers": args.workers}))


def report(
    number: int, bare: dict[str, float], hub: dict[str, float], stored: int
) -> dict[str, float]:
    """Print one round's figures; return them as the JSON line's fields."""
    answered = int(hub["requests"] - hub["non2xx"])
    ratio = hub["rps"] / bare["rps"]
    print(f"round {number}")
    print(f"  bare: {bare['rps']:>8,.0f} req/s  p50 {bare['p50']:.1f} ms  p99 {bare['p99']:.1f} ms")
    print(
        f"  hub : {hub['rps']:>8,.0f} req/s  p50 {hub['p50']:.1f} ms  p99 {hub['p99']:.1f} ms  "
        f"({hub['non2xx']:.0f} non-2xx)"
    )
    print(f"  ratio hub/bare: {ratio:.2f}; p99 hub/bare: {hub['p99'] / bare['p99']:.1f}x")
    verdict = "ok" if stored >= answered else "LOST EVENTS"
    print(f"  durable: {stored:,} events stored for {answered:,} answered 2xx ({verdict})")
    return {
        "hub_per_s": round(hub["rps"]),
        "bare_per_s": round(bare["rps"]),
        "ratio": round(ratio, 3),
        "p50_ms": hub["p50"],
        "p99_ms": hub["p99"],
        "bare_p99_ms": bare["p99"],
        "p99_ratio": round(hub["p99"] / bare["p99"], 2),
        "answered_2xx": answered,
        "stored": stored,
    }


if __name__ == "__main__":
    main()
