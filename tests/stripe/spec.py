"""Validate Stripe traffic against Stripe's own published description (vendored copy).

``tests/specs/stripe/spec3.billing-subset.json`` (stripe/openapi, API 2023-08-16, cut to the
23 paths in ``subset-paths.txt``) checks requests (method, path, query, form body) and
answers (status, JSON body) of those paths; the other paths the sandbox serves (products,
payment intents, charges, refunds, disputes, checkout) are checked against Stripe's sample
objects in ``fixtures3.HEAD-2026-08-21.json``: every field the answer has exists in the
sample of that object type, with the same JSON type.

How Stripe's form bodies are validated. openapi-core 0.23 cannot decode them itself: its
``deepObject`` style reads one level (``metadata[key]``) and only for a schema whose ``type`` is
``object``, so ``address[city]`` and ``created[gte]`` (``anyOf`` schemas) fail to decode,
arrays (``expand[0]``, ``expand[]``) and arrays of objects (``items[0][price]``) are not
supported, and an undecodable property is silently skipped rather than reported. So this
module decodes Stripe's bracket encoding itself (its own decoder, not the sandbox's), casts the
strings to the types the schema names (integers, booleans, numbers, through ``anyOf``), and
validates each query parameter and the whole body with openapi-core's schema validator
(``openapi_schema_validator.OAS30Validator``); answers go through ``openapi_core.OpenAPI``
``validate_response`` (status, content type, body) through ``tests/specs_harness.py``.

Constructs not validated: ``oneOf``/``anyOf`` alternatives are tried in order for casting, so a
string that reads as an integer is cast where an integer is allowed (``"12"`` for a
``string | integer`` field passes either way); the description's ``nullable`` without
``type`` is rewritten to an ``anyOf`` with ``null`` at load (openapi-schema-validator ignores
``nullable`` without ``type``), and ``null`` is added to the ``enum`` of a nullable enum (it
would otherwise refuse ``null``, which OAS 3.0.3 allows); ``x-expandableFields`` are not
checked against what was asked to be expanded; fields added to Stripe after 2023-08-16 pass
(the schemas allow additional properties); the fixture check of other paths is by key and JSON
type only, and their requests are not checked at all (the cut describes no request of them).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import orjson

from tests import specs_harness
from tests.specs_harness import explain

SPECS = Path(__file__).resolve().parents[1] / "specs" / "stripe"
SPEC_FILE = SPECS / "spec3.billing-subset.json"
FIXTURES_FILE = SPECS / "fixtures3.HEAD-2026-08-21.json"
_URN = "urn:stripe-openapi"
_BRACKET = re.compile(r"\[([^\]]*)\]")
_ID = r"(/[^/]+(/[a-z_]+)?)?$"
_OBJECT_PATHS = [
    (re.compile(r"^/v1/products" + _ID), "product", True),
    (re.compile(r"^/v1/payment_intents" + _ID), "payment_intent", True),
    (re.compile(r"^/v1/charges" + _ID), "charge", True),
    (re.compile(r"^/v1/refunds" + _ID), "refund", True),
    (re.compile(r"^/v1/disputes" + _ID), "dispute", True),
    (re.compile(r"^/v1/checkout/sessions" + _ID), "checkout.session", True),
    (re.compile(r"^/v1/invoices/[^/]+/lines$"), "line_item", False),
    (re.compile(r"^/v1/invoices/[^/]+/mark_uncollectible$"), "invoice", False),
    (re.compile(r"^/v1/subscription_items(/[^/]+)?$"), "subscription_item", False),
]
"""Paths outside the cut -> the object type their answers hold, and whether Stripe's 2026
sample of it is compared too. Each object is checked against the description's schema of its
type where the cut has one (it has all but ``checkout.session``, as parts of invoices and
subscriptions); invoice lines and subscription items changed shape since 2023 (their 2026
samples lack ``type`` and ``proration``, which the 2023 schema requires), so they are checked
against the schema only."""


def _nullable(node: Any) -> Any:
    """The description with ``nullable`` but no ``type`` turned into ``anyOf [..., null]``."""
    if isinstance(node, list):
        return [_nullable(item) for item in node]
    if not isinstance(node, dict):
        return node
    fixed = {key: _nullable(value) for key, value in node.items()}
    if fixed.get("nullable") is True and None not in fixed.get("enum", [None]):
        fixed["enum"] = [*fixed["enum"], None]  # OAS 3.0.3: nullable adds null to the values
    if fixed.get("nullable") is True and "type" not in fixed:
        del fixed["nullable"]
        options = fixed.pop("anyOf", None) or fixed.pop("oneOf", None)
        if options is not None:
            fixed["anyOf"] = [*options, {"enum": [None]}]
    return fixed


@cache
def spec() -> dict[str, Any]:
    """The vendored description, ``nullable`` fixed (loaded once per test session)."""
    fixed: dict[str, Any] = _nullable(orjson.loads(SPEC_FILE.read_bytes()))
    return fixed


@cache
def fixtures() -> dict[str, Any]:
    """Stripe's sample objects by type (``customer``, ``charge``, ...)."""
    resources: dict[str, Any] = orjson.loads(FIXTURES_FILE.read_bytes())["resources"]
    return resources


@cache
def _openapi() -> Any:
    from openapi_core import OpenAPI

    return OpenAPI.from_dict(spec())


@cache
def _registry() -> Any:
    import referencing
    from referencing.jsonschema import DRAFT4

    resource = referencing.Resource(contents=spec(), specification=DRAFT4)
    return referencing.Registry().with_resource(_URN, resource)


def _pointer(*parts: str) -> str:
    return "/".join(part.replace("~", "~0").replace("/", "~1") for part in parts)


@cache
def _validator(pointer: str) -> Any:
    """An OAS 3.0 schema validator for the schema at ``pointer`` in the description."""
    from openapi_schema_validator import OAS30Validator

    return OAS30Validator({"$ref": f"{_URN}#/{pointer}"}, registry=_registry())


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        node: Any = spec()
        for part in schema["$ref"].removeprefix("#/").split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        schema = node
    return schema


@cache
def _templates() -> list[tuple[re.Pattern[str], str]]:
    """The described paths as patterns, literal paths first (``/search`` before ``{id}``)."""
    paths = sorted(spec()["paths"], key=lambda p: (p.count("{"), p))
    return [(re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", p) + "$"), p) for p in paths]


def template_of(path: str) -> str | None:
    """The described path template ``path`` matches, None when the cut lacks it."""
    for pattern, template in _templates():
        if pattern.match(path):
            return template
    return None


# --------------------------------------------------------------------------- decoding


def decode(text: str) -> dict[str, Any]:
    """Stripe's form encoding, decoded independently of the sandbox: ``a[b][0][c]=v``."""
    root: dict[str, Any] = {}
    for key, value in parse_qsl(text, keep_blank_values=True):
        name = key.split("[", 1)[0]
        path = [name, *_BRACKET.findall(key[len(name) :])]
        _place(root, path, value)
    return _listify(root)


def _place(node: dict[str, Any], path: list[str], value: str) -> None:
    for index, part in enumerate(path):
        if part == "":
            part = str(len(node))
        if index == len(path) - 1:
            node[part] = value
            return
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ValueError(f"{part!r} is both a value and a container")
        node = child


def _listify(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    items = {key: _listify(inner) for key, inner in value.items()}
    if items and sorted(items, key=lambda k: (len(k), k)) == [str(i) for i in range(len(items))]:
        return [items[str(i)] for i in range(len(items))]
    return items


def cast(value: Any, schema: dict[str, Any]) -> Any:
    """Form strings as the types ``schema`` names (Stripe casts each parameter the same way)."""
    schema = _resolve(schema)
    for option in schema.get("anyOf") or schema.get("oneOf") or ():
        candidate = cast(value, option)
        if not _problems_of(candidate, option):
            return candidate
    kind = schema.get("type")
    if isinstance(value, str):
        return _scalar(value, kind)
    if kind == "array" and isinstance(value, list):
        return [cast(item, schema.get("items") or {}) for item in value]
    if kind == "object" and isinstance(value, dict):
        properties = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        return {
            key: cast(inner, properties.get(key) or (extra if isinstance(extra, dict) else {}))
            for key, inner in value.items()
        }
    return value


def _scalar(value: str, kind: Any) -> Any:
    if kind == "integer" and re.fullmatch(r"-?\d+", value):
        return int(value)
    if kind == "number" and re.fullmatch(r"-?\d+(\.\d+)?", value):
        return float(value)
    if kind == "boolean" and value in ("true", "false"):
        return value == "true"
    return value


def _problems_of(value: Any, schema: dict[str, Any]) -> list[str]:
    from openapi_schema_validator import OAS30Validator

    validator = OAS30Validator(schema, registry=_registry())
    if "$ref" in schema:
        validator = _validator(schema["$ref"].removeprefix("#/"))
    return [error.message for error in validator.iter_errors(value)]


def _errors(value: Any, pointer: str, optional: set[str] | None = None) -> Iterator[str]:
    """The schema errors of ``value``; a missing field named in ``optional`` is no error."""
    for error in _validator(pointer).iter_errors(value):
        if error.validator == "required" and optional and not error.path:
            missing = set(error.validator_value) - set(value)
            if missing <= optional:
                continue
        yield explain(error)


# --------------------------------------------------------------------------- requests


def request_problems(
    method: str, path: str, query: str, body: bytes, content_type: str
) -> list[str]:
    """What in one request does not match the description (empty: it matches)."""
    template = template_of(path)
    if template is None:
        return []  # not in the cut: the answer is checked against the fixtures instead
    operation = spec()["paths"][template].get(method.lower())
    if operation is None:
        return [f"{method} {path}: the description has no {method} for {template}"]
    where = f"{method} {path}"
    try:
        problems = [f"{where}: {p}" for p in _query_problems(template, method, operation, query)]
        if method == "POST":
            found = _body_problems(template, operation, body, content_type)
            problems += [f"{where}: body {p}" for p in found]
        elif body:
            problems.append(f"{where}: a {method} carries a body")
    except (ValueError, UnicodeDecodeError) as exc:  # a key both a value and a container
        return [f"{where}: not Stripe's form encoding: {exc}"]
    return problems


def _query_problems(template: str, method: str, operation: dict[str, Any], query: str) -> list[str]:
    declared = {p["name"]: p for p in operation.get("parameters", []) if p["in"] == "query"}
    given = decode(query)
    problems = [f"unknown query parameter {name!r}" for name in given if name not in declared]
    for name, parameter in declared.items():
        if name not in given:
            if parameter.get("required"):
                problems.append(f"missing required query parameter {name!r}")
            continue
        index = operation["parameters"].index(parameter)
        pointer = _pointer("paths", template, method.lower(), "parameters", str(index), "schema")
        value = cast(given[name], parameter["schema"])
        problems += [f"query {name}: {p}" for p in _errors(value, pointer)]
    return problems


def _body_problems(
    template: str, operation: dict[str, Any], body: bytes, content_type: str
) -> list[str]:
    form = "application/x-www-form-urlencoded"
    content = (operation.get("requestBody") or {}).get("content") or {}
    if form not in content:
        return [] if not body else ["the description takes no body"]
    if body and not content_type.startswith(form):
        return [f"content type {content_type!r}, not {form}"]
    schema = content[form]["schema"]
    value = cast(decode(body.decode("utf-8")), schema)
    pointer = _pointer("paths", template, "post", "requestBody", "content", form, "schema")
    required = (operation.get("requestBody") or {}).get("required")
    if required and not body:
        return ["missing required body"]
    return list(_errors(value, pointer))


# --------------------------------------------------------------------------- answers


def response_problems(method: str, path: str, status: int, body: bytes) -> list[str]:
    """What in one answer does not match the description or Stripe's sample objects."""
    where = f"{method} {path} -> {status}"
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return [f"{where}: the answer is not JSON"]
    if status >= 400:
        return [f"{where}: {p}" for p in _errors(value, "components/schemas/error")]
    template = template_of(path)
    if template is not None:
        return [f"{where}: {p}" for p in _described_problems(method, path, status, body)]
    return [f"{where}: {p}" for p in fixture_problems(path, value)]


def _described_problems(method: str, path: str, status: int, body: bytes) -> list[str]:
    return specs_harness.response_problems(
        _openapi(), "https://api.stripe.com", method, path, status, body
    )


def fixture_problems(path: str, value: Any) -> list[str]:
    """For a path outside the cut: what in the answer (an object or a list of them) breaks
    the description's schema of its type, and which fields are missing from Stripe's sample
    of that type or have another JSON type there (``null`` on either side matches)."""
    found = next((entry for entry in _OBJECT_PATHS if entry[0].match(path)), None)
    if found is None:
        return [f"no description or sample object for {path}"]
    _, kind, compare = found
    objects = value["data"] if value.get("object") == "list" else [value]
    problems: list[str] = []
    for obj in objects:
        deleted = obj.get("deleted") is True
        name = f"deleted_{kind}" if deleted else kind
        sample = fixtures().get(name) or {}
        if name in spec()["components"]["schemas"]:
            gone = set() if not compare else _removed_since(name, sample)
            problems += list(_errors(obj, f"components/schemas/{name}", gone))
        if compare:
            problems += list(_shape(obj, sample, obj.get("object", kind)))
    return problems


def _removed_since(name: str, sample: dict[str, Any]) -> set[str]:
    """Fields the 2023 schema requires that Stripe's 2026 sample no longer has (renamed or
    removed since: ``product.features`` became ``marketing_features``)."""
    required = _resolve(spec()["components"]["schemas"][name]).get("required", [])
    return {field for field in required if field not in sample}


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return {str: "string", list: "array", dict: "object"}.get(type(value), "null")


def _shape(value: dict[str, Any], sample: dict[str, Any], where: str) -> Iterator[str]:
    for key, inner in value.items():
        if key not in sample:
            yield f"{where}.{key}: not a field of Stripe's {where.split('.')[0]} object"
            continue
        expected = sample[key]
        if inner is None or expected is None:
            continue
        if _json_type(inner) != _json_type(expected):
            yield f"{where}.{key}: {_json_type(inner)}, Stripe's sample has {_json_type(expected)}"
        elif isinstance(inner, dict) and inner.get("object") and expected.get("object"):
            yield from _shape(inner, expected, f"{where}.{key}")  # an embedded Stripe object


class SpecValidator:
    """The sandbox's ``validator``: checks every request and answer, keeps the mismatches."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self.checked = 0

    def request(self, method: str, path: str, query: str, body: bytes, content_type: str) -> None:
        """Check one request."""
        self.checked += 1
        self.problems += request_problems(method, path, query, body, content_type)

    def response(self, method: str, path: str, status: int, body: bytes) -> None:
        """Check one answer."""
        self.checked += 1
        self.problems += response_problems(method, path, status, body)
