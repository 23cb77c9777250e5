"""Inbound webhooks: the one hub process beside a bare aiohttp endpoint, under overload, and
while a large sync runs.

    python bench/webhooks.py [--duration 10] [--connections 64] [--rounds 3] [--sync-records N]

1. Throughput: signed ~1 KB ``generic`` webhooks from wrk (two threads) against the daemon,
   beside the same load against a bare endpoint that only reads the body and answers 200, in
   alternating rounds (medians). Every request answered 2xx must be in the inbox.
2. Overload: 4x the connections against a small ingest bound (``webhooks.queue_max_*``): the
   answers are 2xx or 503, never anything else; events stored equal the 2xx answers exactly
   (``bench/loadgen.py`` waits for every answer); the daemon's peak RSS stays low.
3. Big bodies: 512 connections posting 512 KB bodies at once, default bounds: peak RSS.
4. During a sync: wrk at a modest rate while the daemon runs a full sync of ``--sync-records``
   transactions (the example plugin's pre-rendering sandbox), beside the same load idle:
   webhook p99 must stay low (the writer serves webhook groups before sync batches), and the
   sync must end with every record stored.

Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from child import start_ready_child
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


TOKEN = "bench-webhooks-token-of-32-characters"
HERE = Path(__file__).parent


def hub_config(folder: Path, port: int, database: Path, extra: str = "") -> Path:
    """Write a hub.toml for a benchmark daemon; return its path."""
    config = folder / "hub.toml"
    config.write_text(
        f'[server]\nport = {port}\n[store]\npath = "{database}"\n'
        f'[logging]\nlevel = "warning"\n[admin]\ntoken = "{TOKEN}"\n'
        f'[webhooks.generic.bench]\nsecret = "{SECRET}"\n{extra}'
    )
    return config


@contextmanager
def server(command: list[str], port: int, ready_path: str) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``command`` until the block ends; wait until ``ready_path`` answers."""
    proc = subprocess.Popen(command)
    try:
        wait_ready(f"http://127.0.0.1:{port}{ready_path}", proc)
        yield proc
    finally:
        proc.terminate()
        proc.wait()


def hub_command(config: Path) -> list[str]:
    """The daemon's command line."""
    return [sys.executable, "-m", "hub.cli", "serve", "--config", str(config)]


def peak_rss_mb(proc: subprocess.Popen[bytes]) -> float:
    """The process's peak resident memory so far (``VmHWM``), in MB."""
    for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise SystemExit("no VmHWM in /proc")


def stored_events(database: Path) -> int:
    """How many generic events the database holds."""
    conn = sqlite3.connect(database)
    try:
        return int(
            conn.execute("SELECT count(*) FROM events WHERE source = 'generic'").fetchone()[0]
        )
    finally:
        conn.close()


def forget(database: Path) -> None:
    """Delete a round's database: its dirty pages would slow the next rounds' commits as the
    kernel writes them back."""
    for leftover in database.parent.glob(f"{database.name}*"):
        leftover.unlink()


def throughput_rounds(
    folder: Path, script: Path, args: argparse.Namespace
) -> list[dict[str, float]]:
    """Bare and hub in alternating rounds (these machines drift between runs)."""
    rounds = []
    for number in range(1, args.rounds + 1):
        bare_port, hub_port = free_port(), free_port()
        with server([sys.executable, "-c", BARE, str(bare_port)], bare_port, "/"):
            bare = run_wrk(url_of(bare_port), script, args.duration, args.connections)
        database = folder / f"hub-{number}.db"
        with server(hub_command(hub_config(folder, hub_port, database)), hub_port, "/readyz"):
            hub = run_wrk(url_of(hub_port), script, args.duration, args.connections)
        rounds.append(report(number, bare, hub, stored_events(database)))
        forget(database)
    return rounds


def url_of(port: int) -> str:
    """The generic bench sender's webhook URL on ``port``."""
    return f"http://127.0.0.1:{port}/webhooks/generic/bench"


def overload(
    folder: Path, name: str, connections: int, body_bytes: int, duration: int, bounds: str
) -> dict[str, float]:
    """Count every answer of a load past the ingest bound; the daemon's peak RSS."""
    port, database = free_port(), folder / f"{name}.db"
    config = hub_config(folder, port, database, f"[webhooks]\nmax_body_bytes = {1 << 20}\n{bounds}")
    with server(hub_command(config), port, "/readyz") as hub:
        idle = peak_rss_mb(hub)
        out = subprocess.run(
            [
                sys.executable,
                str(HERE / "loadgen.py"),
                url_of(port),
                SECRET,
                f"--connections={connections}",
                f"--duration={duration}",
                f"--body-bytes={body_bytes}",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        peak = peak_rss_mb(hub)
    counts = json.loads(out.strip().splitlines()[-1])
    stored = stored_events(database)
    forget(database)
    other = counts["other"] + counts["errors"]
    verdict = "ok" if stored == counts["2xx"] and other == 0 else "WRONG"
    print(
        f"{name}: {connections} connections x {body_bytes:,} B: {counts['2xx']:,} 2xx, "
        f"{counts['503']:,} 503, {other} other; {stored:,} stored ({verdict}); "
        f"RSS {idle:.0f} MB idle, {peak:.0f} MB peak"
    )
    return {
        "2xx": counts["2xx"],
        "503": counts["503"],
        "other": other,
        "stored": stored,
        "peak_rss_mb": peak,
    }


def during_sync(folder: Path, script: Path, records: int, duration: int) -> dict[str, float]:
    """Webhook p99 at a modest load, idle and while a full sync of ``records`` runs."""
    print(f"starting a sandbox with {records:,} transactions (pre-rendering pages)...", flush=True)
    sandbox, base_url = start_ready_child(
        [
            "-m",
            "custom_accounting.sandbox",
            "--port",
            str(free_port()),
            "--accounts",
            "100",
            "--transactions",
            str(records),
            "--prerender",
            "--page-size",
            "1000",
        ]
    )
    try:
        port, database = free_port(), folder / "sync.db"
        extra = (
            f'[integrations.custom_accounting]\nbase_url = "{base_url}"\n'
            f'api_token = "ledger-sandbox-token"\npage_size = 1000\nsync_interval = 86400\n'
        )
        with server(hub_command(hub_config(folder, port, database, extra)), port, "/readyz"):
            idle = run_wrk(url_of(port), script, duration, 16)
            run_id = api(port, "POST", "/api/sync/custom_accounting", {"mode": "full"})["run_ids"][
                0
            ]
            busy = run_wrk(url_of(port), script, duration, 16)
            run = wait_for(lambda: api(port, "GET", f"/api/runs/{run_id}"))
    finally:
        sandbox.terminate()
        sandbox.wait()
    conn = sqlite3.connect(database)
    table = "records_custom_accounting_transactions"
    synced = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    conn.close()
    forget(database)
    exact = "exact" if run["state"] == "succeeded" and synced == records else "WRONG"
    print(
        f"during a sync: webhook p99 {busy['p99']:.1f} ms (idle {idle['p99']:.1f} ms), "
        f"{busy['rps']:,.0f} req/s over {duration} s; sync {run['state']}, {synced:,} records in "
        f"{run['duration_s']} s ({exact})"
    )
    return {
        "sync_p99_ms": busy["p99"],
        "idle_p99_ms": idle["p99"],
        "sync_records": synced,
        "sync_s": run["duration_s"],
        "sync_state_ok": exact == "exact",
    }


def api(port: int, method: str, path: str, body: object = None) -> dict[str, Any]:
    """Call the daemon's admin API."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        answer: dict[str, Any] = json.loads(response.read())
        return answer


def wait_for(read: Callable[[], dict[str, Any]], timeout: float = 600) -> dict[str, Any]:
    """Poll a run until it has finished."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = read()
        if run["state"] not in {"queued", "running"}:
            return run
        time.sleep(0.2)
    raise SystemExit("the sync did not finish")


def main() -> None:
    """Run every part; print the figures and one JSON line (medians for the throughput)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3, help="bare + hub pairs")
    parser.add_argument("--sync-records", type=int, default=200_000)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install wrk")
    signature = hmac.new(SECRET.encode(), BODY.encode(), hashlib.sha256).hexdigest()
    with tempfile.TemporaryDirectory(prefix="hub-bench-wh-") as tmp:
        folder = Path(tmp)
        script = folder / "post.lua"
        script.write_text(LUA % {"sig": signature, "body": json.dumps(BODY)})
        rounds = throughput_rounds(folder, script, args)
        small = "queue_max_requests = 32\nqueue_max_bytes = 65536\n"
        over = overload(folder, "overload", args.connections * 4, 1024, args.duration, small)
        big = overload(folder, "big-bodies", 512, 512 * 1024, args.duration, "")
        sync = during_sync(folder, script, args.sync_records, args.duration)
    medians = {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
    print(
        json.dumps(
            {
                "hub_per_s": medians["hub_per_s"],
                "bare_per_s": medians["bare_per_s"],
                "ratio": medians["ratio"],
                "p99_ms": medians["p99_ms"],
                "bare_p99_ms": medians["bare_p99_ms"],
                "overload_2xx": over["2xx"],
                "overload_503": over["503"],
                "overload_other": over["other"],
                "overload_stored": over["stored"],
                "peak_rss_mb": over["peak_rss_mb"],
                "big_body_peak_rss_mb": big["peak_rss_mb"],
                "big_body_other": big["other"],
                "big_body_stored_equals_2xx": big["stored"] == big["2xx"],
                **sync,
                "rounds": len(rounds),
            }
        )
    )


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
