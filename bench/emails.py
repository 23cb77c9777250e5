"""E-mail: a bulk notification to 100,000 recipients through the SendGrid sandbox with its
rate limit on, and Event Webhook batches of 1,000 events verified and stored.

    python bench/emails.py [--recipients 100000] [--rate-limit 20] [--batches 30]

1. Bulk: the hub (in this process, its HTTP app on a real socket) is sent one
   ``POST /api/notifications`` for ``--recipients`` addresses; the sandbox (its own process)
   accepts ``--rate-limit`` mail-send requests per second (fixed one-second windows with
   ``X-RateLimit-*`` headers, like SendGrid). Requests accepted must equal
   ceil(recipients / 1000); recipients/s is compared with what the limit allows
   (rate x 1000 recipients per request), which must be >= 0.8. Peak RSS is this process's.
2. Events: ``--batches`` signed batches of 1,000 events posted one after another to
   ``/webhooks/sendgrid``; each 200 means verified and committed; batches/s and events/s.

Ends with one JSON line. (Named ``emails.py``: a ``bench/email.py`` would shadow the
standard library's ``email`` package for every import made by a script run from ``bench/``.)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from child import start_ready_child
from custom_accounting.sandbox import free_port

from hub.config import load_settings
from hub.logs import configure_logging
from hub.web.app import create_app
from hub.web.keys import HUB
from plugins.sendgrid.sandbox import SandboxConfig, SandboxState, start_sandbox

TOKEN = "bench-admin-token"


async def serve_sandbox(port: int, rate_limit: int) -> None:
    """Child process: the sandbox, printing its URL and webhook key when ready."""
    config = SandboxConfig(port=port, rate_limit=rate_limit, keep_bodies=False)
    sandbox = await start_sandbox(config)
    print(f"ready {sandbox.base_url}", flush=True)
    await asyncio.Event().wait()


async def bench(
    sandbox_url: str, folder: Path, recipients: int, batches: int, signer: SandboxState
) -> dict[str, Any]:
    """Both parts against a hub served on a free port; the raw figures."""
    port = free_port()
    settings = load_settings(
        None,
        {
            "store": {"path": str(folder / "hub.db")},
            "admin": {"token": TOKEN},
            "server": {"port": port},
            "integrations": {
                "sendgrid": {
                    "api_key": SandboxConfig.api_key,
                    "base_url": sandbox_url,
                    "from_email": "hub@demo.test",
                    "alert_recipients": [],
                    "event_webhook_public_keys": [signer.public_key],
                }
            },
        },
        read_default=False,
    )
    app = create_app(settings, schedule=False, announce=lambda token: None)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    base = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {TOKEN}"}
    out: dict[str, Any] = {}
    try:
        async with aiohttp.ClientSession(headers=headers) as session:
            addresses = [f"client{n}@bulk.test" for n in range(recipients)]
            body = {"recipients": addresses, "subject": "Tax season", "text": "Hello"}
            began = time.perf_counter()
            async with session.post(f"{base}/api/notifications", json=body) as response:
                answer = await response.json()
                assert response.status == 202, answer
            out["accept_s"] = time.perf_counter() - began
            url = f"{base}/api/notifications/batches/{answer['batch']}"
            while True:
                async with session.get(url) as response:
                    counts = await response.json()
                if (
                    sum(counts["requests"].get(s, 0) for s in ("sent", "failed", "retrying"))
                    >= (answer["requests"])
                ):
                    break
                await asyncio.sleep(0.05)
            out["bulk_s"] = time.perf_counter() - began
            out["requests_sent"] = counts["requests"].get("sent", 0)
            out["recipients_sent"] = counts["recipients"].get("sent", 0)
            out["errors"] = counts["errors"]
            async with session.get(f"{sandbox_url}/_sandbox/stats") as response:
                out["sandbox"] = await response.json()
            hub = app[HUB]
            events_per_batch = 1000
            bodies = []
            for b in range(batches):
                events = [
                    {
                        "email": f"client{n}@bulk.test",
                        "event": "delivered" if n % 50 else "bounce",
                        "sg_event_id": f"bench-{b}-{n}",
                        "sg_message_id": f"m{b}.filter",
                        "timestamp": int(time.time()),
                    }
                    for n in range(events_per_batch)
                ]
                bodies.append(signer.signed_events(events))
            began = time.perf_counter()
            for payload, signed in bodies:
                async with session.post(
                    f"{base}/webhooks/sendgrid", data=payload, headers=signed
                ) as response:
                    assert response.status == 200, await response.text()
            out["events_s"] = time.perf_counter() - began
            out["events"] = batches * events_per_batch
            await hub.dispatcher.drain()
    finally:
        await runner.cleanup()
    return out


def main() -> None:
    """Run both parts; print the figures and one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipients", type=int, default=100_000)
    parser.add_argument("--rate-limit", type=int, default=20, help="mail sends per second")
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--serve-sandbox", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_sandbox is not None:
        asyncio.run(serve_sandbox(args.serve_sandbox, args.rate_limit))
        return
    configure_logging("warning", "console")
    port = free_port()
    proc, sandbox_url = start_ready_child(
        [__file__, "--serve-sandbox", str(port), "--rate-limit", str(args.rate_limit)]
    )
    signer = SandboxState(SandboxConfig())
    try:
        with tempfile.TemporaryDirectory(prefix="hub-bench-email-") as tmp:
            out = asyncio.run(bench(sandbox_url, Path(tmp), args.recipients, args.batches, signer))
    finally:
        proc.terminate()
        proc.wait()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    expected = math.ceil(args.recipients / 1000)
    rate = out["recipients_sent"] / out["bulk_s"]
    allowed = args.rate_limit * 1000
    print(
        f"bulk: {out['recipients_sent']:,} recipients in {out['requests_sent']} requests "
        f"(expected {expected}) in {out['bulk_s']:.2f}s = {rate:,.0f}/s; "
        f"the limit allows {allowed:,}/s (ratio {rate / allowed:.2f}); peak RSS {peak_mb:.0f} MB"
    )
    batch_rate, event_rate = args.batches / out["events_s"], out["events"] / out["events_s"]
    print(
        f"events: {out['events']:,} in {args.batches} batches in {out['events_s']:.2f}s = "
        f"{batch_rate:.1f} batches/s, {event_rate:,.0f} events/s"
    )
    print(
        json.dumps(
            {
                "recipients": out["recipients_sent"],
                "requests": out["requests_sent"],
                "requests_expected": expected,
                "rate_limited_429": out["sandbox"]["rate_limited"],
                "bulk_s": round(out["bulk_s"], 2),
                "accepted_after_s": round(out["accept_s"], 2),
                "recipients_per_s": round(rate),
                "limit_recipients_per_s": allowed,
                "ratio": round(rate / allowed, 3),
                "peak_rss_mb": round(peak_mb, 1),
                "event_batches_per_s": round(args.batches / out["events_s"], 2),
                "events_per_s": round(out["events"] / out["events_s"]),
                "errors": out["errors"],
            }
        )
    )


if __name__ == "__main__":
    main()
