"""The sandbox's OAuth server as Intuit's: failure documents, RS256 id_tokens verified against
its own JWKS, the refresh token's hard expiry, userinfo and the discovery document."""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from plugins.quickbooks.sandbox import HARD_EXPIRY_HEADER, STATE_KEY, create_app
from tests.quickbooks.test_sandbox import (
    ACCOUNTING,
    REALM,
    REDIRECT,
    START,
    authorize,
    basic,
    make_config,
    specs_dir,
    token_call,
)

Client = TestClient[web.Request, web.Application]
FIVE_YEARS = 157_680_000


def sample(name: str) -> dict[str, Any]:
    """One of Intuit's OAuth documents (``specs/intuit/oauth``)."""
    loaded: dict[str, Any] = json.loads((specs_dir() / "oauth" / f"{name}.json").read_text())
    return loaded


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


async def get_json(client: Client, url: str, **headers: str) -> tuple[int, Any]:
    async with client.get(url, headers=headers) as response:
        return response.status, await response.json()


async def verify(client: Client, token: str) -> dict[str, Any]:
    """The claims of ``token`` once its RS256 signature checks out against the key of its
    ``kid`` in the JWKS that the discovery document names (``cryptography`` only)."""
    _, discovery = await get_json(client, "/.well-known/openid_configuration")
    _, jwks = await get_json(client, urlsplit(discovery["jwks_uri"]).path)
    header_b64, claims_b64, signature_b64 = token.split(".")
    header = json.loads(unb64(header_b64))
    assert header == {"kid": header["kid"], "alg": "RS256"}
    (key,) = [k for k in jwks["keys"] if k["kid"] == header["kid"]]
    assert (key["kty"], key["alg"], key["use"]) == ("RSA", "RS256", "sig")
    numbers = rsa.RSAPublicNumbers(
        int.from_bytes(unb64(key["e"]), "big"), int.from_bytes(unb64(key["n"]), "big")
    )
    public = numbers.public_key()
    signed = f"{header_b64}.{claims_b64}".encode()
    public.verify(unb64(signature_b64), signed, padding.PKCS1v15(), hashes.SHA256())
    with pytest.raises(InvalidSignature):  # the same signature does not cover other claims
        public.verify(unb64(signature_b64), signed + b"x", padding.PKCS1v15(), hashes.SHA256())
    claims: dict[str, Any] = json.loads(unb64(claims_b64))
    assert claims["iss"] == discovery["issuer"]
    return claims


@pytest.fixture
async def client(aiohttp_client: Callable[..., Awaitable[Client]]) -> Client:
    return await aiohttp_client(create_app(make_config()))


async def post_token(
    client: Client, form: dict[str, str], headers: dict[str, str]
) -> tuple[int, Any]:
    """The token endpoint's status and answer, with the app's credentials and ``headers``."""
    config = client.app[STATE_KEY].config
    async with client.post(
        "/oauth2/v1/tokens/bearer", data=form, headers={**basic(config), **headers}
    ) as response:
        return response.status, await response.json()


async def code_grant(client: Client, scope: str, **headers: str) -> tuple[int, Any]:
    redirect = await authorize(client, scope)
    form = {"grant_type": "authorization_code", "code": redirect["code"], "redirect_uri": REDIRECT}
    return await post_token(client, form, headers)


async def refresh_grant(client: Client, token: str, **headers: str) -> tuple[int, Any]:
    form = {"grant_type": "refresh_token", "refresh_token": token}
    return await post_token(client, form, headers)


# --------------------------------------------------------------------------- id_token


async def test_openid_grants_get_an_rs256_id_token_that_verifies_against_the_jwks(
    client: Client,
) -> None:
    state = client.app[STATE_KEY]
    status, body = await code_grant(client, f"{ACCOUNTING} openid email")
    assert status == 200 and set(body) == set(sample("success_token_response"))
    claims = await verify(client, body["id_token"])
    start = int(START.timestamp())
    assert claims["aud"] == [state.config.client_id] and claims["realmid"] == REALM
    assert (claims["iat"], claims["auth_time"], claims["exp"]) == (start, start, start + 3600)
    assert set(claims) == set(
        json.loads(unb64(sample("success_refreshtoken_response")["id_token"].split(".")[1]))
    )
    state.advance_clock(600)
    status, again = await refresh_grant(client, body["refresh_token"])
    assert status == 200 and set(again) == set(sample("success_refreshtoken_response"))
    renewed = await verify(client, again["id_token"])
    assert renewed["sub"] == claims["sub"] and renewed["auth_time"] == start
    assert renewed["iat"] == start + 600
    _, userinfo = await get_json(
        client, "/v1/openid_connect/userinfo", Authorization=f"Bearer {again['access_token']}"
    )
    assert userinfo["sub"] == claims["sub"] and userinfo["emailVerified"] is True
    assert set(userinfo) <= set(sample("success_userinfo_response"))


async def test_userinfo_needs_a_live_openid_token(client: Client) -> None:
    _, plain = await code_grant(client, ACCOUNTING)
    assert "id_token" not in plain
    status, body = await get_json(
        client, "/v1/openid_connect/userinfo", Authorization=f"Bearer {plain['access_token']}"
    )
    assert (status, body["error"]) == (403, "insufficient_scope")
    status, body = await get_json(client, "/v1/openid_connect/userinfo", Authorization="Bearer x")
    assert (status, body["error"]) == (401, "invalid_token")


# --------------------------------------------------------------------------- hard expiry


async def test_hard_expiry_is_answered_when_asked_and_counts_from_the_first_grant(
    client: Client,
) -> None:
    state = client.app[STATE_KEY]
    status, body = await code_grant(client, ACCOUNTING)
    assert status == 200 and "x_refresh_token_hard_expires_in" not in body
    state.advance_clock(1000)
    status, body = await refresh_grant(
        client, body["refresh_token"], **{HARD_EXPIRY_HEADER: "true"}
    )
    assert status == 200 and body["x_refresh_token_hard_expires_in"] == FIVE_YEARS - 1000
    assert body["x_refresh_token_expires_in"] == state.config.refresh_token_lifetime
    _, fresh = await code_grant(client, ACCOUNTING, **{HARD_EXPIRY_HEADER: "TRUE"})
    assert fresh["x_refresh_token_hard_expires_in"] == FIVE_YEARS  # a new grant starts anew
    _, asked_false = await refresh_grant(
        client, fresh["refresh_token"], **{HARD_EXPIRY_HEADER: "false"}
    )
    assert "x_refresh_token_hard_expires_in" not in asked_false


async def test_the_rolling_expiry_never_passes_the_hard_one(
    aiohttp_client: Callable[..., Awaitable[Client]],
) -> None:
    client = await aiohttp_client(create_app(make_config(refresh_token_max_age=5000)))
    state = client.app[STATE_KEY]
    first = state.issue_tokens(REALM)
    assert (first.x_refresh_token_expires_in, first.x_refresh_token_hard_expires_in) == (5000, 5000)
    state.advance_clock(4000)
    status, body = await refresh_grant(client, first.refresh_token, **{HARD_EXPIRY_HEADER: "true"})
    assert status == 200
    assert (body["x_refresh_token_expires_in"], body["x_refresh_token_hard_expires_in"]) == (
        1000,
        1000,
    )
    state.advance_clock(1001)
    assert await refresh_grant(client, body["refresh_token"]) == (
        400,
        {"error": "invalid_grant", "error_description": "The refresh token has expired"},
    )


# --------------------------------------------------------------------------- failures


async def test_token_failures_carry_error_description_as_intuits_document(client: Client) -> None:
    failure = set(sample("failure_token_response"))
    state = client.app[STATE_KEY]
    refresh = state.issue_tokens(REALM).refresh_token
    cases: list[tuple[dict[str, str], str, int, str]] = [
        ({"grant_type": "refresh_token", "refresh_token": refresh}, "wrong", 401, "invalid_client"),
        ({"grant_type": "password"}, "", 400, "unsupported_grant_type"),
        ({"grant_type": "refresh_token", "refresh_token": "nope"}, "", 400, "invalid_grant"),
        ({"grant_type": "authorization_code", "code": "nope"}, "", 400, "invalid_grant"),
    ]
    for form, secret, status, error in cases:
        got_status, body = await token_call(client, form, secret)
        assert (got_status, body["error"]) == (status, error)
        assert set(body) == failure and body["error_description"]
    _, rotated = await refresh_grant(client, refresh)
    _, body = await refresh_grant(client, refresh)
    assert body["error_description"] == "The refresh token was rotated: use the latest one"
    headers = {**basic(state.config, "wrong"), "Content-Type": "application/json"}
    payload = json.dumps({"token": rotated["refresh_token"]})
    async with client.post("/v2/oauth2/tokens/revoke", data=payload, headers=headers) as response:
        assert response.status == 401
        assert set(await response.json()) == set(sample("failure_token_revocation_response"))


# --------------------------------------------------------------------------- discovery


async def test_discovery_names_intuits_keys_and_paths_and_each_is_served(client: Client) -> None:
    intuit = sample("discovery")
    _, ours = await get_json(client, "/.well-known/openid_sandbox_configuration/")
    assert set(ours) == set(intuit)
    origin = str(client.make_url("/")).rstrip("/")
    for key, value in intuit.items():
        if isinstance(value, str):
            assert ours[key] == origin + urlsplit(value).path, key
        else:
            assert ours[key] == value, key
    for key in ("jwks_uri", "userinfo_endpoint", "token_endpoint", "revocation_endpoint"):
        async with client.request("GET", urlsplit(ours[key]).path) as response:
            assert response.status != 404, key
