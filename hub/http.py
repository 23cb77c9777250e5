"""The one HTTP helper every plugin uses: retries, backoff, ``Retry-After``, rate limits.

One ``aiohttp.ClientSession`` serves the process. Each call names a *limit key* (a realm, an
account) whose budget applies to it: a leaky bucket (aiolimiter), exact sliding windows
(:mod:`hub.ratelimit`, for providers that count "N per second and M per minute") and a
concurrency cap. Transient failures (429, 5xx, timeouts, resets) are retried with exponential
backoff and full jitter, never sooner than the provider's ``Retry-After``, and after a throttle
never sooner than the policy's ``throttle_wait`` (the whole key pauses); what remains is raised
as a classified :class:`~hub.errors.ProviderError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import structlog
from aiolimiter import AsyncLimiter

from hub import __version__
from hub.errors import (
    AuthenticationError,
    AuthorizationError,
    NetworkError,
    ProviderError,
    RateLimitError,
    ServerError,
    ValidationError,
)
from hub.ratelimit import SlidingWindows

log = structlog.get_logger("hub.http")

IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
MAX_ERROR_BODY = 16 * 1024
"""Bytes of an error answer's body kept on the raised error (``ProviderError.body``)."""


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry a transient failure."""

    attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0
    retry_statuses: frozenset[int] = frozenset({429, 500, 502, 503, 504})
    reset_header: str | None = None
    """A response header holding the epoch second a rate limit resets (SendGrid's
    ``X-RateLimit-Reset``), honoured like ``Retry-After`` on a retried status."""
    throttle_wait: float = 0.0
    """Least seconds to wait after the provider throttled a call (429 or a throttle fault);
    the call's whole limit key pauses as long."""

    def delay(self, attempt: int, retry_after: float | None, throttled: bool = False) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based): full jitter, capped;
        after a throttle at least ``throttle_wait``."""
        backoff = random.uniform(0, min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))
        least = self.throttle_wait if throttled else 0.0
        return max(backoff, least, min(retry_after or 0.0, self.max_delay * 4))


@dataclass(frozen=True)
class Response:
    """A fully read response."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    url: str

    def json(self) -> Any:
        """The body parsed as JSON; ServerError if it is not JSON (an error page, a proxy)."""
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError:
            raise ServerError(
                f"{self.url}: expected JSON, got {self.body[:120]!r}", status=self.status
            ) from None


@dataclass
class _Limit:
    limiter: AsyncLimiter | None
    slots: asyncio.Semaphore | None
    max_concurrent: int | None = None
    windows: SlidingWindows | None = None
    paused_until: float = 0.0
    """Monotonic time before which no call of the key is sent (after a throttle)."""


def classify(status: int, message: str) -> ProviderError:
    """The error class for an HTTP status that will not be retried further."""
    if status == 401:
        return AuthenticationError(message, status=status)
    if status == 403:
        return AuthorizationError(message, status=status)
    if status == 429:
        return RateLimitError(message, status=status)
    if status >= 500:
        return ServerError(message, status=status)
    return ValidationError(message, status=status)


def parse_reset(value: str | None) -> float | None:
    """A rate-limit reset given as an epoch second, as seconds from now (None: absent or bad)."""
    try:
        return max(0.0, float(value or "") - time.time())
    except ValueError:
        return None


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds (it may be a number or an HTTP date), or None."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


ResponseCheck = Callable[[Response], None]


class HttpClient:
    """Shared client: one session, per-key limits, retries and classification."""

    def __init__(self, timeout: float = 30.0) -> None:
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None
        self._limits: dict[str, _Limit] = {}

    @property
    def session(self) -> aiohttp.ClientSession:
        """The process's session (created on first use, inside the running loop)."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._timeout),
                headers={"User-Agent": f"advisoros-hub/{__version__}"},
                connector=aiohttp.TCPConnector(limit=100, limit_per_host=32),
            )
        return self._session

    def configure_limit(
        self,
        key: str,
        *,
        max_rate: float | None = None,
        period: float = 60.0,
        max_concurrent: int | None = None,
        windows: Sequence[tuple[int, float]] = (),
    ) -> None:
        """Set the budget for ``key`` (the first configuration of a key wins).

        :param max_rate: a leaky bucket of ``max_rate`` calls draining over ``period``.
        :param windows: ``(max_calls, period)`` pairs: no ``period`` seconds ever admit more
            than ``max_calls`` calls of the key (each window holds exactly).
        :param max_concurrent: calls of the key in flight at once.
        """
        if key in self._limits:
            return
        self._limits[key] = _Limit(
            limiter=AsyncLimiter(max_rate, period) if max_rate else None,
            slots=asyncio.Semaphore(max_concurrent) if max_concurrent else None,
            max_concurrent=max_concurrent,
            windows=SlidingWindows(windows) if windows else None,
        )

    def limit_state(self, key: str) -> dict[str, Any] | None:
        """The budget of ``key`` and whether a call would wait now (None: no limit set)."""
        limit = self._limits.get(key)
        if limit is None:
            return None
        limiter, slots = limit.limiter, limit.slots
        return {
            "max_rate": limiter.max_rate if limiter else None,
            "period_s": limiter.time_period if limiter else None,
            "rate_has_capacity": (limiter.has_capacity() if limiter else True)
            and (limit.windows.wait_time() <= 0 if limit.windows else True),
            "windows": [
                {"max_calls": calls, "period_s": period}
                for calls, period in (limit.windows.limits if limit.windows else ())
            ],
            "paused_s": round(max(0.0, limit.paused_until - time.monotonic()), 1),
            "max_concurrent": limit.max_concurrent,
            "all_slots_busy": slots.locked() if slots else False,
        }

    async def request(
        self,
        method: str,
        url: str,
        *,
        limit_key: str | None = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        data: Any = None,
        retry: RetryPolicy | None = None,
        idempotent: bool | None = None,
        check: ResponseCheck | None = None,
        timeout: float | None = None,
        request_id_header: str | None = None,
    ) -> Response:
        """Send a request with limits and retries; return the 2xx response.

        :param check: inspects a 2xx response and raises a ProviderError for a fault hidden
            inside it (retried if it is a ServerError or RateLimitError).
        :param idempotent: whether a network failure may be retried (default: by method).
        :param request_id_header: the answer header naming the provider's id of the answer
            (``intuit_tid``, ``Request-Id``): a failed answer's id is logged, set as the
            error's ``request_id`` and quoted in its message.
        :raise ProviderError: classified, once retries are exhausted or not allowed.
        """
        policy = retry or RetryPolicy()
        may_retry_network = method.upper() in IDEMPOTENT if idempotent is None else idempotent
        body = orjson.dumps(json) if json is not None else data
        send_headers = dict(headers or {})
        if json is not None:
            send_headers.setdefault("Content-Type", "application/json")
        limit = self._limits.get(limit_key) if limit_key else None
        attempt = 0
        while True:
            attempt += 1
            retry_after: float | None = None
            request_id: str | None = None
            try:
                response = await self._send(limit, method, url, send_headers, params, body, timeout)
                request_id = _header(response, request_id_header)
                if 200 <= response.status < 300:
                    if check is not None:
                        check(response)
                    return response
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                if retry_after is None and policy.reset_header:
                    retry_after = parse_reset(response.headers.get(policy.reset_header))
                error = classify(response.status, _describe(method, url, response))
                error.body = response.body[:MAX_ERROR_BODY]
                retryable = response.status in policy.retry_statuses
            except (RateLimitError, ServerError) as exc:  # raised by check on a 2xx
                error, retryable = exc, True
            except (aiohttp.ClientError, TimeoutError) as exc:
                error = NetworkError(f"{method} {_strip(url)}: {type(exc).__name__}: {exc}")
                retryable = may_retry_network
            if request_id is not None:
                _quote_request_id(error, request_id_header or "", request_id)
            throttled = isinstance(error, RateLimitError)
            if throttled and limit is not None and policy.throttle_wait:
                # the provider counts the key, not the call: the key's other calls wait too
                resume = time.monotonic() + policy.throttle_wait
                limit.paused_until = max(limit.paused_until, resume)
            failure = {
                "method": method,
                "url": _strip(url),
                "attempt": attempt,
                "error_class": error.error_class,
                "status": error.status,
                "request_id": request_id,
            }
            if not retryable or attempt >= policy.attempts:
                log.warning("provider call failed", **failure)
                raise error
            wait = policy.delay(attempt, retry_after, throttled)
            log.info("retrying provider call", wait_s=round(wait, 2), **failure)
            await asyncio.sleep(wait)

    async def _send(
        self,
        limit: _Limit | None,
        method: str,
        url: str,
        headers: Mapping[str, str],
        params: Mapping[str, str] | None,
        body: Any,
        timeout: float | None,
    ) -> Response:
        slot: contextlib.AbstractAsyncContextManager[Any] = (
            limit.slots
            if limit is not None and limit.slots is not None
            else contextlib.nullcontext()
        )
        async with slot:
            if limit is not None:
                await _admit(limit)
            kwargs: dict[str, Any] = {"headers": headers, "params": params, "data": body}
            if timeout is not None:
                kwargs["timeout"] = aiohttp.ClientTimeout(total=timeout)
            async with self.session.request(method, url, **kwargs) as raw:
                payload = await raw.read()
                return Response(raw.status, dict(raw.headers), payload, str(raw.url))

    async def close(self) -> None:
        """Close the session."""
        if self._session is not None:
            await self._session.close()
            self._session = None


async def _admit(limit: _Limit) -> None:
    """Wait until the key's pause is over and every budget of the key admits one more call."""
    # a throttle answered meanwhile may extend the pause: a deadline, not an event
    while (pause := limit.paused_until - time.monotonic()) > 0:  # noqa: ASYNC110
        await asyncio.sleep(pause)
    if limit.windows is not None:
        await limit.windows.acquire()
    if limit.limiter is not None:
        await limit.limiter.acquire()


def _header(response: Response, name: str | None) -> str | None:
    """A header of ``response`` by case-insensitive name (None: not asked for, or absent)."""
    if name is None:
        return None
    wanted = name.lower()
    return next((v for k, v in response.headers.items() if k.lower() == wanted), None)


def _quote_request_id(error: ProviderError, name: str, value: str) -> None:
    """Give ``error`` the provider's id of the failed answer, in its message too (the run's
    and the connection's last error show the message)."""
    error.request_id = value
    error.args = (f"{error.args[0] if error.args else ''} [{name} {value}]", *error.args[1:])


def _strip(url: str) -> str:
    return url.split("?", 1)[0]


def _describe(method: str, url: str, response: Response) -> str:
    snippet = response.body[:300].decode("utf-8", "replace").replace("\n", " ")
    return f"{method} {_strip(url)} answered {response.status}: {snippet}"
