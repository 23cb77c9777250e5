"""Check one request or answer against a provider's OpenAPI description with openapi-core.

Shared by the spec checks of the sandboxes (``tests/stripe/spec.py``, ``tests/openai/spec.py``):
each loads its description once per session and hands this module an ``openapi_core.OpenAPI``;
this module turns openapi-core's exceptions into one ``path: reason`` line per innermost
schema error (an ``anyOf`` failure lists why each of its branches failed), so a mismatch reads
as what is wrong and where.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any


def explain(error: Any) -> str:
    """``path: message`` of the innermost reasons of a jsonschema error."""
    leaves = [error]
    while any(leaf.context for leaf in leaves):
        leaves = [inner for leaf in leaves for inner in (leaf.context or [leaf])]
    reasons = dict.fromkeys(
        f"{'/'.join(str(p) for p in leaf.absolute_path) or '(root)'}: {leaf.message[:200]}"
        for leaf in leaves
    )
    return " | ".join(list(reasons)[:4])


def _problems(check: Callable[[], object]) -> list[str]:
    """What ``check`` (an openapi-core validation) reports, one line per reason."""
    try:
        check()
    except Exception as exc:  # openapi-core wraps the schema errors in its own exceptions
        cause = exc.__cause__
        errors = getattr(cause, "schema_errors", None) or []
        details = [explain(error) for error in errors]
        return details or [f"{type(exc).__name__}: {exc}" + (f" ({cause})" if cause else "")]
    return []


def request_problems(
    openapi: Any,
    host_url: str,
    method: str,
    path: str,
    *,
    query: Mapping[str, str] | None = None,
    body: bytes | None = None,
    content_type: str = "application/json",
    headers: Mapping[str, str] | None = None,
) -> list[str]:
    """What in one request breaks the description (empty: it matches)."""
    from openapi_core.testing import MockRequest

    request = MockRequest(
        host_url,
        method.lower(),
        path,
        args=dict(query or {}),
        data=body,
        headers=dict(headers or {}),
        content_type=content_type,
    )
    return _problems(lambda: openapi.validate_request(request))


def response_problems(
    openapi: Any,
    host_url: str,
    method: str,
    path: str,
    status: int,
    body: bytes,
    *,
    content_type: str = "application/json",
    headers: Mapping[str, str] | None = None,
) -> list[str]:
    """What in one answer (status, content type, headers, body) breaks the description."""
    from openapi_core.testing import MockRequest, MockResponse

    request = MockRequest(host_url, method.lower(), path)
    response = MockResponse(
        body, status_code=status, content_type=content_type, headers=dict(headers or {})
    )
    return _problems(lambda: openapi.validate_response(request, response))
