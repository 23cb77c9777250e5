"""Logging: secrets redacted by key and by pattern, JSON lines, connection context in syncs."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
import structlog

from hub import hookimpl
from hub.logs import (
    REDACTED,
    add_secret_keys,
    configure_logging,
    is_secret_key,
    redact,
    redact_text,
)
from hub.model import Batch, Integration, Stream

log = structlog.get_logger("tests.logs")


@pytest.fixture
def json_log():
    """Configure JSON logging into a buffer; restore the previous configuration afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    config = structlog.get_config()
    buffer = io.StringIO()
    configure_logging(level="debug", fmt="json", stream=buffer)

    def lines() -> list[dict[str, Any]]:
        return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]

    yield lines
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.configure(**config)


# --------------------------------------------------------------------------- redact()


@pytest.mark.parametrize(
    "key",
    [
        "token",
        "access_token",
        "refreshToken",
        "secret",
        "client_secret",
        "password",
        "api_key",
        "apiKey",
        "Authorization",
        "connection_string",
        "private_key",
    ],
)
def test_secret_keys_are_masked(key: str):
    assert redact({key: "value-123", "name": "Acme"}) == {key: REDACTED, "name": "Acme"}


def test_secret_keys_are_masked_at_any_depth():
    value = {
        "company": {
            "name": "Acme",
            "oauth": {"access_token": "at-1", "expires_in": 3600},
            "users": [{"email": "a@example.com", "password": "hunter2"}],
        },
        "headers": [("Authorization", "x")],
        "client_secret": "cs-1",
    }
    assert redact(value) == {
        "company": {
            "name": "Acme",
            "oauth": {"access_token": REDACTED, "expires_in": 3600},
            "users": [{"email": "a@example.com", "password": REDACTED}],
        },
        "headers": [["Authorization", "x"]],
        "client_secret": REDACTED,
    }


def test_very_deep_values_do_not_leak():
    deep: dict[str, Any] = {"api_key": "deep-secret-value", "note": "Bearer abcdefghijklmnop"}
    for level in range(20):
        deep = {f"level{level}": deep}
    text = json.dumps(redact(deep))
    assert "deep-secret-value" not in text
    assert "abcdefghijklmnop" not in text

    nested: dict[str, Any] = {"name": "Acme", "token": "t0k3n"}
    for level in range(12):  # provider payloads this deep are kept, still redacted
        nested = {f"level{level}": nested}
    kept = redact(nested)
    for level in reversed(range(12)):
        kept = kept[f"level{level}"]
    assert kept == {"name": "Acme", "token": REDACTED}


def test_secret_patterns_inside_strings():
    text = (
        "GET /v1 with Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig failed; "
        "stripe key sk_live_51HqLyjWDarjtT1zdp7dc, test key sk_test_4eC39HqLyjWDarjtT1zdp7dc, "
        "webhook whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw, "
        "sendgrid 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, "
        "azure AccountKey=Zm9vYmFyYmF6cXV4;EndpointSuffix=core.windows.net, "
        "redirect ?code=abc123&state=xyz and Basic dXNlcjpwYXNzd29yZA=="
    )
    masked = redact_text(text)
    for secret in (
        "eyJhbGciOiJIUzI1NiJ9",
        "51HqLyjWDarjtT1zdp7dc",
        "4eC39HqLyjWDarjtT1zdp7dc",
        "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "ngeVfQFYQlKU0ufo8x5d1A",
        "Zm9vYmFyYmF6cXV4",
        "abc123",
        "dXNlcjpwYXNzd29yZA",
    ):
        assert secret not in masked, secret
    assert "Bearer ***" in masked
    assert "EndpointSuffix=core.windows.net" in masked
    assert "state=xyz" in masked
    assert redact({"message": text})["message"] == masked
    assert redact(["sk_live_51HqLyjWDarjtT1zdp7dc"]) == ["sk_***"]


def test_ordinary_values_are_left_alone():
    value = {
        "name": "Acme Books",
        "amount": "1250.00",
        "count": 3,
        "ok": True,
        "missing": None,
        "url": "https://api.example.com/v1/items?limit=100",
        "description": "Skiing lessons for the team (bearer bonds)",
        "items": [1, 2.5, "three"],
        "keyboard": "qwerty",
    }
    assert redact(value) == value


def test_empty_secret_values_stay_visible():
    # an absent secret is useful to see when debugging ("token": "" vs "***")
    assert redact({"token": "", "secret": None}) == {"token": "", "secret": None}


def test_plugin_declared_secret_fields_are_masked(monkeypatch):
    monkeypatch.setattr("hub.logs._extra_secret_keys", set())
    assert redact({"realm_pem": "-----BEGIN-----"}) == {"realm_pem": "-----BEGIN-----"}
    add_secret_keys({"Realm_PEM"})
    assert redact({"realm_pem": "-----BEGIN-----"}) == {"realm_pem": REDACTED}


# --------------------------------------------------------------------------- JSON output


def test_json_lines_are_valid_and_redacted(json_log):
    log.info(
        "token refreshed",
        access_token="at-very-secret",
        payload={"company": {"realm": "123", "refresh_token": "rt-very-secret"}, "n": 2},
        note="sent Bearer abcdefghijklmnopqrstuvwxyz",
    )
    (line,) = [entry for entry in json_log() if entry["event"] == "token refreshed"]
    assert line["access_token"] == REDACTED
    assert line["payload"] == {"company": {"realm": "123", "refresh_token": REDACTED}, "n": 2}
    assert line["note"] == "sent Bearer ***"
    assert line["level"] == "info" and line["logger"] == "tests.logs" and "timestamp" in line
    raw = json.dumps(json_log())
    assert "very-secret" not in raw and "abcdefghijklmnop" not in raw


def test_stdlib_loggers_go_through_the_same_redaction(json_log):
    logging.getLogger("some.lib").warning("calling with Bearer abcdefghijklmnopq")
    (line,) = [entry for entry in json_log() if entry["logger"] == "some.lib"]
    assert line["event"] == "calling with Bearer ***"
    assert line["level"] == "warning"


def test_exceptions_are_rendered_and_redacted(json_log):
    try:
        raise RuntimeError("upstream said sk_live_51HqLyjWDarjtT1zdp7dc is invalid")
    except RuntimeError:
        log.exception("call failed")
    (line,) = [entry for entry in json_log() if entry["event"] == "call failed"]
    assert "RuntimeError" in line["exception"]
    assert "51HqLyjWDarjtT1zdp7dc" not in line["exception"]


# --------------------------------------------------------------------------- sync context


class Chatty:
    """Logs from inside its sync hook, as plugins do."""

    @hookimpl
    def register(self) -> Integration:
        return Integration(name="chatty", title="Chatty", streams=(Stream("notes"),))

    @hookimpl
    async def sync(self) -> AsyncIterator[Batch]:
        structlog.get_logger("plugin.chatty").info("fetched page", page=1)
        yield Batch("notes", [{"id": "1"}], cursor={"page": 1})


async def test_lines_inside_a_sync_carry_integration_and_connection(make_hub, json_log):
    hub = await make_hub(plugins=[Chatty()])
    await hub.add_connection("chatty", "acct", "Acct", {"token": "t"}, origin="test")
    result = await hub.engine.run("chatty:acct", trigger="test")
    assert result.state == "succeeded", result.error

    entries = json_log()
    during = [
        e for e in entries if e["event"] in {"sync started", "fetched page", "sync completed"}
    ]
    assert [e["event"] for e in during] == ["sync started", "fetched page", "sync completed"]
    for entry in during:
        assert entry["integration"] == "chatty"
        assert entry["connection"] == "chatty:acct"
        assert entry["run"] == result.run_id
    # outside the run the context is gone again
    log.info("after the sync")
    (after,) = [e for e in json_log() if e["event"] == "after the sync"]
    assert "connection" not in after and "integration" not in after


async def test_capture_logs_sees_the_context(make_hub):
    hub = await make_hub(plugins=[Chatty()])
    await hub.add_connection("chatty", "acct", "Acct", {}, origin="test")
    with structlog.testing.capture_logs(
        processors=[structlog.contextvars.merge_contextvars]
    ) as captured:
        await hub.engine.run("chatty:acct", trigger="test")
    (fetched,) = [c for c in captured if c["event"] == "fetched page"]
    assert (fetched["integration"], fetched["connection"]) == ("chatty", "chatty:acct")


@pytest.mark.parametrize("key", ["prompt_tokens", "max_tokens", "token_type", "passed", "tokens"])
def test_counts_and_flags_that_merely_mention_tokens_are_not_masked(key):
    assert not is_secret_key(key)
    assert redact({key: 1234}) == {key: 1234}


@pytest.mark.parametrize("key", ["refreshToken", "AccountKey", "clientSecret", "X-Auth-Token"])
def test_camel_case_and_header_style_secret_names_are_masked(key):
    assert is_secret_key(key)


def test_console_tracebacks_are_redacted_too():
    out = io.StringIO()
    configure_logging("info", "console", stream=out)
    try:
        raise RuntimeError("provider said: Authorization: Bearer sk_live_abcdefghijklmnop1234")
    except RuntimeError:
        structlog.get_logger("hub.test").exception("health hook raised")
    text = out.getvalue()
    assert "health hook raised" in text and "RuntimeError" in text
    assert "abcdefghijklmnop1234" not in text


class Leaky:
    """Fails its sync with a provider answer that quotes a token."""

    @hookimpl
    def register(self) -> Integration:
        return Integration(name="leaky", title="Leaky", streams=(Stream("notes"),))

    @hookimpl
    async def sync(self) -> AsyncIterator[Batch]:
        raise RuntimeError("401 from provider: access_token=abcdefghijklmnop1234 expired")
        yield Batch("notes", [])  # pragma: no cover (makes this an async generator)


async def test_a_failed_runs_stored_error_is_redacted(make_hub):
    hub = await make_hub(plugins=[Leaky()])
    await hub.add_connection("leaky", "acct", "Acct", {}, origin="test")
    result = await hub.engine.run("leaky:acct", trigger="test")
    assert result.state == "failed"
    stored = await hub.store.runs.get(result.run_id)
    assert "access_token=" in stored["error"]
    assert "abcdefghijklmnop1234" not in stored["error"]
