"""Validate OpenAI traffic against OpenAI's own published description (vendored copy).

``tests/specs/openai/openapi.chat-embeddings-models.json`` (openai/openai-openapi @ f85dbe22,
OpenAPI 3.1, cut to ``/chat/completions``, ``/embeddings``, ``/models`` and ``/responses``)
checks each logged request (method, path, query, headers, JSON body) and its answer (status,
content type, headers, JSON body) of the paths it describes. It describes only the 200 and 429
answers; the other error answers (400, 401, 404, 500, 503) are checked against its
``ErrorResponse`` schema, the shape OpenAI documents for every error.

Loaded once per test session (about 5 ms from JSON; the YAML original takes 40 times longer).
Its discriminators name no ``mapping`` and its type values are not schema names: each is given
the mapping its branches state (see :func:`_map_discriminators`).
openapi-core's check of the description itself is skipped: OpenAI's description fails it (a
``default: null`` on an object schema), which says nothing of the traffic. Requests answered
400 or 401 are the tests' deliberately bad ones: only their answers are checked. A dropped
connection has no answer to check.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

from plugins.openai.sandbox import RequestRecord
from tests import specs_harness

SPEC_FILE = (
    Path(__file__).resolve().parents[1]
    / "specs"
    / "openai"
    / ("openapi.chat-embeddings-models.json")
)
HOST = "https://api.openai.com"
_URN = "urn:openai-openapi"


@cache
def spec() -> dict[str, Any]:
    """The vendored description, its discriminators given their mappings (stdlib ``json``:
    it holds integers beyond 64 bits)."""
    loaded: dict[str, Any] = json.loads(SPEC_FILE.read_text())
    _map_discriminators(loaded, loaded)
    return loaded


def _map_discriminators(node: Any, root: dict[str, Any]) -> None:
    """Give every ``discriminator`` without a ``mapping`` the one its branches state.

    OpenAI's values (``"message"``) are not schema names, so the implicit mapping OpenAPI
    defines (``#/components/schemas/message``) resolves nowhere; the value each branch's
    ``enum``/``const`` of the property holds is its mapping. A discriminator whose branches
    do not all state one is dropped (plain ``oneOf`` / ``anyOf`` then decides)."""
    if isinstance(node, list):
        for item in node:
            _map_discriminators(item, root)
        return
    if not isinstance(node, dict):
        return
    for value in node.values():
        _map_discriminators(value, root)
    found = node.get("discriminator")
    if not isinstance(found, dict) or "mapping" in found:
        return
    mapping: dict[str, str] = {}
    for branch in node.get("oneOf") or node.get("anyOf") or []:
        ref = branch.get("$ref") if isinstance(branch, dict) else None
        target = _resolve(root, ref) if ref else {}
        prop = (target.get("properties") or {}).get(found["propertyName"]) or {}
        values = prop.get("enum") or ([prop["const"]] if "const" in prop else [])
        if not ref or len(values) != 1:
            del node["discriminator"]
            return
        mapping[str(values[0])] = ref
    found["mapping"] = mapping


def _resolve(root: dict[str, Any], ref: str) -> dict[str, Any]:
    node: Any = root
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node if isinstance(node, dict) else {}


@cache
def _openapi() -> Any:
    from openapi_core import Config, OpenAPI

    return OpenAPI.from_dict(spec(), config=Config(spec_validator_cls=None))


@cache
def _error_validator() -> Any:
    import referencing
    from openapi_schema_validator import OAS31Validator
    from referencing.jsonschema import DRAFT202012

    resource = referencing.Resource(contents=spec(), specification=DRAFT202012)
    registry = referencing.Registry().with_resource(_URN, resource)
    return OAS31Validator({"$ref": f"{_URN}#/components/schemas/ErrorResponse"}, registry=registry)


def template_of(path: str) -> str | None:
    """The described path template of ``path`` (``/v1/models/x``: ``/models/{model}``), None
    when the description lacks it."""
    if not path.startswith("/v1/"):
        return None
    given = path.removeprefix("/v1").split("/")
    for template in spec()["paths"]:
        parts = template.split("/")
        if len(parts) == len(given) and all(
            p == g or p.startswith("{") for p, g in zip(parts, given, strict=True)
        ):
            return str(template)
    return None


def record_problems(record: RequestRecord) -> list[str]:
    """What in one logged request and its answer breaks the description."""
    template = template_of(record.path)
    if template is None or record.status is None:
        return []
    where = f"{record.method} {record.path} -> {record.status}"
    problems: list[str] = []
    if record.status not in (400, 401):
        problems += specs_harness.request_problems(
            _openapi(),
            HOST,
            record.method,
            record.path,
            body=record.raw or None,
            content_type=record.headers.get("content-type", "application/json"),
            headers=record.headers,
        )
    operation = spec()["paths"][template].get(record.method.lower(), {})
    documented = str(record.status) in operation.get("responses", {})
    if record.status < 400 or documented:
        problems += specs_harness.response_problems(
            _openapi(),
            HOST,
            record.method,
            record.path,
            record.status,
            record.response,
            content_type=record.response_headers.get("content-type", ""),
            headers=record.response_headers,
        )
    else:
        errors = _error_validator().iter_errors(record.answer)
        problems += [specs_harness.explain(error) for error in errors]
    return [f"{where}: {problem}" for problem in problems]


def traffic_problems(records: Iterable[RequestRecord]) -> list[str]:
    """Every mismatch in the logged traffic (empty: it all matches OpenAI's description)."""
    return [problem for record in records for problem in record_problems(record)]
