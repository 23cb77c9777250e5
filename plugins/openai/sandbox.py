"""A local, wire-compatible fake of the OpenAI API, for tests, benchmarks and the demo.

It serves ``POST /v1/responses`` (the Responses API), ``POST /v1/chat/completions``,
``GET /v1/models`` and ``GET /v1/models/{model}`` in OpenAI's shapes (checked against OpenAI's
OpenAPI description by ``tests/openai``). Structured outputs honour the requested JSON schema:
the "model" answers a deterministic instance of it (:mod:`plugins.openai._sandbox_schema`),
reading ``label: value`` lines of the input for the properties they name, or what a test
scripted with :meth:`SandboxState.script_next`. Usage is counted deterministically (about four
characters a token), ``max_output_tokens`` / ``max_completion_tokens`` cut an answer short
(``status: "incomplete"``, ``finish_reason: "length"``), and a prompt seen before reports
cached tokens.

Like OpenAI it checks the Bearer key (401 ``invalid_api_key``), refuses a bad request with
400 ``invalid_request_error`` naming the ``param``, enforces requests and tokens per minute
(429 ``rate_limit_exceeded`` with ``retry-after`` / ``retry-after-ms``), and sends
``x-ratelimit-*``, ``x-request-id`` and ``openai-processing-ms`` on every answer. Faults are
injected with :meth:`SandboxState.fail_next`; every request is logged in
:attr:`SandboxState.requests`.

    python -m plugins.openai.sandbox --port 8796 --rpm 600
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler

from ._sandbox_answers import (
    Ask,
    OpenAIError,
    Usage,
    chat_object,
    model_object,
    not_json,
    output_tokens,
    read_chat,
    read_responses,
    response_object,
)
from ._sandbox_limits import Refusal, duration
from ._sandbox_schema import instance, without_first_required
from ._sandbox_state import (
    DEFAULT_MODELS,
    MODEL_PATHS,
    FaultKind,
    InjectedFault,
    RequestRecord,
    SandboxConfig,
    SandboxState,
    Script,
)

__all__ = [
    "DEFAULT_MODELS",
    "STATE_KEY",
    "FaultKind",
    "InjectedFault",
    "RequestRecord",
    "RunningSandbox",
    "SandboxConfig",
    "SandboxState",
    "Script",
    "create_app",
    "main",
    "start_sandbox",
]

STATE_KEY = web.AppKey("openai_sandbox_state", SandboxState)
_RECORD_KEY = "openai_sandbox_record"
_QUOTA = (
    "You exceeded your current quota, please check your plan and billing details. For more "
    "information on this error, read the docs: "
    "https://platform.openai.com/docs/guides/error-codes/api-errors."
)
_LIMITS_URL = "Visit https://platform.openai.com/account/rate-limits to learn more."
_STATUS_FAULTS: dict[str, tuple[int, str, str]] = {
    "insufficient_quota": (429, "insufficient_quota", _QUOTA),
    "server_error": (
        500,
        "server_error",
        "The server had an error while processing your request. Sorry about that!",
    ),
    "overloaded": (
        503,
        "server_error",
        "The engine is currently overloaded, please try again later.",
    ),
}


def _state(request: web.Request) -> SandboxState:
    return request.app[STATE_KEY]


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status, body=orjson.dumps(body), content_type="application/json", headers=headers
    )


def _masked(key: str) -> str:
    """A key as OpenAI's 401 shows it: its start and end, never the whole of it."""
    return key[:3] + "*" * max(len(key) - 7, 3) + key[-4:] if len(key) > 8 else "***"


# --------------------------------------------------------------------------- middleware


@web.middleware
async def _record(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Log every request and its answer; add OpenAI's headers; OpenAI's error shape for
    :class:`OpenAIError` and unknown routes."""
    state = _state(request)
    started = time.monotonic()
    raw = await request.read()
    headers = {name.lower(): value for name, value in request.headers.items()}
    if "authorization" in headers:
        headers["authorization"] = "Bearer ***"
    try:
        body = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        body = None
    record = RequestRecord(request.method, request.path, request.query_string, headers, raw, body)
    state.requests.append(record)
    request[_RECORD_KEY] = record
    response: web.StreamResponse
    try:
        response = await handler(request)
    except OpenAIError as error:
        response = _json(error.status, error.body, error.headers)
    except web.HTTPException as error:  # an unknown path or method
        message = f"Invalid URL ({request.method} {request.path})"
        response = _json(error.status, OpenAIError(error.status, message).body)
    if request.transport is None or request.transport.is_closing():
        return response  # dropped: nothing was answered
    response.headers.update(state.limits.headers() | dict(response.headers))
    response.headers["x-request-id"] = state.new_id("req_")
    response.headers["openai-processing-ms"] = str(round((time.monotonic() - started) * 1000))
    response.headers["openai-organization"] = state.config.organization
    response.headers["openai-version"] = "2020-10-01"
    record.status = response.status
    record.response_headers = {name.lower(): value for name, value in response.headers.items()}
    if isinstance(response, web.Response) and isinstance(response.body, bytes):
        record.response = response.body
    return response


@web.middleware
async def _authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    """``Authorization: Bearer <key>``: a missing or wrong key is 401."""
    if request.path.startswith("/_sandbox/"):
        return await handler(request)
    scheme, _, key = request.headers.get("Authorization", "").partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        message = (
            "You didn't provide an API key. You need to provide your API key in an "
            "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
        )
        raise OpenAIError(401, message)
    if key != _state(request).config.api_key:
        message = (
            f"Incorrect API key provided: {_masked(key)}. You can find your API key at "
            "https://platform.openai.com/account/api-keys."
        )
        raise OpenAIError(401, message, code="invalid_api_key")
    return await handler(request)


@web.middleware
async def _inject(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Injected status, slow and drop faults (content faults are the model handler's)."""
    state = _state(request)
    fault = state.take_fault(request.path, content=False)
    if fault is None:
        return await handler(request)
    request[_RECORD_KEY].fault = fault.kind
    if fault.kind == "slow":
        await asyncio.sleep(fault.delay)
        return await handler(request)
    if fault.kind == "drop":
        if request.transport is not None:
            request.transport.close()
        return web.Response(status=499)
    if fault.kind == "rate_limit":
        body = request[_RECORD_KEY].body
        model = body.get("model") if isinstance(body, dict) else None
        refusal = Refusal("requests", 1, 1, 1, fault.retry_after)
        raise _rate_limited(state, str(model or "gpt-4o-mini"), refusal)
    status, kind, message = _STATUS_FAULTS[fault.kind]
    raise OpenAIError(status, message, kind, code=kind if status == 429 else None)


def _rate_limited(state: SandboxState, model: str, refusal: Refusal) -> OpenAIError:
    """The 429 of a request over a limit (with how long to wait when waiting helps)."""
    label = "requests per min (RPM)" if refusal.kind == "requests" else "tokens per min (TPM)"
    where = f"for {model} in organization {state.config.organization} on {label}"
    if refusal.retry_after is None:
        message = (
            f"Request too large {where}: Limit {refusal.limit}, Requested {refusal.requested}. "
            f"The input or output tokens must be reduced in order to run successfully. "
            f"{_LIMITS_URL}"
        )
        return OpenAIError(429, message, refusal.kind, code="rate_limit_exceeded")
    wait = refusal.retry_after
    message = (
        f"Rate limit reached {where}: Limit {refusal.limit}, Used {refusal.used}, Requested "
        f"{refusal.requested}. Please try again in {duration(wait)}. {_LIMITS_URL}"
    )
    headers = {
        "retry-after": str(max(1, math.ceil(wait))),
        "retry-after-ms": str(math.ceil(wait * 1000)),
    }
    return OpenAIError(429, message, refusal.kind, code="rate_limit_exceeded", headers=headers)


# --------------------------------------------------------------------------- routes


async def responses(request: web.Request) -> web.Response:
    """``POST /v1/responses``."""
    return await _model_call(request, read_responses)


async def chat_completions(request: web.Request) -> web.Response:
    """``POST /v1/chat/completions``."""
    return await _model_call(request, read_chat)


async def _model_call(request: web.Request, read: Any) -> web.Response:
    state = _state(request)
    record: RequestRecord = request[_RECORD_KEY]
    if record.body is None:
        raise not_json()
    ask: Ask = read(record.body, state.models)
    refusal = state.limits.admit(ask.input_tokens + (ask.max_output or 0))
    if refusal is not None:
        state.rate_limited += 1
        raise _rate_limited(state, ask.model, refusal)
    fault = state.take_fault(request.path, content=True)
    if fault is not None:
        record.fault = fault.kind
    text, reasoning = _output(state, ask, state.take_script(request.path), fault)
    out = output_tokens(text) + reasoning
    incomplete = ask.max_output is not None and out > ask.max_output
    if incomplete and ask.max_output is not None:
        text, out = text[: max(ask.max_output - reasoning, 0) * 4], ask.max_output
    usage = Usage(ask.input_tokens, state.cached_tokens(ask), out, min(reasoning, out))
    state.input_tokens += usage.input_tokens
    state.output_tokens += usage.output_tokens
    if ask.endpoint == "chat":
        body = chat_object(ask, state.new_id("chatcmpl-"), text, usage, incomplete)
    else:
        ids = (state.new_id("resp_"), state.new_id("msg_"))
        body = response_object(ask, ids, text, usage, incomplete)
    return _json(200, body)


def _output(
    state: SandboxState, ask: Ask, script: Script | None, fault: InjectedFault | None
) -> tuple[str, int]:
    """The answer's text and reasoning tokens: scripted, or an instance of the schema, or
    plain text; then spoilt by a content fault."""
    reasoning = state.config.reasoning_tokens
    value: Any
    if script is not None:
        if script.reasoning_tokens is not None:
            reasoning = script.reasoning_tokens
        value = script.content if isinstance(script.content, str) else dict(script.content)
    elif ask.schema is not None:
        value = instance(ask.schema, ask.text)
    elif ask.format_name == "json_object":
        value = {"answer": f"Sandbox answer from {ask.model}."}
    else:
        value = f"Sandbox answer from {ask.model} to {ask.input_tokens} input tokens."
    if fault is not None and fault.kind == "missing_field" and ask.schema is not None:
        value = without_first_required(value, ask.schema)
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    if fault is not None and fault.kind == "invalid_json":
        text = text[: len(text) // 2] or "{"
    return text, reasoning


async def list_models(request: web.Request) -> web.Response:
    """``GET /v1/models``."""
    models = _state(request).config.models
    return _json(200, {"object": "list", "data": [model_object(m) for m in models]})


async def get_model(request: web.Request) -> web.Response:
    """``GET /v1/models/{model}``."""
    model = request.match_info["model"]
    if model not in _state(request).models:
        message = f"The model '{model}' does not exist"
        raise OpenAIError(404, message, param="model", code="model_not_found")
    return _json(200, model_object(model))


async def stats(request: web.Request) -> web.Response:
    """``GET /_sandbox/stats`` (the sandbox's own, not OpenAI's): what it has counted."""
    state = _state(request)
    counts = {
        "requests": len(state.requests),
        "model_calls": sum(1 for r in state.requests if r.path in MODEL_PATHS),
        "rate_limited": state.rate_limited,
        "input_tokens": state.input_tokens,
        "output_tokens": state.output_tokens,
    }
    return _json(200, counts)


def create_app(config: SandboxConfig) -> web.Application:
    """The sandbox's aiohttp app."""
    app = web.Application(
        middlewares=[_record, _authenticate, _inject], client_max_size=64 * 1024 * 1024
    )
    app[STATE_KEY] = SandboxState(config)
    app.add_routes(
        [
            web.post("/v1/responses", responses),
            web.post("/v1/chat/completions", chat_completions),
            web.get("/v1/models", list_models),
            web.get("/v1/models/{model}", get_model),
            web.get("/_sandbox/stats", stats),
        ]
    )
    return app


@dataclass
class RunningSandbox:
    """A started sandbox: ``base_url`` is what ``AsyncOpenAI(base_url=…)`` and the plugin's
    ``base_url`` setting take (``http://127.0.0.1:PORT/v1``); ``close`` stops it."""

    runner: web.AppRunner
    state: SandboxState
    base_url: str

    @property
    def api_key(self) -> str:
        """The key the sandbox accepts."""
        return self.state.config.api_key

    async def close(self) -> None:
        """Stop serving."""
        await self.runner.cleanup()


async def start_sandbox(config: SandboxConfig | None = None) -> RunningSandbox:
    """Serve a sandbox on ``config.host``:``config.port`` (0: any free port)."""
    config = config or SandboxConfig()
    app = create_app(config)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, config.host, config.port).start()
    port = runner.addresses[0][1]
    return RunningSandbox(runner, app[STATE_KEY], f"http://{config.host}:{port}/v1")


async def _serve(config: SandboxConfig) -> None:
    sandbox = await start_sandbox(config)
    summary = {"base_url": sandbox.base_url, "api_key": config.api_key}
    sys.stdout.write(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode() + "\n")
    sys.stdout.flush()
    try:
        await asyncio.Event().wait()
    finally:
        await sandbox.close()


def main(argv: Sequence[str] | None = None) -> None:
    """Run the sandbox until interrupted; prints its base URL and API key as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8796, help="0: any free port")
    parser.add_argument("--api-key", default=SandboxConfig.api_key)
    parser.add_argument("--rpm", type=int, default=SandboxConfig.requests_per_minute)
    parser.add_argument("--tpm", type=int, default=SandboxConfig.tokens_per_minute)
    parser.add_argument(
        "--burst-seconds",
        type=float,
        default=SandboxConfig.burst_seconds,
        help="how much of a minute's allowance may be used at once (1: a steady rate)",
    )
    args = parser.parse_args(argv)
    config = SandboxConfig(
        api_key=args.api_key,
        host=args.host,
        port=args.port,
        requests_per_minute=args.rpm,
        tokens_per_minute=args.tpm,
        burst_seconds=args.burst_seconds,
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(config))


if __name__ == "__main__":
    main()
