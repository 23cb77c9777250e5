"""What an OpenAI sandbox holds: its configuration, request log, injected faults and scripted
answers, rate limits and counters (see :mod:`plugins.openai.sandbox`)."""

from __future__ import annotations

import hashlib
import itertools
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import orjson

from ._sandbox_answers import Ask
from ._sandbox_limits import Limits

DEFAULT_MODELS = (
    "gpt-4o-mini",
    "gpt-4o",
    "gpt-4.1-mini",
    "gpt-4.1",
    "gpt-5-mini",
    "gpt-5",
    "o4-mini",
)
MODEL_PATHS = ("/v1/responses", "/v1/chat/completions")
"""The paths that call a model (rate limited, answered by scripts and content faults)."""
_CACHE_MIN_TOKENS = 1024
_CACHE_STEP = 128
_CACHE_KEYS = 100_000

FaultKind = Literal[
    "invalid_json",
    "missing_field",
    "rate_limit",
    "insufficient_quota",
    "server_error",
    "overloaded",
    "slow",
    "drop",
]
"""``invalid_json``: a 200 whose output text is cut in half (not JSON); ``missing_field``: a 200
whose structured output lacks the first property the schema's root requires; ``rate_limit``:
429 ``rate_limit_exceeded`` with ``retry-after``; ``insufficient_quota``: 429
``insufficient_quota`` (no ``retry-after``: waiting does not help); ``server_error``: 500;
``overloaded``: 503; ``slow``: the answer (a normal one) waits ``delay`` seconds; ``drop``: the
connection is closed without an answer."""
CONTENT_FAULTS = frozenset({"invalid_json", "missing_field"})


@dataclass(frozen=True)
class SandboxConfig:
    """Everything that shapes a sandbox.

    :param api_key: the one key accepted (``Authorization: Bearer <api_key>``).
    :param models: the models served (``GET /v1/models``); a request for another one is refused
        with ``model_not_found``. Empty: any model name is served.
    :param requests_per_minute: the enforced request limit (None: none, and no such headers).
    :param tokens_per_minute: the enforced token limit (input tokens + ``max_output_tokens``).
    :param burst_seconds: how much of a minute's allowance may be used at once (60: the whole
        minute; 1: a steady rate, at most a second's worth at a time).
    :param reasoning_tokens: reasoning tokens every answer reports (and counts as output).
    :param request_log_size: requests kept in :attr:`SandboxState.requests`.
    """

    api_key: str = "sk-sandbox-key"
    host: str = "127.0.0.1"
    port: int = 0
    models: tuple[str, ...] = DEFAULT_MODELS
    requests_per_minute: int | None = 5_000
    tokens_per_minute: int | None = 4_000_000
    burst_seconds: float = 60.0
    reasoning_tokens: int = 0
    organization: str = "org-sandbox"
    request_log_size: int = 100_000


@dataclass
class RequestRecord:
    """One request the sandbox received and its answer.

    ``headers`` are the request's (names lower-cased), ``authorization`` shown as
    ``Bearer ***``; ``response_headers`` the answer's; ``body`` its
    JSON (None when not JSON); ``status`` None when the connection was dropped; ``fault`` the
    injected fault that shaped the answer."""

    method: str
    path: str
    query: str
    headers: Mapping[str, str]
    raw: bytes
    body: Any
    at: float = field(default_factory=time.monotonic)
    status: int | None = None
    response: bytes = b""
    response_headers: Mapping[str, str] = field(default_factory=dict)
    fault: FaultKind | None = None

    @property
    def answer(self) -> Any:
        """The JSON answered (None when nothing was)."""
        return orjson.loads(self.response) if self.response else None


@dataclass
class InjectedFault:
    """A fault for the next ``remaining`` requests whose path starts with ``path``."""

    kind: FaultKind
    remaining: int = 1
    path: str = "/v1/"
    delay: float = 0.0
    retry_after: float = 1.0


@dataclass
class Script:
    """What the "model" says in the next ``remaining`` answers under ``path``: ``content`` (a
    mapping is sent as its JSON; a string as it is)."""

    content: Mapping[str, Any] | str
    remaining: int = 1
    path: str = "/v1/"
    reasoning_tokens: int | None = None

    @property
    def text(self) -> str:
        """The output text."""
        if isinstance(self.content, str):
            return self.content
        return orjson.dumps(self.content).decode()


_Pending = TypeVar("_Pending", InjectedFault, Script)


class SandboxState:
    """A running sandbox's request log, faults, scripts, limits and counters."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.models = frozenset(config.models)
        self.requests: deque[RequestRecord] = deque(maxlen=config.request_log_size)
        self.faults: list[InjectedFault] = []
        self.scripts: list[Script] = []
        self.limits = Limits(
            config.requests_per_minute, config.tokens_per_minute, config.burst_seconds
        )
        self.rate_limited = 0
        """Requests refused by the enforced limits."""
        self.input_tokens = 0
        self.output_tokens = 0
        self._serial = itertools.count(1)
        self._prefixes: set[bytes] = set()

    # ---- faults and scripts

    def fail_next(
        self,
        kind: FaultKind,
        *,
        times: int = 1,
        path: str = "/v1/",
        delay: float = 1.0,
        retry_after: float = 1.0,
    ) -> InjectedFault:
        """Shape the next ``times`` requests whose path starts with ``path`` with a fault
        (:data:`FaultKind`); ``delay`` is a ``slow`` answer's wait, ``retry_after`` what a
        ``rate_limit`` tells the caller to wait (seconds). Content faults (``invalid_json``,
        ``missing_field``) apply to model calls only."""
        fault = InjectedFault(kind, times, path, delay, retry_after)
        self.faults.append(fault)
        return fault

    def script_next(
        self,
        content: Mapping[str, Any] | str,
        *,
        times: int = 1,
        path: str = "/v1/",
        reasoning_tokens: int | None = None,
    ) -> Script:
        """Make the next ``times`` model answers under ``path`` say ``content`` (a mapping is
        answered as its JSON, a string verbatim) instead of an instance of the schema."""
        script = Script(content, times, path, reasoning_tokens)
        self.scripts.append(script)
        return script

    def clear(self) -> None:
        """Forget every pending fault and script."""
        self.faults.clear()
        self.scripts.clear()

    def take_fault(self, path: str, content: bool) -> InjectedFault | None:
        """The first pending fault for ``path`` of the kind asked (content faults, or the
        others), one use taken from it."""
        for fault in self.faults:
            if (fault.kind in CONTENT_FAULTS) == content and path.startswith(fault.path):
                return _take(self.faults, fault)
        return None

    def take_script(self, path: str) -> Script | None:
        """The first pending script for ``path``, one use taken from it."""
        for script in self.scripts:
            if path.startswith(script.path):
                return _take(self.scripts, script)
        return None

    # ---- ids, caching, records

    def new_id(self, prefix: str) -> str:
        """A fresh id in OpenAI's style (``resp_…``, ``msg_…``, ``chatcmpl-…``, ``req_…``)."""
        serial = next(self._serial)
        return prefix + hashlib.sha256(serial.to_bytes(8, "big")).hexdigest()[:32]

    def cached_tokens(self, ask: Ask) -> int:
        """Prompt caching as OpenAI does it: a prompt of 1,024 tokens or more whose start was
        seen before reads its tokens from the cache, in steps of 128."""
        tokens = ask.input_tokens
        if tokens < _CACHE_MIN_TOKENS:
            return 0
        key = hashlib.sha256(ask.text[: _CACHE_MIN_TOKENS * 4].encode()).digest()
        if key in self._prefixes:
            return tokens // _CACHE_STEP * _CACHE_STEP
        if len(self._prefixes) >= _CACHE_KEYS:
            self._prefixes.clear()
        self._prefixes.add(key)
        return 0

    def model_calls(self) -> list[RequestRecord]:
        """The logged requests to a model endpoint (``/v1/responses``, ``/v1/chat/...``)."""
        return [record for record in self.requests if record.path in MODEL_PATHS]


def _take(pending: list[_Pending], item: _Pending) -> _Pending:
    item.remaining -= 1
    if item.remaining <= 0:
        pending.remove(item)
    return item
