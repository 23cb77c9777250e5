"""The OpenAI sandbox's "model": an instance of the requested JSON schema, made deterministically.

Structured outputs (``text.format`` / ``response_format`` of type ``json_schema``) make the real
model answer JSON conforming to the schema. The sandbox builds such an instance from the schema
alone — objects with every property (strict mode requires them all), the first non-null branch
of an ``anyOf`` / ``oneOf``, the first ``enum`` value, ``$ref`` into ``$defs`` /
``definitions`` as pydantic emits them, bounds and lengths respected — and fills in values the
input text states as ``label: value`` lines (``Total: 1,250.00`` for a property ``total``), so a
test can make the "model" read figures from a document.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

JSON = dict[str, Any]

_MAX_DEPTH = 12
"""Recursive schemas (a ``$ref`` to an enclosing definition) stop here with their null or
empty form."""
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
_FORMATS = {
    "date": "2025-12-31",
    "date-time": "2025-12-31T00:00:00Z",
    "time": "00:00:00",
    "email": "client@example.com",
    "uri": "https://example.com/",
    "uuid": "00000000-0000-4000-8000-000000000000",
}


class SchemaError(ValueError):
    """A schema the sandbox cannot answer (a ``$ref`` to nowhere, a keyword of the wrong
    type)."""


def instance(schema: Mapping[str, Any], text: str = "") -> Any:
    """A value conforming to ``schema`` (a JSON schema with optional ``$defs``); properties the
    ``text`` states as ``label: value`` lines take that value."""
    try:
        return _Builder(schema, _facts(text)).build(schema, "", 0)
    except (AttributeError, TypeError, KeyError, IndexError, ValueError) as exc:
        raise SchemaError(f"the schema cannot be followed ({type(exc).__name__}: {exc})") from exc


def without_first_required(value: Any, schema: Mapping[str, Any]) -> Any:
    """``value`` minus the first property the schema's root object requires (a "model" answer
    that breaks the schema); ``value`` itself when the root requires nothing."""
    builder = _Builder(schema, {})
    root = builder.resolve(schema)
    required = root.get("required") or []
    if not isinstance(value, dict) or not required:
        return value
    return {key: inner for key, inner in value.items() if key != required[0]}


def _facts(text: str) -> dict[str, str]:
    """``label: value`` lines of ``text``, labels lower-cased with spaces and dashes as
    underscores."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        label, sep, value = line.partition(":")
        key = re.sub(r"[\s\-]+", "_", label.strip().lower())
        if sep and key and value.strip() and len(key) <= 64:
            found.setdefault(key, value.strip())
    return found


class _Builder:
    """Walks one schema; ``root`` holds the definitions its ``$ref`` point into."""

    def __init__(self, root: Mapping[str, Any], facts: Mapping[str, str]) -> None:
        self.root = root
        self.facts = facts

    def resolve(self, schema: Mapping[str, Any]) -> Mapping[str, Any]:
        """``schema`` with its ``$ref`` (a local JSON pointer) followed."""
        seen = 0
        while "$ref" in schema and seen < _MAX_DEPTH:
            node: Any = self.root
            for part in str(schema["$ref"]).removeprefix("#").strip("/").split("/"):
                if part:
                    node = node[part.replace("~1", "/").replace("~0", "~")]
            schema = node
            seen += 1
        return schema

    def build(self, schema: Mapping[str, Any], name: str, depth: int) -> Any:
        """A value for ``schema`` at property ``name``."""
        schema = self.resolve(schema)
        if depth > _MAX_DEPTH:
            return None
        if "const" in schema:
            return schema["const"]
        if schema.get("enum"):
            return self._enum(schema["enum"], name)
        for key in ("anyOf", "oneOf"):
            if schema.get(key):
                return self.build(self._branch(schema[key]), name, depth + 1)
        if schema.get("allOf"):
            merged: JSON = {}
            for part in schema["allOf"]:
                merged = _merge(merged, self.resolve(part))
            return self.build(merged, name, depth + 1)
        kind = _kind(schema)
        if kind == "object":
            return self._object(schema, depth)
        if kind == "array":
            return self._array(schema, name, depth)
        return self._scalar(kind, schema, name)

    def _branch(self, options: list[Any]) -> Mapping[str, Any]:
        """The first non-null branch (the first branch when all are null)."""
        resolved = [self.resolve(option) for option in options]
        concrete = [option for option in resolved if _kind(option) != "null"]
        return concrete[0] if concrete else resolved[0]

    def _enum(self, values: list[Any], name: str) -> Any:
        stated = self.facts.get(name, "").lower()
        for value in values:
            if stated and str(value).lower() == stated:
                return value
        return next((value for value in values if value is not None), values[0])

    def _object(self, schema: Mapping[str, Any], depth: int) -> JSON:
        properties: Mapping[str, Any] = schema.get("properties") or {}
        return {key: self.build(inner, key, depth + 1) for key, inner in properties.items()}

    def _array(self, schema: Mapping[str, Any], name: str, depth: int) -> list[Any]:
        # one item where the schema allows none, except deep down (a recursive schema ends)
        count = max(int(schema.get("minItems", 0)), 1 if depth < _MAX_DEPTH // 2 else 0)
        if "maxItems" in schema:
            count = min(count, int(schema["maxItems"]))
        items = schema.get("items") or {}
        return [self.build(items, name, depth + 1) for _ in range(count)]

    def _scalar(self, kind: str, schema: Mapping[str, Any], name: str) -> Any:
        stated = self.facts.get(name)
        if kind in ("number", "integer"):
            return _number(kind, schema, stated)
        if kind == "boolean":
            return stated is not None and stated.lower() in ("yes", "true", "y", "1")
        if kind == "null":
            return None
        return _string(schema, name, stated)


def _kind(schema: Mapping[str, Any]) -> str:
    """The schema's type: the first non-null one of a list; object/array inferred from their
    keywords; string otherwise."""
    kind = schema.get("type")
    if isinstance(kind, list):
        concrete = [k for k in kind if k != "null"]
        kind = concrete[0] if concrete else "null"
    if isinstance(kind, str):
        return kind
    if "properties" in schema:
        return "object"
    if "items" in schema:
        return "array"
    return "string"


def _merge(left: Mapping[str, Any], right: Mapping[str, Any]) -> JSON:
    merged = dict(left)
    for key, value in right.items():
        if key == "properties":
            merged[key] = {**merged.get(key, {}), **value}
        elif key == "required":
            merged[key] = [*merged.get(key, []), *value]
        else:
            merged[key] = value
    return merged


def _number(kind: str, schema: Mapping[str, Any], stated: str | None) -> int | float:
    low = schema.get("minimum", schema.get("exclusiveMinimum"))
    high = schema.get("maximum", schema.get("exclusiveMaximum"))
    value: float
    found = _NUMBER.search(stated or "")
    if found is not None:
        value = float(found.group().replace(",", ""))
    elif low is not None and high is not None:
        value = (float(low) + float(high)) / 2
    elif low is not None:
        value = float(low) + (1 if "exclusiveMinimum" in schema else 0)
    elif high is not None:
        value = min(0.0, float(high) - (1 if "exclusiveMaximum" in schema else 0))
    else:
        value = 0.0
    if low is not None:
        value = max(value, float(low))
    if high is not None:
        value = min(value, float(high))
    if kind == "integer":
        return math.floor(value)
    return value


def _string(schema: Mapping[str, Any], name: str, stated: str | None) -> str:
    text = stated or _FORMATS.get(str(schema.get("format")), f"sample {name or 'text'}")
    least = int(schema.get("minLength", 0))
    most = schema.get("maxLength")
    text = text.ljust(least, "x")
    return text[: int(most)] if most is not None else text
