"""The OpenAI sandbox, driven by the real ``openai`` SDK (and raw HTTP for what the SDK never
sends); every request and answer is checked against OpenAI's description by the fixtures."""

from __future__ import annotations

import asyncio
import datetime
import sys
from enum import StrEnum
from typing import Any, Literal

import aiohttp
import openai
import orjson
import pydantic
import pytest
from openai.lib._pydantic import to_strict_json_schema
from pydantic import BaseModel, Field

from plugins.openai._sandbox_limits import Bucket, duration
from plugins.openai._sandbox_schema import instance
from plugins.openai.sandbox import RequestRecord, RunningSandbox
from tests.openai.conftest import KEY, StartSandbox, openai_sdk
from tests.openai.spec import traffic_problems

RATE_HEADERS = (
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-tokens",
)


class Kind(StrEnum):
    receipt = "receipt"
    invoice = "invoice"


class Line(BaseModel):
    description: str
    amount: float


class Receipt(BaseModel):
    merchant: str
    total: float
    tax: float | None
    currency: Literal["USD", "EUR"]
    kind: Kind
    issued: datetime.date
    confidence: float = Field(ge=0, le=1)
    items: int = Field(ge=1, le=99)
    lines: list[Line]
    notes: str | None = None


RECEIPT_TEXT = "Merchant: Corner Shop\nTotal: 1,250.50\nTax: 208.42\nKind: invoice\n"


async def _post(sandbox: RunningSandbox, path: str, body: Any, key: str | None = KEY) -> Any:
    """A raw request (what the SDK would refuse to send); ``(status, JSON answer, headers)``."""
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    async with aiohttp.ClientSession() as session:
        url = sandbox.base_url.removesuffix("/v1") + path
        async with session.post(url, data=data, headers=headers) as response:
            return response.status, await response.json(), response.headers


# --------------------------------------------------------------------------- structured output


async def test_responses_parse_answers_the_requested_schema_with_figures_from_the_input(
    openai_sandbox: RunningSandbox,
) -> None:
    async with openai_sdk(openai_sandbox) as client:
        response = await client.responses.parse(
            model="gpt-4o-mini", input=RECEIPT_TEXT, text_format=Receipt
        )
    parsed = response.output_parsed
    assert isinstance(parsed, Receipt)
    assert (parsed.merchant, parsed.total, parsed.tax) == ("Corner Shop", 1250.5, 208.42)
    assert parsed.kind is Kind.invoice and parsed.currency == "USD"
    assert 0 <= parsed.confidence <= 1 and 1 <= parsed.items <= 99 and len(parsed.lines) == 1
    assert response.status == "completed" and response.model == "gpt-4o-mini"
    assert response.id.startswith("resp_")
    usage = response.usage
    assert usage is not None
    assert usage.input_tokens == -(-len(RECEIPT_TEXT) // 4)
    assert usage.output_tokens == -(-len(response.output_text) // 4)
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    assert usage.input_tokens_details.cached_tokens == 0
    assert usage.output_tokens_details.reasoning_tokens == 0
    (record,) = openai_sandbox.state.model_calls()
    assert record.path == "/v1/responses" and record.status == 200
    assert record.headers["authorization"] == "Bearer ***"
    assert KEY not in orjson.dumps(dict(record.headers)).decode()
    fmt = record.body["text"]["format"]
    assert (fmt["type"], fmt["name"], fmt["strict"]) == ("json_schema", "Receipt", True)


async def test_chat_completions_parse_answers_the_requested_schema(
    openai_sandbox: RunningSandbox,
) -> None:
    messages = [
        {"role": "system", "content": "Extract the receipt."},
        {"role": "user", "content": RECEIPT_TEXT},
    ]
    async with openai_sdk(openai_sandbox) as client:
        completion = await client.chat.completions.parse(
            model="gpt-4o-mini", messages=messages, response_format=Receipt
        )
    choice = completion.choices[0]
    assert choice.finish_reason == "stop" and choice.message.parsed is not None
    assert choice.message.parsed.total == 1250.5
    assert completion.object == "chat.completion" and completion.id.startswith("chatcmpl-")
    usage = completion.usage
    assert usage is not None and usage.prompt_tokens_details is not None
    text = "Extract the receipt.\n" + RECEIPT_TEXT
    assert usage.prompt_tokens == -(-len(text) // 4)
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert usage.prompt_tokens_details.cached_tokens == 0
    (record,) = openai_sandbox.state.model_calls()
    assert record.body["response_format"]["json_schema"]["name"] == "Receipt"


async def test_a_script_makes_the_model_say_given_content(openai_sandbox: RunningSandbox) -> None:
    said = {"merchant": "Scripted", "total": 10.0, "tax": 12.0}
    openai_sandbox.state.script_next(said | {"currency": "EUR"}, times=2, reasoning_tokens=40)
    async with openai_sdk(openai_sandbox) as client:
        first = await client.responses.create(model="gpt-5-mini", input="anything")
        second = await client.chat.completions.create(
            model="gpt-5-mini", messages=[{"role": "user", "content": "x"}]
        )
        openai_sandbox.state.script_next("plain words")
        third = await client.responses.create(model="gpt-5-mini", input="anything")
        fourth = await client.responses.create(model="gpt-5-mini", input="anything")
    assert orjson.loads(first.output_text) == said | {"currency": "EUR"}
    assert orjson.loads(second.choices[0].message.content or "") == said | {"currency": "EUR"}
    assert first.usage is not None and first.usage.output_tokens_details.reasoning_tokens == 40
    assert first.usage.output_tokens == 40 + -(-len(first.output_text) // 4)
    assert third.output_text == "plain words"
    assert fourth.output_text.startswith("Sandbox answer from gpt-5-mini")


async def test_a_script_can_be_limited_to_one_path(openai_sandbox: RunningSandbox) -> None:
    openai_sandbox.state.script_next("for chat", path="/v1/chat/")
    async with openai_sdk(openai_sandbox) as client:
        response = await client.responses.create(model="gpt-4o-mini", input="x")
        chat = await client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}]
        )
    assert response.output_text != "for chat"
    assert chat.choices[0].message.content == "for chat"


@pytest.mark.parametrize(
    "model",
    [Receipt, Line],
    ids=lambda m: m.__name__,
)
def test_the_instance_conforms_to_the_schema_pydantic_emits(model: type[BaseModel]) -> None:
    import jsonschema

    schema = to_strict_json_schema(model)
    value = instance(schema)
    jsonschema.Draft202012Validator(schema).validate(value)
    assert instance(schema) == value  # deterministic
    model.model_validate(value)


def test_the_instance_follows_bounds_formats_arrays_and_recursive_refs() -> None:
    import jsonschema

    schema = {
        "$defs": {
            "Node": {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "minLength": 12, "maxLength": 14},
                    "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}},
                },
                "required": ["name", "children"],
                "additionalProperties": False,
            }
        },
        "type": "object",
        "properties": {
            "root": {"$ref": "#/$defs/Node"},
            "when": {"type": "string", "format": "date-time"},
            "count": {"type": "integer", "exclusiveMinimum": 3},
            "ratio": {"type": ["number", "null"], "exclusiveMaximum": -5},
            "flags": {"type": "array", "items": {"type": "boolean"}, "minItems": 3},
            "level": {"enum": ["low", "high"]},
            "fixed": {"const": 7},
            "both": {"allOf": [{"properties": {"a": {"type": "integer"}}}]},
        },
    }
    value = instance(schema, "Level: HIGH\nflags: yes\n")
    jsonschema.Draft202012Validator(schema).validate(value)
    assert len(value["root"]["name"]) == 12 and isinstance(value["root"]["children"], list)
    assert value["when"] == "2025-12-31T00:00:00Z" and value["count"] == 4
    assert value["ratio"] == -6 and value["flags"] == [True, True, True]
    assert value["level"] == "high" and value["fixed"] == 7 and value["both"] == {"a": 0}


# --------------------------------------------------------------------------- usage and limits


async def test_max_output_tokens_cuts_the_answer_short(openai_sandbox: RunningSandbox) -> None:
    fmt = {"type": "json_schema", "name": "Receipt", "strict": True}
    fmt["schema"] = to_strict_json_schema(Receipt)
    async with openai_sdk(openai_sandbox) as client:
        response = await client.responses.create(
            model="gpt-4o-mini", input=RECEIPT_TEXT, text={"format": fmt}, max_output_tokens=16
        )
        with pytest.raises(openai.LengthFinishReasonError):
            await client.chat.completions.parse(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": RECEIPT_TEXT}],
                response_format=Receipt,
                max_completion_tokens=5,
            )
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.usage is not None and response.usage.output_tokens == 16
    assert len(response.output_text) == 64
    chat = openai_sandbox.state.model_calls()[-1].answer
    assert chat["choices"][0]["finish_reason"] == "length"
    assert chat["usage"]["completion_tokens"] == 5


async def test_a_prompt_seen_before_reports_cached_tokens_and_images_count(
    openai_sandbox: RunningSandbox,
) -> None:
    long_text = "Statement line with figures 123.45\n" * 200
    image = {"type": "input_image", "image_url": "data:image/png;base64,AAAA", "detail": "low"}
    content = [{"type": "input_text", "text": "Read it."}, image]
    async with openai_sdk(openai_sandbox) as client:
        first = await client.responses.create(model="gpt-4o", input=long_text)
        second = await client.responses.create(model="gpt-4o", input=long_text)
        seen = await client.responses.create(
            model="gpt-4o", input=[{"role": "user", "content": content}]
        )
    assert first.usage is not None and second.usage is not None and seen.usage is not None
    assert first.usage.input_tokens_details.cached_tokens == 0
    cached = second.usage.input_tokens_details.cached_tokens
    assert cached % 128 == 0 and 1024 <= cached <= second.usage.input_tokens
    assert seen.usage.input_tokens == 2 + 85


async def test_every_answer_carries_the_rate_limit_headers(
    openai_sandbox: RunningSandbox,
) -> None:
    async with openai_sdk(openai_sandbox) as client:
        raw = await client.responses.with_raw_response.create(model="gpt-4o-mini", input="hi")
        models = await client.models.with_raw_response.list()
    for answer in (raw, models):
        for header in (*RATE_HEADERS, "x-request-id", "openai-processing-ms"):
            assert answer.headers.get(header), header
    assert raw.headers["x-ratelimit-limit-requests"] == "5000"
    assert raw.headers["x-ratelimit-remaining-requests"] == "4999"
    assert raw.headers["x-request-id"].startswith("req_")
    assert raw.parse().output_text


async def test_the_request_limit_is_enforced(start_openai_sandbox: StartSandbox) -> None:
    sandbox = await start_openai_sandbox(requests_per_minute=2)
    async with openai_sdk(sandbox) as client:
        for _ in range(2):
            await client.responses.create(model="gpt-4o-mini", input="hi")
        with pytest.raises(openai.RateLimitError) as refused:
            await client.responses.create(model="gpt-4o-mini", input="hi")
        with pytest.raises(openai.RateLimitError) as queued:
            await client.responses.create(model="gpt-4o-mini", input="hi")
    error = refused.value
    assert error.code == "rate_limit_exceeded" and error.type == "requests"
    assert "requests per min (RPM): Limit 2, Used 2, Requested 1" in error.message
    headers = error.response.headers
    assert 25_000 <= int(headers["retry-after-ms"]) <= 30_000
    assert int(headers["retry-after"]) >= 25
    assert headers["x-ratelimit-remaining-requests"] == "0"
    later = int(queued.value.response.headers["retry-after-ms"])
    assert later >= int(headers["retry-after-ms"]) + 29_000  # one slot after the first refused
    assert sandbox.state.rate_limited == 2


async def test_the_token_limit_is_enforced_and_counts_max_output_tokens(
    start_openai_sandbox: StartSandbox,
) -> None:
    sandbox = await start_openai_sandbox(tokens_per_minute=1000, requests_per_minute=None)
    async with openai_sdk(sandbox) as client:
        await client.responses.create(model="gpt-4o-mini", input="x" * 2000, max_output_tokens=400)
        with pytest.raises(openai.RateLimitError) as refused:
            await client.responses.create(model="gpt-4o-mini", input="x" * 800)
        with pytest.raises(openai.RateLimitError) as too_large:
            await client.responses.create(model="gpt-4o-mini", input="x" * 8000)
    assert refused.value.type == "tokens" and refused.value.code == "rate_limit_exceeded"
    assert "retry-after-ms" in refused.value.response.headers
    assert "Request too large" in too_large.value.message
    assert "retry-after" not in too_large.value.response.headers
    assert "x-ratelimit-limit-requests" not in refused.value.response.headers


def test_a_bucket_refills_at_its_rate_and_reports_openais_header_forms() -> None:
    bucket = Bucket(per_minute=600, capacity=10, at=100.0)
    bucket.level = 0
    assert bucket.wait(1) == pytest.approx(0.1)
    bucket.refill(100.5)
    assert bucket.level == pytest.approx(5)
    assert bucket.headers("requests") == {
        "x-ratelimit-limit-requests": "600",
        "x-ratelimit-remaining-requests": "5",
        "x-ratelimit-reset-requests": "500ms",
    }
    bucket.refill(200.0)
    assert bucket.level == 10 and bucket.wait(601) == float("inf")
    assert bucket.wait(300) == 0  # more than a burst: taken from a full bucket, then owed
    assert [duration(s) for s in (0.0201, 1.5, 360, 61.25)] == ["21ms", "1.5s", "6m0s", "1m1.25s"]


async def test_burst_seconds_caps_how_much_of_the_minute_is_used_at_once(
    start_openai_sandbox: StartSandbox,
) -> None:
    sandbox = await start_openai_sandbox(requests_per_minute=6, burst_seconds=20)
    async with openai_sdk(sandbox) as client:
        for _ in range(3):
            await client.models.retrieve("gpt-4o")  # not a model call: costs nothing
        for _ in range(2):
            await client.responses.create(model="gpt-4o-mini", input="hi")
        with pytest.raises(openai.RateLimitError) as refused:
            await client.responses.create(model="gpt-4o-mini", input="hi")
    assert int(refused.value.response.headers["retry-after-ms"]) <= 10_000


async def test_a_request_over_a_bursts_worth_of_tokens_is_admitted_then_owed(
    start_openai_sandbox: StartSandbox,
) -> None:
    sandbox = await start_openai_sandbox(tokens_per_minute=60_000, burst_seconds=1)
    async with openai_sdk(sandbox) as client:
        big = await client.responses.create(model="gpt-4o-mini", input="x" * 8000)
        with pytest.raises(openai.RateLimitError) as refused:
            await client.responses.create(model="gpt-4o-mini", input="x")
    assert big.usage is not None and big.usage.input_tokens == 2000
    assert refused.value.type == "tokens"
    assert 0 < int(refused.value.response.headers["retry-after-ms"]) <= 1001


# --------------------------------------------------------------------------- errors


async def test_a_wrong_or_missing_key_is_401_without_the_key(
    openai_sandbox: RunningSandbox,
) -> None:
    wrong = "sk-wrong-key-0123456789abcdef"
    async with openai_sdk(openai_sandbox, api_key=wrong) as client:
        with pytest.raises(openai.AuthenticationError) as refused:
            await client.responses.create(model="gpt-4o-mini", input="hi")
    assert refused.value.code == "invalid_api_key"
    assert wrong not in refused.value.message and "cdef" in refused.value.message
    status, answer, _ = await _post(openai_sandbox, "/v1/models", {}, key=None)
    assert status == 401 and "didn't provide an API key" in answer["error"]["message"]
    assert [r.status for r in openai_sandbox.state.requests] == [401, 401]
    assert openai_sandbox.state.input_tokens == 0  # refused before any model call


@pytest.mark.parametrize(
    ("path", "body", "param", "code"),
    [
        ("/v1/responses", {"input": "hi"}, "model", "missing_required_parameter"),
        ("/v1/responses", {"model": "gpt-4o-mini"}, "input", "missing_required_parameter"),
        ("/v1/responses", {"model": "gpt-4o-mini", "input": 5}, "input", "invalid_type"),
        (
            "/v1/responses",
            {"model": "gpt-4o-mini", "input": "x", "max_output_tokens": 5},
            "max_output_tokens",
            "integer_below_min_value",
        ),
        (
            "/v1/responses",
            {"model": "gpt-4o-mini", "input": "x", "text": {"format": {"type": "json_schema"}}},
            "text.format.name",
            "missing_required_parameter",
        ),
        (
            "/v1/responses",
            {
                "model": "gpt-4o-mini",
                "input": "x",
                "text": {
                    "format": {
                        "type": "json_schema",
                        "name": "Open",
                        "strict": True,
                        "schema": {"type": "object", "properties": {"a": {"type": "string"}}},
                    }
                },
            },
            "text.format.schema",
            "invalid_json_schema",
        ),
        ("/v1/responses", {"model": "gpt-nope", "input": "x"}, "model", "model_not_found"),
        (
            "/v1/responses",
            {"model": "gpt-4o", "input": "x", "stream": True},
            "stream",
            "unsupported_value",
        ),
        (
            "/v1/chat/completions",
            {
                "model": "gpt-4o",
                "messages": [{"role": "user", "content": "x"}],
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "Gone", "schema": {"$ref": "#/$defs/Missing"}},
                },
            },
            "response_format.json_schema.schema",
            "invalid_json_schema",
        ),
        (
            "/v1/responses",
            {
                "model": "gpt-4o",
                "input": "x",
                "text": {
                    "format": {
                        "type": "json_schema",
                        "name": "Words",
                        "strict": True,
                        "schema": {"type": "string"},
                    }
                },
            },
            "text.format.schema",
            "invalid_json_schema",
        ),
        (
            "/v1/chat/completions",
            {"model": "gpt-4o-mini"},
            "messages",
            "missing_required_parameter",
        ),
        ("/v1/chat/completions", {"model": "gpt-4o", "messages": []}, "messages", "empty_array"),
        ("/v1/responses", b"{not json", None, None),
    ],
)
async def test_a_bad_request_is_400_naming_the_param(
    openai_sandbox: RunningSandbox, path: str, body: Any, param: str | None, code: str | None
) -> None:
    status, answer, headers = await _post(openai_sandbox, path, body)
    assert status == 400
    error = answer["error"]
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", param, code)
    assert "x-ratelimit-limit-requests" in headers


async def test_unknown_models_and_urls_are_404_in_openais_shape(
    openai_sandbox: RunningSandbox,
) -> None:
    async with openai_sdk(openai_sandbox) as client:
        listed = await client.models.list()
        one = await client.models.retrieve("gpt-4.1")
        with pytest.raises(openai.NotFoundError) as no_model:
            await client.models.retrieve("gpt-nope")
        with pytest.raises(openai.NotFoundError) as no_chat_model:
            await client.chat.completions.create(
                model="gpt-nope", messages=[{"role": "user", "content": "x"}]
            )
    assert "gpt-4o-mini" in [m.id for m in listed.data] and one.owned_by == "system"
    assert no_model.value.code == "model_not_found"
    assert no_chat_model.value.code == "model_not_found"
    status, answer, _ = await _post(openai_sandbox, "/v1/nothing", {})
    assert status == 404 and answer["error"]["message"] == "Invalid URL (POST /v1/nothing)"


# --------------------------------------------------------------------------- faults


@pytest.mark.parametrize("api", ["responses", "chat"])
@pytest.mark.parametrize("kind", ["invalid_json", "missing_field"])
async def test_a_broken_model_answer_fails_parsing(
    openai_sandbox: RunningSandbox, api: str, kind: Any
) -> None:
    openai_sandbox.state.fail_next(kind)
    async with openai_sdk(openai_sandbox) as client:
        with pytest.raises(pydantic.ValidationError) as broken:
            if api == "responses":
                await client.responses.parse(model="gpt-4o-mini", input="x", text_format=Receipt)
            else:
                await client.chat.completions.parse(
                    model="gpt-4o-mini",
                    messages=[{"role": "user", "content": "x"}],
                    response_format=Receipt,
                )
        again = await client.responses.parse(model="gpt-4o-mini", input="x", text_format=Receipt)
    expected = "json_invalid" if kind == "invalid_json" else "missing"
    assert broken.value.errors()[0]["type"] == expected
    assert again.output_parsed is not None  # one-shot
    assert openai_sandbox.state.model_calls()[0].fault == kind


async def test_injected_rate_limit_and_insufficient_quota_differ(
    openai_sandbox: RunningSandbox,
) -> None:
    openai_sandbox.state.fail_next("rate_limit", retry_after=2.5)
    openai_sandbox.state.fail_next("insufficient_quota")
    async with openai_sdk(openai_sandbox) as client:
        with pytest.raises(openai.RateLimitError) as limited:
            await client.responses.create(model="gpt-4o-mini", input="x")
        with pytest.raises(openai.RateLimitError) as quota:
            await client.responses.create(model="gpt-4o-mini", input="x")
    assert limited.value.code == "rate_limit_exceeded"
    assert limited.value.response.headers["retry-after-ms"] == "2500"
    assert limited.value.response.headers["retry-after"] == "3"
    assert quota.value.code == "insufficient_quota" and quota.value.type == "insufficient_quota"
    assert "retry-after" not in quota.value.response.headers
    assert openai_sandbox.state.rate_limited == 0  # injected, not the enforced limit


async def test_server_errors_repeat_the_given_times_on_the_given_path(
    openai_sandbox: RunningSandbox,
) -> None:
    openai_sandbox.state.fail_next("server_error", times=2, path="/v1/chat/")
    openai_sandbox.state.fail_next("overloaded", path="/v1/models")
    messages = [{"role": "user", "content": "x"}]
    async with openai_sdk(openai_sandbox) as client:
        await client.responses.create(model="gpt-4o-mini", input="x")
        for _ in range(2):
            with pytest.raises(openai.InternalServerError) as failed:
                await client.chat.completions.create(model="gpt-4o-mini", messages=messages)
            assert failed.value.status_code == 500 and failed.value.type == "server_error"
        await client.chat.completions.create(model="gpt-4o-mini", messages=messages)
        with pytest.raises(openai.InternalServerError) as overloaded:
            await client.models.list()
    assert overloaded.value.status_code == 503


async def test_the_sdk_retries_an_injected_fault_and_then_succeeds(
    openai_sandbox: RunningSandbox,
) -> None:
    openai_sandbox.state.fail_next("rate_limit", retry_after=0.01)
    async with openai_sdk(openai_sandbox, max_retries=1) as client:
        response = await client.responses.create(model="gpt-4o-mini", input="x")
    assert response.status == "completed"
    statuses = [r.status for r in openai_sandbox.state.model_calls()]
    assert statuses == [429, 200]


async def test_a_slow_answer_times_out_the_caller(openai_sandbox: RunningSandbox) -> None:
    openai_sandbox.state.fail_next("slow", delay=2.0)
    async with openai_sdk(openai_sandbox, timeout=0.2) as client:
        with pytest.raises(openai.APITimeoutError):
            await client.responses.create(model="gpt-4o-mini", input="x")
    openai_sandbox.state.fail_next("slow", delay=0.05)
    async with openai_sdk(openai_sandbox) as client:
        response = await client.responses.create(model="gpt-4o-mini", input="x")
    assert response.status == "completed"
    assert openai_sandbox.state.requests[-1].fault == "slow"


async def test_a_dropped_connection_is_a_connection_error(openai_sandbox: RunningSandbox) -> None:
    openai_sandbox.state.fail_next("drop")
    async with openai_sdk(openai_sandbox) as client:
        with pytest.raises(openai.APIConnectionError):
            await client.responses.create(model="gpt-4o-mini", input="x")
        await client.responses.create(model="gpt-4o-mini", input="x")
    dropped, answered = openai_sandbox.state.model_calls()
    assert (dropped.status, dropped.fault, answered.status) == (None, "drop", 200)


async def test_clear_forgets_pending_faults_and_scripts(openai_sandbox: RunningSandbox) -> None:
    openai_sandbox.state.fail_next("server_error", times=5)
    openai_sandbox.state.script_next("never said")
    openai_sandbox.state.clear()
    async with openai_sdk(openai_sandbox) as client:
        response = await client.responses.create(model="gpt-4o-mini", input="x")
    assert response.output_text != "never said"


# --------------------------------------------------------------------------- the spec check


def test_the_spec_check_finds_a_broken_request_and_answer() -> None:
    answer = {"id": "resp_1", "object": "response", "status": "done"}
    record = RequestRecord(
        "POST",
        "/v1/responses",
        "",
        {"authorization": "Bearer ***", "content-type": "application/json"},
        orjson.dumps({"model": "gpt-4o-mini", "input": 5}),
        None,
        status=200,
        response=orjson.dumps(answer),
        response_headers={"content-type": "application/json"},
    )
    error = RequestRecord(
        "GET",
        "/v1/models",
        "",
        {"authorization": "Bearer ***"},
        b"",
        None,
        status=500,
        response=orjson.dumps({"error": {"message": "no type"}}),
        response_headers={"content-type": "application/json"},
    )
    problems = traffic_problems([record, error])
    assert any("input" in p for p in problems), problems
    assert any("status" in p for p in problems), problems
    assert any("GET /v1/models -> 500" in p and "type" in p for p in problems), problems


async def test_the_stats_route_counts_calls_and_tokens(openai_sandbox: RunningSandbox) -> None:
    async with openai_sdk(openai_sandbox) as client:
        await client.responses.create(model="gpt-4o-mini", input="x" * 40)
    async with (
        aiohttp.ClientSession() as session,
        session.get(openai_sandbox.base_url.removesuffix("/v1") + "/_sandbox/stats") as answer,
    ):
        stats = await answer.json()
    assert stats["model_calls"] == 1 and stats["input_tokens"] == 10
    assert stats["rate_limited"] == 0 and stats["output_tokens"] > 0


async def test_the_command_line_serves_until_stopped() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "plugins.openai.sandbox",
        "--port",
        "0",
        "--rpm",
        "60",
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        printed = b""
        while not printed.rstrip().endswith(b"}"):
            printed += await asyncio.wait_for(process.stdout.readline(), 30)
        summary = orjson.loads(printed)
        from openai import AsyncOpenAI

        async with AsyncOpenAI(
            base_url=summary["base_url"], api_key=summary["api_key"], max_retries=0
        ) as client:
            raw = await client.responses.with_raw_response.create(model="gpt-4o", input="x")
        assert raw.headers["x-ratelimit-limit-requests"] == "60"
    finally:
        process.terminate()
        await process.wait()
