"""A local, wire-compatible fake of SendGrid's v3 API, for tests, benchmarks and the demo.

It captures every mail-send request and answers in SendGrid's shapes: ``202`` with
``X-Message-Id``; ``400 {"errors": [{"message", "field", "help"}]}`` for a bad body (an unknown
template id, too many personalizations, an address twice); ``401`` for a wrong key; ``429``
with ``X-RateLimit-Limit/Remaining/Reset`` past its rate limit (fixed windows ending on whole
epoch seconds, like SendGrid's); and faults injected with :meth:`SandboxState.fail_next`.
It serves ``GET /v3/scopes``, ``GET /v3/verified_senders`` and the suppression lists
(``GET /v3/suppression/<list>``, ``DELETE /v3/suppression/<list>/<email>``), and signs
Event Webhook batches with a key pair it generates (:meth:`SandboxState.signed_events`).

    python -m plugins.sendgrid.sandbox --port 8795 --rate-limit 600
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import math
import secrets
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from .client import SUPPRESSION_LISTS
from .webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER

SCOPES = ("mail.send", "suppression.read", "suppression.delete", "scopes.read")


@dataclass(frozen=True)
class SandboxConfig:
    """How the sandbox behaves.

    :param rate_limit: mail-send requests allowed per ``rate_window`` seconds (None: no limit).
    :param templates: the dynamic template ids that exist.
    :param verified_senders: addresses listed as verified single senders.
    :param keep_bodies: keep each captured request's body (off for large benchmarks).
    """

    api_key: str = "SG.sandbox-api-key"
    host: str = "127.0.0.1"
    port: int = 0
    rate_limit: int | None = None
    rate_window: int = 1
    templates: frozenset[str] = frozenset(
        {"d-welcome", "d-document-ok", "d-document-failed", "d-payment-failed", "d-alert"}
    )
    verified_senders: tuple[str, ...] = ("hub@demo.test",)
    keep_bodies: bool = True


@dataclass(frozen=True)
class Captured:
    """One request the sandbox received (for assertions and spec validation)."""

    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: bytes
    status: int


@dataclass
class _Fault:
    status: int
    count: int
    headers: dict[str, str] = field(default_factory=dict)


def _errors(message: str, field_name: str | None = None, status: int = 400) -> web.Response:
    item = {"message": message, "field": field_name, "help": None}
    return web.json_response({"errors": [item]}, status=status)


class SandboxState:
    """Everything the sandbox holds: captured requests, sends, suppressions, its key pair."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.requests: list[Captured] = []
        self.sends: list[dict[str, Any]] = []
        self.recipients = 0
        self.suppressions: dict[str, dict[str, dict[str, Any]]] = {
            name: {} for name in SUPPRESSION_LISTS
        }
        self._faults: list[_Fault] = []
        self._window = (0, 0)
        self.rate_limited = 0
        self._key = ec.generate_private_key(ec.SECP256R1())
        der = self._key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.public_key = base64.b64encode(der).decode()
        """The Event Webhook verification key, base64 DER, as SendGrid's console shows it."""
        self.sent = asyncio.Event()
        """Set whenever a message is accepted (tests wait on it)."""

    def fail_next(
        self, status: int, count: int = 1, headers: Mapping[str, str] | None = None
    ) -> None:
        """Answer the next ``count`` mail-send requests with ``status`` (a 429 carries a reset
        one second ahead unless ``headers`` say otherwise)."""
        self._faults.append(_Fault(status, count, dict(headers or {})))

    def add_suppression(self, kind: str, email: str, reason: str = "") -> None:
        """Put ``email`` on one of SendGrid's suppression lists."""
        self.suppressions[kind][email.lower()] = {
            "email": email,
            "created": int(time.time()),
            "reason": reason or kind,
            "status": "",
        }

    # ------------------------------------------------------------------ signing

    def sign(self, body: bytes, timestamp: int | None = None) -> dict[str, str]:
        """The Event Webhook headers for ``body`` signed at ``timestamp`` (default now)."""
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        signature = self._key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        return {
            SIGNATURE_HEADER: base64.b64encode(signature).decode(),
            TIMESTAMP_HEADER: stamp,
            "Content-Type": "application/json",
        }

    def signed_events(
        self, events: Sequence[Mapping[str, Any]], timestamp: int | None = None
    ) -> tuple[bytes, dict[str, str]]:
        """A signed Event Webhook batch: the body (as SendGrid sends it, CRLF-terminated)
        and its headers."""
        body = orjson.dumps(list(events)) + b"\r\n"
        return body, self.sign(body, timestamp)

    # ------------------------------------------------------------------ rate limit

    def count_request(self) -> tuple[bool, dict[str, str]]:
        """Count one request in the current window: (allowed, rate-limit headers)."""
        limit = self.config.rate_limit
        if limit is None:
            return True, {}
        window = self.config.rate_window
        now = time.time()
        start = int(now // window) * window
        began, used = self._window
        if began != start:
            began, used = start, 0
        allowed = used < limit
        self._window = (began, used + 1 if allowed else used)
        headers = {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": str(max(limit - self._window[1], 0)),
            "X-RateLimit-Reset": str(math.ceil(began + window)),
        }
        return allowed, headers

    # ------------------------------------------------------------------ mail send

    def check_send(self, body: Any) -> web.Response | None:
        """A 400 answer for a body SendGrid would refuse, else None."""
        if not isinstance(body, dict):
            return _errors("The request body must be a JSON object", None)
        personalizations = body.get("personalizations")
        if not isinstance(personalizations, list) or not personalizations:
            return _errors("The personalizations field is required", "personalizations")
        if len(personalizations) > 1000:
            return _errors(
                "The personalizations field can have at most 1000 items", "personalizations"
            )
        sender = body.get("from")
        if not isinstance(sender, dict) or not sender.get("email"):
            return _errors("The from object must be provided for every email send.", "from.email")
        template = body.get("template_id")
        if template is not None and template not in self.config.templates:
            return _errors(f"The template_id {template} is not a valid template ID.", "template_id")
        if template is None and not body.get("content"):
            return _errors(
                "Unless a valid template_id is provided, the content parameter is required.",
                "content",
            )
        seen: set[str] = set()
        for index, item in enumerate(personalizations):
            for to in item.get("to") or []:
                email = str(to.get("email", "")).lower()
                if email in seen:
                    return _errors(
                        "Each email address in the personalization block should be unique "
                        "between to, cc, and bcc.",
                        f"personalizations.{index}.to",
                    )
                seen.add(email)
        if len(seen) > 1000:
            return _errors("The total number of recipients must be no more than 1000.", None)
        return None

    def accept(self, body: dict[str, Any]) -> str:
        """Record an accepted message; its ``X-Message-Id``."""
        message_id = secrets.token_urlsafe(16)
        count = sum(len(p.get("to") or []) for p in body["personalizations"])
        self.recipients += count
        self.sends.append(
            {"message_id": message_id, "recipients": count}
            | ({"body": body} if self.config.keep_bodies else {})
        )
        self.sent.set()
        return message_id

    def next_fault(self) -> _Fault | None:
        """The injected fault for this request, if any."""
        while self._faults and self._faults[0].count <= 0:
            self._faults.pop(0)
        if not self._faults:
            return None
        fault = self._faults[0]
        fault.count -= 1
        return fault


STATE_KEY = web.AppKey("sendgrid_sandbox", SandboxState)


def _state(request: web.Request) -> SandboxState:
    return request.app[STATE_KEY]


@web.middleware
async def _capture(request: web.Request, handler: Any) -> web.StreamResponse:
    state = _state(request)
    body = await request.read()
    auth = request.headers.get("Authorization", "")
    response: web.StreamResponse
    if auth != f"Bearer {state.config.api_key}" and not request.path.startswith("/_sandbox/"):
        response = _errors(
            "The provided authorization grant is invalid, expired, or revoked", None, 401
        )
    else:
        response = await handler(request)
    state.requests.append(
        Captured(
            request.method,
            request.path,
            dict(request.query),
            dict(request.headers),
            body if state.config.keep_bodies else b"",
            response.status,
        )
    )
    return response


async def mail_send(request: web.Request) -> web.Response:
    """``POST /v3/mail/send``."""
    state = _state(request)
    fault = state.next_fault()
    if fault is not None:
        if fault.status == 429:
            fault.headers.setdefault("X-RateLimit-Reset", str(int(time.time()) + 1))
        response = _errors(f"sandbox fault {fault.status}", None, fault.status)
        response.headers.update(fault.headers)
        return response
    allowed, headers = state.count_request()
    if not allowed:
        state.rate_limited += 1
        response = _errors("too many requests", None, 429)
        response.headers.update(headers)
        return response
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        return _errors("Bad Request", None)
    refused = state.check_send(body)
    if refused is not None:
        return refused
    message_id = state.accept(body)
    return web.Response(status=202, headers={"X-Message-Id": message_id, **headers})


async def scopes(request: web.Request) -> web.Response:
    """``GET /v3/scopes``."""
    return web.json_response({"scopes": list(SCOPES)})


async def verified_senders(request: web.Request) -> web.Response:
    """``GET /v3/verified_senders``."""
    senders = _state(request).config.verified_senders
    results = [{"id": i, "from_email": s, "verified": True} for i, s in enumerate(senders)]
    return web.json_response({"results": results})


def _list(request: web.Request) -> dict[str, dict[str, Any]]:
    kind = request.match_info["kind"]
    lists = _state(request).suppressions
    if kind not in lists:
        raise web.HTTPNotFound(
            text=orjson.dumps({"errors": [{"message": "not found"}]}).decode(),
            content_type="application/json",
        )
    return lists[kind]


async def list_suppressions(request: web.Request) -> web.Response:
    """``GET /v3/suppression/<list>?limit=&offset=``."""
    rows = list(_list(request).values())
    limit = int(request.query.get("limit", "500"))
    offset = int(request.query.get("offset", "0"))
    return web.json_response(rows[offset : offset + limit])


async def delete_suppression(request: web.Request) -> web.Response:
    """``DELETE /v3/suppression/<list>/<email>``."""
    entries = _list(request)
    if entries.pop(request.match_info["email"].lower(), None) is None:
        return _errors("Email not found", None, 404)
    return web.Response(status=204)


async def stats(request: web.Request) -> web.Response:
    """``GET /_sandbox/stats`` (the sandbox's own, not SendGrid's): what it has counted."""
    state = _state(request)
    return web.json_response(
        {
            "requests": len(state.requests),
            "sends": len(state.sends),
            "recipients": state.recipients,
            "rate_limited": state.rate_limited,
        }
    )


def create_app(config: SandboxConfig) -> web.Application:
    """The sandbox's aiohttp app."""
    app = web.Application(middlewares=[_capture], client_max_size=32 * 1024 * 1024)
    app[STATE_KEY] = SandboxState(config)
    app.add_routes(
        [
            web.post("/v3/mail/send", mail_send),
            web.get("/_sandbox/stats", stats),
            web.get("/v3/scopes", scopes),
            web.get("/v3/verified_senders", verified_senders),
            web.get("/v3/suppression/{kind}", list_suppressions),
            web.delete("/v3/suppression/{kind}/{email}", delete_suppression),
        ]
    )
    return app


@dataclass
class RunningSandbox:
    """A started sandbox: its URL and state; ``close`` stops it."""

    runner: web.AppRunner
    state: SandboxState
    base_url: str

    async def close(self) -> None:
        """Stop serving."""
        await self.runner.cleanup()


async def start_sandbox(config: SandboxConfig) -> RunningSandbox:
    """Serve a sandbox on ``config.host``:``config.port`` (0: any free port)."""
    app = create_app(config)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, config.host, config.port).start()
    port = runner.addresses[0][1]
    return RunningSandbox(runner, app[STATE_KEY], f"http://{config.host}:{port}")


async def _serve(config: SandboxConfig) -> None:
    sandbox = await start_sandbox(config)
    summary = {
        "base_url": sandbox.base_url,
        "api_key": config.api_key,
        "event_webhook_public_key": sandbox.state.public_key,
    }
    sys.stdout.write(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode() + "\n")
    sys.stdout.flush()
    try:
        await asyncio.Event().wait()
    finally:
        await sandbox.close()


def main(argv: Sequence[str] | None = None) -> None:
    """Run the sandbox until interrupted; prints its URL, API key and webhook key as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8795)
    parser.add_argument("--rate-limit", type=int, default=None, help="mail sends per second")
    args = parser.parse_args(argv)
    config = SandboxConfig(host=args.host, port=args.port, rate_limit=args.rate_limit)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(config))


if __name__ == "__main__":
    main()
