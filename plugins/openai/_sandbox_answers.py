"""What the OpenAI sandbox reads from a request and the objects it answers, in OpenAI's shapes.

A model request (``POST /v1/responses`` or ``POST /v1/chat/completions``) is checked the way
OpenAI checks it (a 400 ``invalid_request_error`` naming the ``param``) and read into one
:class:`Ask`: the model, the text it is given, the JSON schema it must answer in, the output
token limit. Tokens are counted deterministically: ``ceil(characters / 4)`` of the text
(instructions, every message and text part), 85 per image; an answer's output tokens the same
way over its text, plus any reasoning tokens.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from ._sandbox_schema import SchemaError, instance

JSON = dict[str, Any]

IMAGE_TOKENS = 85
"""Input tokens an image counts for (OpenAI's "low detail" figure)."""
_IMAGE_PARTS = frozenset({"input_image", "image_url"})
_TEXT_KEYS = ("instructions", "input", "messages", "content", "text")
_NOT_JSON = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't "
    "using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was "
    "sent was not valid JSON. If you have trouble figuring out how to fix this, please contact "
    "us through our help center at help.openai.com.)"
)


class OpenAIError(Exception):
    """An error answer: its status and OpenAI's ``{"error": {message, type, param, code}}``."""

    def __init__(
        self,
        status: int,
        message: str,
        kind: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
        self.headers = dict(headers or {})


def not_json() -> OpenAIError:
    """The 400 of a body that is not a JSON object."""
    return OpenAIError(400, _NOT_JSON)


def missing(param: str) -> OpenAIError:
    """The 400 of a required parameter left out."""
    return OpenAIError(
        400,
        f"Missing required parameter: '{param}'.",
        param=param,
        code="missing_required_parameter",
    )


def _invalid(param: str, message: str, code: str = "invalid_value") -> OpenAIError:
    return OpenAIError(400, f"Invalid '{param}': {message}", param=param, code=code)


@dataclass(frozen=True)
class Ask:
    """One model request as the sandbox reads it.

    :param schema: the JSON schema of structured output (None: free text).
    :param format_name: its ``name``; ``json_object`` when JSON mode without a schema.
    :param max_output: the output token limit (None: no limit given).
    """

    endpoint: str
    model: str
    text: str
    images: int
    schema: JSON | None
    format_name: str | None
    max_output: int | None
    echo: JSON

    @property
    def input_tokens(self) -> int:
        """Deterministic input tokens: ``ceil(characters / 4)`` plus 85 per image."""
        return math.ceil(len(self.text) / 4) + IMAGE_TOKENS * self.images


def output_tokens(text: str) -> int:
    """Deterministic output tokens of an answer's text."""
    return math.ceil(len(text) / 4)


def _walk(node: Any) -> Iterator[str | None]:
    """Every text of a request body (None for each image part)."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item)
    elif isinstance(node, dict):
        if node.get("type") in _IMAGE_PARTS:
            yield None
            return
        for key in _TEXT_KEYS:
            if key in node:
                yield from _walk(node[key])


def _read_text(body: Mapping[str, Any], keys: tuple[str, ...]) -> tuple[str, int]:
    pieces = [piece for key in keys for piece in _walk(body.get(key))]
    texts = [piece for piece in pieces if piece is not None]
    return "\n".join(texts), len(pieces) - len(texts)


def _model(body: Mapping[str, Any], models: frozenset[str], endpoint: str) -> str:
    if body.get("stream") is True:
        message = "The sandbox does not stream answers: send 'stream': false."
        raise OpenAIError(400, message, param="stream", code="unsupported_value")
    model = body.get("model")
    if model is None:
        raise missing("model")
    if not isinstance(model, str) or not model:
        raise _invalid("model", "expected a string.", "invalid_type")
    if models and model not in models:
        if endpoint == "chat":
            message = f"The model `{model}` does not exist or you do not have access to it."
            raise OpenAIError(404, message, code="model_not_found")
        message = f"The requested model '{model}' does not exist."
        raise OpenAIError(400, message, param="model", code="model_not_found")
    return model


def _limit(body: Mapping[str, Any], *names: str, least: int = 1) -> int | None:
    for name in names:
        value = body.get(name)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool):
            raise _invalid(name, "expected an integer.", "invalid_type")
        if value < least:
            message = (
                f"integer below minimum value. Expected a value >= {least}, but got {value} "
                "instead."
            )
            raise _invalid(name, message, "integer_below_min_value")
        return value
    return None


def _strict_problem(schema: Any, where: str = "()") -> str | None:
    """What in a strict schema breaks OpenAI's strict-mode rules (every object closed with
    ``additionalProperties: false`` and requiring all its properties), None when nothing."""
    if isinstance(schema, list):
        return next((p for item in schema if (p := _strict_problem(item, where))), None)
    if not isinstance(schema, dict):
        return None
    if schema.get("type") == "object" or "properties" in schema:
        if schema.get("additionalProperties") is not False:
            return (
                f"In context={where}, 'additionalProperties' is required to be supplied and to "
                "be false."
            )
        required = set(schema.get("required") or [])
        absent = [key for key in schema.get("properties") or {} if key not in required]
        if absent:
            return (
                f"In context={where}, 'required' is required to be supplied and to be an array "
                f"including every key in properties. Missing '{absent[0]}'."
            )
    for key, value in schema.items():
        if isinstance(value, dict | list) and key not in ("enum", "const", "required"):
            found = _strict_problem(value, f"{where[:-1]}'{key}')")
            if found:
                return found
    return None


def _json_schema(fmt: Mapping[str, Any], param: str) -> tuple[JSON, str]:
    """The schema and name of a ``json_schema`` format (``param``: where it sits)."""
    name = fmt.get("name")
    schema = fmt.get("schema")
    if not isinstance(name, str) or not name:
        raise missing(f"{param}.name")
    if not isinstance(schema, dict):
        raise missing(f"{param}.schema")
    strict = fmt.get("strict") is True
    problem = _strict_problem(schema) if strict else None
    if strict and schema.get("type") != "object":
        got = schema.get("type")
        problem = f"schema must be a JSON Schema of 'type: \"object\"', got 'type: \"{got}\"'."
    try:
        instance(schema)
    except SchemaError as exc:
        problem = problem or str(exc)
    if problem:
        message = f"Invalid schema for response_format '{name}': {problem}"
        raise OpenAIError(400, message, param=f"{param}.schema", code="invalid_json_schema")
    return schema, name


def _format(fmt: Any, param: str) -> tuple[JSON | None, str | None]:
    if fmt is None:
        return None, None
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "json_schema":
        return _json_schema(fmt, param)
    if kind == "json_object":
        return None, "json_object"
    if kind == "text":
        return None, None
    raise _invalid(f"{param}.type", "expected one of 'text', 'json_object' or 'json_schema'.")


def read_responses(body: Any, models: frozenset[str]) -> Ask:
    """A ``POST /v1/responses`` body read, or the 400 OpenAI answers it with."""
    if not isinstance(body, dict):
        raise not_json()
    model = _model(body, models, "responses")
    if "input" not in body or body["input"] is None:
        raise missing("input")
    if not isinstance(body["input"], str | list):
        message = "expected one of a string or array of input items."
        raise _invalid("input", message, "invalid_type")
    text_param = body.get("text") or {}
    schema, name = _format(text_param.get("format"), "text.format")
    max_output = _limit(body, "max_output_tokens", least=16)
    text, images = _read_text(body, ("instructions", "input"))
    echo = {key: body.get(key) for key in ("instructions", "metadata", "temperature", "top_p")}
    echo["text"] = {"format": text_param.get("format") or {"type": "text"}, "verbosity": "medium"}
    return Ask("responses", model, text, images, schema, name, max_output, echo)


def read_chat(body: Any, models: frozenset[str]) -> Ask:
    """A ``POST /v1/chat/completions`` body read, or the 400 (404: unknown model) OpenAI
    answers it with."""
    if not isinstance(body, dict):
        raise not_json()
    model = _model(body, models, "chat")
    messages = body.get("messages")
    if messages is None:
        raise missing("messages")
    if not isinstance(messages, list) or not messages:
        message = "empty array. Expected an array with minimum length 1, but got an empty array."
        raise _invalid("messages", message, "empty_array")
    response_format = body.get("response_format")
    schema: JSON | None
    name: str | None
    if isinstance(response_format, dict) and response_format.get("type") == "json_schema":
        inner = response_format.get("json_schema")
        if not isinstance(inner, dict):
            raise missing("response_format.json_schema")
        schema, name = _json_schema(inner, "response_format.json_schema")
    else:
        schema, name = _format(response_format, "response_format")
    max_output = _limit(body, "max_completion_tokens", "max_tokens")
    text, images = _read_text(body, ("messages",))
    echo = {"metadata": body.get("metadata")}
    return Ask("chat", model, text, images, schema, name, max_output, echo)


# --------------------------------------------------------------------------- answers


@dataclass(frozen=True)
class Usage:
    """The token counts of one answer."""

    input_tokens: int
    cached_tokens: int
    output_tokens: int
    reasoning_tokens: int


def response_object(
    ask: Ask, ids: tuple[str, str], text: str, usage: Usage, incomplete: bool
) -> JSON:
    """A Responses API ``response`` (``ids``: the response's and its message's)."""
    now = int(time.time())
    return {
        "id": ids[0],
        "object": "response",
        "created_at": now,
        "status": "incomplete" if incomplete else "completed",
        "background": False,
        "completed_at": None if incomplete else now,
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
        "instructions": ask.echo.get("instructions"),
        "max_output_tokens": ask.max_output,
        "max_tool_calls": None,
        "model": ask.model,
        "output": [
            {
                "id": ids[1],
                "type": "message",
                "status": "incomplete" if incomplete else "completed",
                "role": "assistant",
                "content": [
                    {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
                ],
            }
        ],
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "service_tier": "default",
        "store": True,
        "temperature": _or(ask.echo.get("temperature"), 1.0),
        "text": ask.echo["text"],
        "tool_choice": "auto",
        "tools": [],
        "top_logprobs": 0,
        "top_p": _or(ask.echo.get("top_p"), 1.0),
        "truncation": "disabled",
        "usage": {
            "input_tokens": usage.input_tokens,
            "input_tokens_details": {"cached_tokens": usage.cached_tokens, "cache_write_tokens": 0},
            "output_tokens": usage.output_tokens,
            "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
            "total_tokens": usage.input_tokens + usage.output_tokens,
        },
        "metadata": _or(ask.echo.get("metadata"), {}),
    }


def chat_object(ask: Ask, completion_id: str, text: str, usage: Usage, incomplete: bool) -> JSON:
    """A ``chat.completion``."""
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": ask.model,
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": text,
                    "refusal": None,
                    "annotations": [],
                },
                "logprobs": None,
                "finish_reason": "length" if incomplete else "stop",
            }
        ],
        "usage": {
            "prompt_tokens": usage.input_tokens,
            "completion_tokens": usage.output_tokens,
            "total_tokens": usage.input_tokens + usage.output_tokens,
            "prompt_tokens_details": {"cached_tokens": usage.cached_tokens, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": usage.reasoning_tokens,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        },
        "service_tier": "default",
        "system_fingerprint": "fp_sandbox",
    }


def model_object(model: str) -> JSON:
    """A ``model``."""
    return {"id": model, "object": "model", "created": 1_700_000_000, "owned_by": "system"}


def _or(value: Any, default: Any) -> Any:
    return default if value is None else value
