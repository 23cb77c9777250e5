"""A local, wire-compatible fake of the Stripe API.

Used by the Stripe plugin's tests, its benchmark and the offline demo. It speaks Stripe's wire
format — form-encoded requests with nested ``a[b]`` / ``a[0][b]`` / ``a[]`` keys, Bearer
secret keys (and restricted ``rk_`` keys with a permission list), JSON objects and error
objects in Stripe's shapes, ``Idempotency-Key`` replay, list pagination newest first and the
Events API with its 30-day window — and it sends signed webhooks. Tests drive
:class:`SandboxState` directly: the clock, fault injection (429/500, a request applied but
never answered), card declines, subscription renewals and payment failures, bulk seeding.

Run it standalone with ``python -m plugins.stripe.sandbox --port 12111``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import hashlib
import hmac
import sys
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp
import orjson
from aiohttp import web
from aiohttp.typedefs import Handler

from ._sandbox_billing import BILLING_ROUTES, BillingLedger
from ._sandbox_objects import CURRENT_REQUEST, RequestInfo
from ._sandbox_payments import PAYMENT_ROUTES
from ._sandbox_store import JSON, Page, StripeError, decode_form, invalid, list_limit, object_id

__all__ = [
    "STATE_KEY",
    "InjectedFault",
    "RequestRecord",
    "RunningSandbox",
    "SandboxConfig",
    "SandboxState",
    "StripeError",
    "Validator",
    "WebhookDelivery",
    "create_app",
    "main",
    "set_default_validator",
    "sign_payload",
    "start_sandbox",
]

API_VERSION = "2023-08-16"
"""The API version of the vendored OpenAPI description the sandbox's shapes follow."""


class Validator(Protocol):
    """Checks the traffic of a sandbox (``tests/stripe/spec.py`` checks it against Stripe's
    OpenAPI description); it records mismatches itself, the sandbox only reports traffic."""

    def request(self, method: str, path: str, query: str, body: bytes, content_type: str) -> None:
        """One request as received."""

    def response(self, method: str, path: str, status: int, body: bytes) -> None:
        """The answer to it."""


_default_validator: list[Validator | None] = [None]


def set_default_validator(validator: Validator | None) -> None:
    """The validator of sandboxes whose config names none (tests set it for every sandbox)."""
    _default_validator[0] = validator


@dataclass(frozen=True)
class SandboxConfig:
    """Everything that shapes a sandbox.

    ``restricted_keys`` maps ``rk_test_...`` keys to their permissions (``rak_customer_read``,
    ``rak_subscription_write``, ...; write includes read). ``webhook_url``: every event is also
    delivered there, signed with ``webhook_secret``. ``start_time``: where the clock starts
    (Unix seconds; None: now).
    """

    secret_key: str = "sk_test_sandbox"
    webhook_secret: str = "whsec_sandbox"
    webhook_url: str | None = None
    restricted_keys: Mapping[str, frozenset[str]] = field(default_factory=dict)
    host: str = "127.0.0.1"
    port: int = 0
    start_time: float | None = None
    freeze_clock: bool = False
    api_version: str = API_VERSION
    validator: Validator | None = None
    request_log_size: int = 100_000


@dataclass
class RequestRecord:
    """One request the sandbox received; ``status`` is None when no answer was sent."""

    method: str
    path: str
    idempotency_key: str | None
    params: JSON
    status: int | None = None
    replayed: bool = False


@dataclass
class InjectedFault:
    """A fault for the next ``remaining`` requests whose path starts with ``prefix``:
    an error ``status`` (429: Stripe's rate limit error), or ``crash`` (the request is
    applied, then the connection is closed without an answer)."""

    prefix: str
    status: int = 429
    remaining: int = 1
    crash: bool = False


@dataclass(frozen=True)
class WebhookDelivery:
    """One webhook POST: what was sent and what the receiver answered."""

    event_id: str
    url: str
    status: int
    response_body: str
    payload: bytes
    signature: str


@dataclass
class _Stored:
    """An idempotent request's first answer."""

    fingerprint: bytes
    status: int
    body: bytes


def sign_payload(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """The ``Stripe-Signature`` header: ``t=<ts>,v1=<hex HMAC-SHA256 of "t.payload">``."""
    stamp = int(time.time()) if timestamp is None else timestamp
    signed = f"{stamp}.".encode() + payload
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={stamp},v1={digest}"


class SandboxState(BillingLedger):
    """The running sandbox's objects and events, plus its keys, faults and request log."""

    def __init__(self, config: SandboxConfig) -> None:
        super().__init__(
            start_time=config.start_time,
            frozen=config.freeze_clock,
            api_version=config.api_version,
            pending_webhooks=1 if config.webhook_url else 0,
        )
        self.config = config
        self.requests: deque[RequestRecord] = deque(maxlen=config.request_log_size)
        self.faults: list[InjectedFault] = []
        self.idempotency: dict[tuple[str, str], _Stored] = {}
        self.deliveries: list[WebhookDelivery] = []

    # ---- faults

    def fail_next(
        self, path_prefix: str = "/v1/", status: int = 429, times: int = 1
    ) -> InjectedFault:
        """Answer the next ``times`` requests under ``path_prefix`` with ``status``: 429 is
        Stripe's ``rate_limit`` error (no ``Stripe-Should-Retry``), 5xx an ``api_error``."""
        fault = InjectedFault(path_prefix, status, times)
        self.faults.append(fault)
        return fault

    def crash_next(self, path_prefix: str = "/v1/", times: int = 1) -> InjectedFault:
        """Apply the next ``times`` requests under ``path_prefix``, then drop the connection
        without answering (the caller must retry with its idempotency key)."""
        fault = InjectedFault(path_prefix, 0, times, crash=True)
        self.faults.append(fault)
        return fault

    def take_fault(self, path: str) -> InjectedFault | None:
        """The first pending fault for ``path`` (one use taken from it)."""
        for fault in self.faults:
            if fault.remaining > 0 and path.startswith(fault.prefix):
                fault.remaining -= 1
                return fault
        return None

    # ---- keys

    def permissions(self, key: str) -> frozenset[str] | None:
        """The permissions of a restricted key, None for the secret key; KeyError if unknown."""
        if hmac.compare_digest(key.encode(), self.config.secret_key.encode()):
            return None
        return self.config.restricted_keys[key]


# --------------------------------------------------------------------------- routes

ROUTES: tuple[tuple[str, str, str, str], ...] = (
    ("GET", "/v1/customers", "list_customers", "customer"),
    ("POST", "/v1/customers", "create_customer", "customer"),
    ("GET", "/v1/customers/search", "search_customers", "customer"),
    ("GET", "/v1/customers/{id}", "get:customer", "customer"),
    ("POST", "/v1/customers/{id}", "update_customer", "customer"),
    ("DELETE", "/v1/customers/{id}", "delete_customer", "customer"),
    ("GET", "/v1/products", "list_products", "product"),
    ("POST", "/v1/products", "create_product", "product"),
    ("GET", "/v1/products/{id}", "get:product", "product"),
    ("POST", "/v1/products/{id}", "update_product", "product"),
    ("DELETE", "/v1/products/{id}", "delete_product", "product"),
    ("GET", "/v1/prices", "list_prices", "plan"),
    ("POST", "/v1/prices", "create_price", "plan"),
    ("GET", "/v1/prices/search", "search_prices", "plan"),
    ("GET", "/v1/prices/{id}", "get:price", "plan"),
    ("POST", "/v1/prices/{id}", "update_price", "plan"),
    ("GET", "/v1/events", "list_events", "event"),
    ("GET", "/v1/events/{id}", "event", "event"),
    *PAYMENT_ROUTES,
    *BILLING_ROUTES,
)
"""(method, path, what answers it, the restricted-key resource): ``list_x`` and ``search_x``
``(params, limit)``,
``get:<type>`` (the stored object), else a :class:`SandboxState` method ``(*path ids,
params)``. A restricted key needs ``rak_<resource>_read`` (GET) or ``_write`` (else)."""

STATE_KEY = web.AppKey("stripe_sandbox_state", SandboxState)
_RECORD_KEY = "stripe_sandbox_record"
_STATUS_ERRORS = {
    429: (
        "invalid_request_error",
        "rate_limit",
        "Testmode request rate limit exceeded, the rate limits in testmode are lower than "
        "livemode. You can learn more about rate limits here https://stripe.com/docs/rate-limits.",
    ),
    500: ("api_error", None, "An unknown error occurred"),
    502: ("api_error", None, "Bad gateway"),
    503: ("api_error", None, "Service unavailable"),
}


def _state(request: web.Request) -> SandboxState:
    return request.app[STATE_KEY]


def _answer(request: web.Request, status: int, body: JSON) -> web.Response:
    """A JSON answer with Stripe's headers; ``Stripe-Version`` echoes the version asked for
    (any is accepted: the shapes are the sandbox's own)."""
    version = request.headers.get("Stripe-Version") or _state(request).api_version
    headers = {"Request-Id": request["request_id"], "Stripe-Version": version}
    return web.Response(
        status=status, body=orjson.dumps(body), content_type="application/json", headers=headers
    )


def _error(request: web.Request, error: StripeError) -> web.Response:
    return _answer(request, error.status, error.body())


@web.middleware
async def _record(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Log every request (with its answer's status) and give it a ``req_`` id."""
    state = _state(request)
    record = RequestRecord(request.method, request.path, request.headers.get("Idempotency-Key"), {})
    state.requests.append(record)
    request[_RECORD_KEY] = record
    response = await handler(request)
    if request.transport is not None and not request.transport.is_closing():
        record.status = response.status
    return response


@web.middleware
async def _validate(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Hand every request and answer to the configured validator (tests: the spec)."""
    validator = _state(request).config.validator or _default_validator[0]
    if validator is None:
        return await handler(request)
    body = await request.read()
    content_type = request.headers.get("Content-Type", "")
    validator.request(request.method, request.path, request.query_string, body, content_type)
    response = await handler(request)
    answered = request.transport is not None and not request.transport.is_closing()
    if answered and isinstance(response, web.Response) and isinstance(response.body, bytes):
        validator.response(request.method, request.path, response.status, response.body)
    return response


@web.middleware
async def _authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Bearer (or Basic) secret key; restricted keys need the route's permission.

    Stripe answers 401 and 403 (and 429) with ``type: invalid_request_error``: its error type
    enumeration (the vendored description) has no authentication or permission type; the SDK
    tells them apart by status (``AuthenticationError``, ``PermissionError``)."""
    state = _state(request)
    request_id = object_id("req", state.serial())[:18]
    request["request_id"] = request_id
    header = request.headers.get("Authorization", "")
    scheme, _, credential = header.partition(" ")
    key = credential.strip()
    if scheme.lower() == "basic":
        key = _basic_user(key)
    if not key or scheme.lower() not in ("bearer", "basic"):
        message = (
            "You did not provide an API key. You need to provide your API key in the "
            "Authorization header, using Bearer auth "
            "(e.g. 'Authorization: Bearer YOUR_SECRET_KEY')."
        )
        return _error(request, StripeError(401, "invalid_request_error", message))
    try:
        allowed = state.permissions(key)
    except KeyError:
        shown = key[:8] + "*" * 8 + key[-4:] if len(key) > 12 else "***"
        message = f"Invalid API Key provided: {shown}"
        return _error(request, StripeError(401, "invalid_request_error", message))
    route = request.match_info.route.resource
    match = _ROUTE_INDEX.get((request.method, route.canonical if route else ""))
    if allowed is not None and match is not None:
        need = f"rak_{match[1]}_{'read' if request.method == 'GET' else 'write'}"
        write = need.removesuffix("_read") + "_write"
        if need not in allowed and write not in allowed:
            message = (
                f"The provided key '{key[:8]}{'*' * 8}{key[-4:]}' does not have the required "
                f"permissions for this endpoint on account 'acct_sandbox'. Having the '{need}' "
                "permission would allow this request to continue."
            )
            return _error(request, StripeError(403, "invalid_request_error", message))
    return await handler(request)


def _basic_user(credential: str) -> str:
    """The key of ``Authorization: Basic base64(key:)``."""
    try:
        return base64.b64decode(credential).decode().partition(":")[0]
    except (binascii.Error, UnicodeDecodeError):
        return ""


@web.middleware
async def _inject(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Injected faults: an error status before the request is applied, or a crash after."""
    state = _state(request)
    fault = state.take_fault(request.path)
    if fault is None:
        return await handler(request)
    if fault.crash:
        await handler(request)
        if request.transport is not None:
            request.transport.close()
        return web.Response(status=499)
    kind, code, message = _STATUS_ERRORS.get(fault.status, ("api_error", None, "Sandbox fault"))
    error = StripeError(fault.status, kind, message, code=code)
    return _error(request, error)


@web.middleware
async def _idempotent(request: web.Request, handler: Handler) -> web.StreamResponse:
    """POSTs with an ``Idempotency-Key``: the same key and parameters answer the first
    answer again (``Idempotent-Replayed: true``); other parameters get 400."""
    key = request.headers.get("Idempotency-Key")
    if request.method != "POST" or not key:
        return await handler(request)
    state = _state(request)
    account_key = request.headers.get("Authorization", "")
    params = decode_form((await request.read()).decode("utf-8", "replace"))
    fingerprint = orjson.dumps(
        {"path": request.path, "params": params}, option=orjson.OPT_SORT_KEYS
    )
    stored = state.idempotency.get((account_key, key))
    if stored is not None:
        if not hmac.compare_digest(stored.fingerprint, fingerprint):
            message = (
                "Keys for idempotent requests can only be used with the same parameters they "
                f"were first used with. Try using a key other than '{key}' if you meant to "
                "execute a different request."
            )
            error = StripeError(400, "idempotency_error", message)
            return _error(request, error)
        request[_RECORD_KEY].replayed = True
        replay = web.Response(
            status=stored.status, body=stored.body, content_type="application/json"
        )
        replay.headers["Idempotent-Replayed"] = "true"
        replay.headers["Original-Request"] = request["request_id"]
        replay.headers["Idempotency-Key"] = key
        return replay
    response = await handler(request)
    # Stripe saves the answer of a request that ran (a success or a card decline), not of
    # one refused before it started (bad parameters, throttling).
    if response.status in (200, 402) and isinstance(response, web.Response):
        body = response.body if isinstance(response.body, bytes) else b""
        state.idempotency[(account_key, key)] = _Stored(fingerprint, response.status, body)
    response.headers["Idempotency-Key"] = key
    return response


_ROUTE_INDEX: dict[tuple[str, str], tuple[str, str]] = {
    (method, path): (action, resource) for method, path, action, resource in ROUTES
}


async def _api(request: web.Request) -> web.StreamResponse:
    """Every endpoint: decode Stripe's form parameters, run the operation, render JSON."""
    state = _state(request)
    request_id: str = request["request_id"]
    resource = request.match_info.route.resource
    action, _ = _ROUTE_INDEX[(request.method, resource.canonical if resource else "")]
    try:
        raw = request.query_string if request.method != "POST" else (await request.read()).decode()
        params = decode_form(raw)
        request[_RECORD_KEY].params = params
        token = CURRENT_REQUEST.set(RequestInfo(request_id, request.headers.get("Idempotency-Key")))
        try:
            result = _run(state, action, list(request.match_info.values()), params)
        finally:
            CURRENT_REQUEST.reset(token)
        body = _render(state, result, params, request.path)
    except StripeError as exc:
        return _error(request, exc)
    except UnicodeDecodeError:
        return _error(request, invalid("The request body is not valid UTF-8."))
    return _answer(request, 200, body)


def _run(state: SandboxState, action: str, ids: list[str], params: JSON) -> JSON | Page:
    if action.startswith("get:"):
        return state.get(action[4:], ids[0])
    method = getattr(state, action)
    if action.startswith(("list_", "search_")):
        result: JSON | Page = method(*ids, params, list_limit(params))
        return result
    answer: JSON = method(*ids, params)
    return answer


def _render(state: SandboxState, result: JSON | Page, params: JSON, path: str) -> JSON:
    """The answer: the object (or list page) with ``expand[]`` applied."""
    expand = params.get("expand") or []
    if not isinstance(expand, list) or not all(isinstance(e, str) for e in expand):
        raise invalid("Invalid expand: must be an array of strings", param="expand")
    if isinstance(result, Page):
        inner = [e.removeprefix("data.") for e in expand if e.startswith("data.")]
        data = [state.expand(obj, inner) for obj in result.data] if inner else result.data
        page = {"object": "list", "data": data, "has_more": result.has_more, "url": path}
        if result.search:
            page |= {"object": "search_result", "next_page": result.next_page}
            page["total_count"] = result.total
        return page
    return state.expand(result, expand) if expand else result


async def _unknown(request: web.Request) -> web.Response:
    """Stripe's answer for a path it does not have."""
    message = f"Unrecognized request URL ({request.method}: {request.path})."
    return _error(request, StripeError(404, "invalid_request_error", message))


# --------------------------------------------------------------------------- app and server


def create_app(config: SandboxConfig) -> web.Application:
    """The sandbox as an aiohttp application; its state is ``app[STATE_KEY]``."""
    app = web.Application(
        middlewares=[_record, _validate, _authenticate, _inject, _idempotent],
        client_max_size=1024**2,
    )
    app[STATE_KEY] = SandboxState(config)
    for method, path, _, _ in ROUTES:
        app.router.add_route(method, path, _api)
    app.router.add_route("*", "/{tail:.*}", _unknown)
    return app


class RunningSandbox:
    """A sandbox served on a local port; ``state`` drives it, ``close()`` stops it."""

    def __init__(self, runner: web.AppRunner, state: SandboxState, host: str) -> None:
        self._runner = runner
        self.state = state
        port = runner.addresses[0][1]
        self.base_url = f"http://{host}:{port}"
        self._session: aiohttp.ClientSession | None = None
        self._queue: asyncio.Queue[JSON] = asyncio.Queue()
        self._sender: asyncio.Task[None] | None = None
        if state.config.webhook_url:
            state.listeners.append(self._queue.put_nowait)
            self._sender = asyncio.create_task(self._deliver(state.config.webhook_url))

    async def _deliver(self, url: str) -> None:
        """Send each new event to ``url``, in order (the configured webhook endpoint)."""
        while True:
            event = await self._queue.get()
            with contextlib.suppress(aiohttp.ClientError, OSError, asyncio.TimeoutError):
                await self.send_event(event, url=url)
            self._queue.task_done()

    async def delivered(self) -> None:
        """Wait until every event so far has been sent to the configured webhook URL."""
        await self._queue.join()

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        return self._session

    async def send_event(
        self,
        event: Mapping[str, Any],
        url: str | None = None,
        *,
        secret: str | None = None,
        duplicate: bool = False,
        delay: float = 0.0,
        timestamp: int | None = None,
        tamper: bool = False,
    ) -> list[WebhookDelivery]:
        """POST ``event`` to ``url`` as Stripe does, with a correct ``Stripe-Signature``.

        :param secret: the signing secret (default: the config's ``webhook_secret``).
        :param duplicate: send the same delivery twice (Stripe delivers at least once).
        :param delay: wait this long first (gather sends with delays to deliver out of order).
        :param timestamp: the signature's ``t`` (an old one is refused by receivers).
        :param tamper: change the payload after signing (the signature no longer matches).
        """
        target = url or self.state.config.webhook_url
        if target is None:
            raise ValueError("no webhook URL: pass url= or set SandboxConfig.webhook_url")
        if delay:
            await asyncio.sleep(delay)
        payload = orjson.dumps(event, option=orjson.OPT_INDENT_2)
        signature = sign_payload(payload, secret or self.state.config.webhook_secret, timestamp)
        if tamper:
            payload = payload.replace(b'"livemode": false', b'"livemode": true', 1) + b" "
        deliveries = []
        for _ in range(2 if duplicate else 1):
            headers = {
                "Content-Type": "application/json; charset=utf-8",
                "Stripe-Signature": signature,
                "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
            }
            async with self._client().post(target, data=payload, headers=headers) as response:
                delivery = WebhookDelivery(
                    str(event.get("id")),
                    target,
                    response.status,
                    await response.text(),
                    payload,
                    signature,
                )
            self.state.deliveries.append(delivery)
            deliveries.append(delivery)
        return deliveries

    async def send_events(
        self, events: Sequence[Mapping[str, Any]], url: str | None = None, *, reverse: bool = True
    ) -> list[WebhookDelivery]:
        """Deliver several events one after another, newest first when ``reverse`` (out of
        order, as Stripe does not guarantee the order of deliveries)."""
        ordered = list(reversed(events)) if reverse else list(events)
        sent: list[WebhookDelivery] = []
        for event in ordered:
            sent.extend(await self.send_event(event, url))
        return sent

    async def close(self) -> None:
        """Stop delivering and serving; close open connections."""
        if self._sender is not None:
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sender
        if self._session is not None:
            await self._session.close()
        await self._runner.cleanup()

    async def __aenter__(self) -> RunningSandbox:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()


async def start_sandbox(config: SandboxConfig | None = None) -> RunningSandbox:
    """Serve a sandbox on ``config.host``:``config.port`` (0: a free port)."""
    config = config or SandboxConfig()
    app = create_app(config)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, config.host, config.port).start()
    return RunningSandbox(runner, app[STATE_KEY], config.host)


# --------------------------------------------------------------------------- command line


def _parse_args(argv: Sequence[str] | None) -> tuple[SandboxConfig, dict[str, int] | None]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=12111, help="0: any free port")
    parser.add_argument("--secret-key", default=SandboxConfig.secret_key)
    parser.add_argument("--webhook-secret", default=SandboxConfig.webhook_secret)
    parser.add_argument("--webhook-url", default=None, help="deliver every event here")
    parser.add_argument("--customers", type=int, help="seed this many customers (no demo data)")
    parser.add_argument("--products", type=int, default=0, help="with --customers: plans")
    parser.add_argument("--subscriptions", type=int, default=0, help="with --customers")
    args = parser.parse_args(argv)
    config = SandboxConfig(
        secret_key=args.secret_key,
        webhook_secret=args.webhook_secret,
        webhook_url=args.webhook_url,
        host=args.host,
        port=args.port,
    )
    if args.customers is None:
        return config, None
    return config, {
        "customers": args.customers,
        "products": args.products,
        "subscriptions": args.subscriptions,
    }


async def _serve(config: SandboxConfig, seed: dict[str, int] | None) -> None:
    sandbox = await start_sandbox(config)
    if seed is None:
        sandbox.state.seed_demo()
    else:
        sandbox.state.seed(**seed)
    summary = {"base_url": sandbox.base_url, "secret_key": config.secret_key}
    sys.stdout.write(
        orjson.dumps(summary | {"webhook_secret": config.webhook_secret}).decode() + "\n"
    )
    sys.stdout.flush()
    try:
        await asyncio.Event().wait()
    finally:
        await sandbox.close()


def main(argv: Sequence[str] | None = None) -> None:
    """Run the sandbox until interrupted; prints its URL and keys as JSON."""
    config, seed = _parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(config, seed))


if __name__ == "__main__":
    main()
