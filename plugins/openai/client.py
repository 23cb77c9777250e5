"""The OpenAI calls: an ``AsyncOpenAI`` built from the settings, structured answers through
``responses.parse`` or ``chat.completions.parse``, retries, and the mapping of SDK errors to
hub errors.

The SDK is imported in :meth:`OpenAIApi.sdk`, when the first call needs it, never when the
plugin loads. The SDK's own retries are off (``max_retries=0``): this module retries 429s
(not ``insufficient_quota``), 5xx and connection failures ``max_retries`` times, waiting what
the answer's ``retry-after-ms`` / ``retry-after`` says (else an exponential backoff with
jitter), so that an exhausted quota is never retried and is reported apart from throttling.
Every answer is read ``with_raw_response``: its ``x-ratelimit-*`` headers and usage are kept
even when the answer does not conform to the schema.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
import pydantic

from hub.errors import (
    AuthenticationError,
    AuthorizationError,
    NetworkError,
    ProviderError,
    RateLimitError,
    ServerError,
    ValidationError,
)

from .extract import Content
from .usage import Tokens, rate_limit_headers

if TYPE_CHECKING:
    from openai import AsyncOpenAI

    from .settings import OpenAISettings

BACKOFF_BASE = 0.5
BACKOFF_MAX = 8.0
QUOTA_CODES = frozenset({"insufficient_quota", "billing_hard_limit_reached"})


class QuotaExceeded(ProviderError):
    """The account's quota or credit is used up (``insufficient_quota``): not retried."""

    error_class = "quota"
    advice = "add credit or raise the project's quota with the provider; retrying does not help"


class Nonconforming(Exception):
    """The model's answer is not valid against the requested schema (or it refused)."""


@dataclass
class Answer:
    """A structured call's outcome: the validated answer, or why it is not one."""

    model: str
    tokens: Tokens
    request_id: str | None
    rate_limits: dict[str, str] = field(default_factory=dict)
    parsed: pydantic.BaseModel | None = None
    problem: str | None = None
    """Why the answer does not conform (invalid JSON, missing fields, refusal, cut off)."""


def retry_after(headers: Any) -> float | None:
    """The wait an answer asks for: ``retry-after-ms``, else ``retry-after`` in seconds."""
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) / scale
        except ValueError:
            continue
        if seconds >= 0:
            return seconds
    return None


def classify(exc: Exception) -> ProviderError:
    """The hub's error for an SDK exception (its message never carries the key)."""
    import openai

    if isinstance(exc, openai.APITimeoutError):
        return NetworkError("the OpenAI API did not answer in time")
    if isinstance(exc, openai.APIConnectionError):
        return NetworkError(f"the OpenAI API is unreachable: {type(exc.__cause__).__name__}")
    if not isinstance(exc, openai.APIStatusError):
        return ProviderError(f"OpenAI call failed: {type(exc).__name__}")
    status, code = exc.status_code, exc.code or exc.type or ""
    detail = f"{status} {code}".strip() + f": {exc.message}"[:300]
    request_id = exc.request_id
    if status == 401:
        return AuthenticationError(f"OpenAI refused the API key ({detail})", status=status)
    if status == 403:
        return AuthorizationError(f"OpenAI refused the call ({detail})", status=status)
    if code in QUOTA_CODES or exc.type in QUOTA_CODES:
        return QuotaExceeded(
            f"the OpenAI quota is used up ({detail})", status=status, request_id=request_id
        )
    if status == 429:
        return RateLimitError(f"OpenAI rate limit ({detail})", status=status, request_id=request_id)
    if status >= 500:
        return ServerError(f"OpenAI server error ({detail})", status=status, request_id=request_id)
    return ValidationError(
        f"OpenAI refused the request ({detail})", status=status, request_id=request_id
    )


def _retryable(error: ProviderError) -> bool:
    return isinstance(error, RateLimitError | ServerError | NetworkError)


def _input(content: Content, api: str) -> list[dict[str, Any]]:
    """The user message's parts for ``api``: the text, or the image."""
    if content.image is not None:
        if api == "chat":
            return [{"type": "image_url", "image_url": {"url": content.image, "detail": "high"}}]
        return [{"type": "input_image", "image_url": content.image, "detail": "high"}]
    return [{"type": "text" if api == "chat" else "input_text", "text": content.text}]


def _usage(body: dict[str, Any], api: str) -> Tokens:
    usage = body.get("usage") or {}
    if api == "chat":
        details = usage.get("prompt_tokens_details") or {}
        names = ("prompt_tokens", "completion_tokens")
    else:
        details = usage.get("input_tokens_details") or {}
        names = ("input_tokens", "output_tokens")
    return Tokens(
        input=int(usage.get(names[0]) or 0),
        cached=int(details.get("cached_tokens") or 0),
        output=int(usage.get(names[1]) or 0),
    )


def _parsed(result: Any, api: str) -> pydantic.BaseModel:
    """The validated answer of a parsed response, or :class:`Nonconforming`."""
    if api == "chat":
        choice = result.choices[0]
        message = choice.message
        if message.refusal:
            raise Nonconforming(f"the model refused: {message.refusal[:300]}")
        parsed = message.parsed
    else:
        for item in result.output:
            for part in getattr(item, "content", None) or ():
                if getattr(part, "type", "") == "refusal":
                    raise Nonconforming(f"the model refused: {part.refusal[:300]}")
        parsed = result.output_parsed
    if not isinstance(parsed, pydantic.BaseModel):
        raise Nonconforming("the answer has no structured output")
    return parsed


class OpenAIApi:
    """The calls the plugin makes, on one ``AsyncOpenAI`` per hub."""

    def __init__(self, settings: OpenAISettings, sleep: Callable[[float], Awaitable[None]]) -> None:
        self.settings = settings
        self.sleep = sleep
        """How retries wait (``asyncio.sleep``; tests record the waits)."""
        self._sdk: AsyncOpenAI | None = None
        self.last_rate_limits: dict[str, str] = {}
        """The ``x-ratelimit-*`` headers of the last answer (a success or an error)."""

    def sdk(self) -> AsyncOpenAI:
        """The SDK client (created, and the SDK imported, on first use)."""
        if self._sdk is None:
            from openai import AsyncOpenAI

            self._sdk = AsyncOpenAI(
                api_key=self.settings.api_key.get_secret_value(),
                base_url=self.settings.api_base,
                max_retries=0,  # retried here: insufficient_quota must never be retried
                timeout=self.settings.timeout,
            )
        return self._sdk

    async def close(self) -> None:
        """Close the SDK's connections."""
        if self._sdk is not None:
            await self._sdk.close()
            self._sdk = None

    async def _retrying(self, call: Callable[[], Awaitable[Any]]) -> Any:
        import openai

        attempt = 0
        while True:
            try:
                return await call()
            except openai.APIError as exc:
                error = classify(exc)
                response = getattr(exc, "response", None)
                headers = response.headers if response is not None else {}
                self.last_rate_limits = rate_limit_headers(headers) or self.last_rate_limits
                wait = retry_after(headers)
                if wait is None:
                    wait = min(BACKOFF_BASE * 2**attempt, BACKOFF_MAX) * (1 - random.random() / 4)
                if not _retryable(error) or attempt >= self.settings.max_retries:
                    raise error from None
                if wait > self.settings.max_retry_wait:
                    raise type(error)(
                        f"{error} (asked to wait {wait:.0f}s: over max_retry_wait)",
                        status=error.status,
                        request_id=error.request_id,
                    ) from None
            attempt += 1
            await self.sleep(wait)

    async def structured(
        self, model: str, instructions: str, content: Content, schema: type[pydantic.BaseModel]
    ) -> Answer:
        """Ask ``model`` for an answer of ``schema`` about ``content``.

        :return: the answer with its usage; ``parsed`` is None and ``problem`` says why when
            the answer does not conform.
        :raise ProviderError: the call failed (after retries where retrying helps).
        """
        api = self.settings.api
        sdk = self.sdk()
        if api == "chat":
            messages: Any = [
                {"role": "system", "content": instructions},
                {"role": "user", "content": _input(content, api)},
            ]
            raw = await self._retrying(
                lambda: sdk.chat.completions.with_raw_response.parse(
                    model=model,
                    messages=messages,
                    response_format=schema,
                    max_completion_tokens=self.settings.max_output_tokens,
                )
            )
        else:
            items: Any = [{"role": "user", "content": _input(content, api)}]
            raw = await self._retrying(
                lambda: sdk.responses.with_raw_response.parse(
                    model=model,
                    instructions=instructions,
                    input=items,
                    text_format=schema,
                    max_output_tokens=self.settings.max_output_tokens,
                    store=False,
                )
            )
        return self._answer(raw, model, api)

    def _answer(self, raw: Any, model: str, api: str) -> Answer:
        self.last_rate_limits = rate_limit_headers(raw.headers)
        try:
            body = orjson.loads(raw.content)
        except orjson.JSONDecodeError:
            raise ServerError("OpenAI answered something that is not JSON") from None
        if not isinstance(body, dict):
            raise ServerError("OpenAI answered JSON that is not an object")
        answer = Answer(
            model=model,
            tokens=_usage(body, api),
            request_id=raw.request_id or body.get("id"),
            rate_limits=self.last_rate_limits,
        )
        try:
            answer.parsed = _parsed(raw.parse(), api)
        except Nonconforming as exc:
            answer.problem = str(exc)
        except pydantic.ValidationError as exc:
            answer.problem = _validation_problem(exc)
        except Exception as exc:  # the SDK's parse errors: cut off, filtered, not JSON
            answer.problem = f"the answer could not be read: {type(exc).__name__}: {exc}"[:300]
        return answer

    async def models(self) -> list[str]:
        """The ids of the models the key may use (the cheap call health makes)."""
        page = await self._retrying(lambda: self.sdk().models.list())
        return [model.id for model in page.data]


def _validation_problem(exc: pydantic.ValidationError) -> str:
    """The first problems of a non-conforming answer, without its content."""
    parts = []
    for error in exc.errors(include_url=False, include_input=False)[:5]:
        where = ".".join(str(part) for part in error["loc"]) or "answer"
        parts.append(f"{where}: {error['msg']}")
    return "the answer does not conform to the schema: " + "; ".join(parts)
