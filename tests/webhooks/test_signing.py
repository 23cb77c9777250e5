"""Tests of hub.webhooks.signing: the Standard Webhooks scheme, against the official vector."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.errors import SignatureError
from hub.webhooks import signing

from .standard_webhooks_ref import (
    ReferenceVerificationError,
    reference_signature,
    reference_verify,
)

# The official test vector: standard-webhooks/standard-webhooks,
# libraries/python/tests/test_webhooks.py::test_sign_function (also used by the other
# reference libraries and Svix).
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TS = 1614265330
VECTOR_BODY = b'{"test": 2432232314}'
VECTOR_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

NOW = 1_700_000_000
BODY = b'{"type":"stripe.invoice.paid","data":{"id":"in_1"}}'


def vector_headers() -> dict[str, str]:
    """The official vector as received headers."""
    return {
        "webhook-id": VECTOR_ID,
        "webhook-timestamp": str(VECTOR_TS),
        "webhook-signature": VECTOR_SIGNATURE,
    }


def test_sign_matches_the_official_vector() -> None:
    assert signing.sign(VECTOR_SECRET, VECTOR_ID, VECTOR_TS, VECTOR_BODY) == VECTOR_SIGNATURE
    # the prefix is optional, as in the reference libraries
    assert signing.sign(VECTOR_SECRET[6:], VECTOR_ID, VECTOR_TS, VECTOR_BODY) == VECTOR_SIGNATURE


def test_verify_accepts_the_official_vector() -> None:
    signing.verify(VECTOR_SECRET, vector_headers(), VECTOR_BODY, now=VECTOR_TS)
    signing.verify(VECTOR_SECRET, vector_headers(), VECTOR_BODY, now=VECTOR_TS + 300)
    signing.verify(VECTOR_SECRET, vector_headers(), VECTOR_BODY, now=VECTOR_TS - 300)


def test_reference_verifier_accepts_the_official_vector() -> None:
    assert (
        reference_signature(VECTOR_SECRET, VECTOR_ID, str(VECTOR_TS), VECTOR_BODY)
        == (VECTOR_SIGNATURE[3:])
    )
    assert reference_verify(VECTOR_SECRET, vector_headers(), VECTOR_BODY, now=VECTOR_TS) == (
        VECTOR_ID
    )
    with pytest.raises(ReferenceVerificationError):
        reference_verify(VECTOR_SECRET, vector_headers(), VECTOR_BODY + b" ", now=VECTOR_TS)


def test_the_vector_is_rejected_when_re_serialised() -> None:
    """Re-encoding the JSON (no space after the colon) must break the signature."""
    with pytest.raises(SignatureError, match="no matching"):
        signing.verify(VECTOR_SECRET, vector_headers(), b'{"test":2432232314}', now=VECTOR_TS)


def test_new_secret_format() -> None:
    secrets = {signing.new_secret() for _ in range(20)}
    assert len(secrets) == 20
    for secret in secrets:
        assert secret.startswith("whsec_")
        key = base64.b64decode(secret[len("whsec_") :], validate=True)
        assert 24 <= len(key) <= 32


def test_headers_round_trip_with_hub_and_reference_verifiers() -> None:
    secret = signing.new_secret()
    sent = signing.headers(secret, "msg_1", NOW, BODY)
    assert set(sent) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    assert sent["webhook-id"] == "msg_1"
    assert sent["webhook-timestamp"] == str(NOW)
    assert sent["webhook-signature"].startswith("v1,")
    signing.verify(secret, sent, BODY, now=NOW)
    assert reference_verify(secret, sent, BODY, now=NOW) == "msg_1"


def test_header_names_are_case_insensitive() -> None:
    secret = signing.new_secret()
    sent = {name.title(): value for name, value in signing.headers(secret, "m", NOW, BODY).items()}
    assert "Webhook-Signature" in sent
    signing.verify(secret, sent, BODY, now=NOW)


def test_default_now_is_the_current_time() -> None:
    import time

    secret = signing.new_secret()
    signing.verify(secret, signing.headers(secret, "m", int(time.time()), BODY), BODY)
    with pytest.raises(SignatureError, match="too old"):
        signing.verify(secret, signing.headers(secret, "m", int(time.time()) - 1000, BODY), BODY)


def test_tampered_body_is_rejected() -> None:
    secret = signing.new_secret()
    sent = signing.headers(secret, "msg_1", NOW, BODY)
    with pytest.raises(SignatureError, match="no matching"):
        signing.verify(secret, sent, BODY.replace(b"in_1", b"in_2"), now=NOW)
    with pytest.raises(SignatureError):
        signing.verify(secret, sent, b"", now=NOW)


def test_tampered_timestamp_and_id_are_rejected() -> None:
    secret = signing.new_secret()
    sent = signing.headers(secret, "msg_1", NOW, BODY)
    with pytest.raises(SignatureError, match="no matching"):
        signing.verify(secret, {**sent, "webhook-timestamp": str(NOW + 1)}, BODY, now=NOW)
    with pytest.raises(SignatureError, match="no matching"):
        signing.verify(secret, {**sent, "webhook-id": "msg_2"}, BODY, now=NOW)


def test_wrong_secret_is_rejected() -> None:
    sent = signing.headers(signing.new_secret(), "msg_1", NOW, BODY)
    with pytest.raises(SignatureError, match="no matching"):
        signing.verify(signing.new_secret(), sent, BODY, now=NOW)


def test_timestamp_outside_tolerance_is_rejected() -> None:
    secret = signing.new_secret()
    sent = signing.headers(secret, "msg_1", NOW, BODY)
    signing.verify(secret, sent, BODY, now=NOW + 300)
    with pytest.raises(SignatureError, match="too old"):
        signing.verify(secret, sent, BODY, now=NOW + 301)
    with pytest.raises(SignatureError, match="too new"):
        signing.verify(secret, sent, BODY, now=NOW - 301)
    signing.verify(secret, sent, BODY, tolerance_s=1000, now=NOW + 900)
    with pytest.raises(SignatureError, match="too old"):
        signing.verify(secret, sent, BODY, tolerance_s=10, now=NOW + 11)


@pytest.mark.parametrize("value", ["", "hello", "1.5", "-1", "+1700000000", " 1700000000", "1e9"])
def test_malformed_timestamp_is_rejected(value: str) -> None:
    secret = signing.new_secret()
    sent = {**signing.headers(secret, "msg_1", NOW, BODY), "webhook-timestamp": value}
    with pytest.raises(SignatureError):
        signing.verify(secret, sent, BODY, now=NOW)


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_missing_or_empty_header_is_rejected(missing: str) -> None:
    secret = signing.new_secret()
    sent = signing.headers(secret, "msg_1", NOW, BODY)
    without = {name: value for name, value in sent.items() if name != missing}
    with pytest.raises(SignatureError, match=f"missing webhook header.*{missing}"):
        signing.verify(secret, without, BODY, now=NOW)
    with pytest.raises(SignatureError, match="missing"):
        signing.verify(secret, {**sent, missing: ""}, BODY, now=NOW)


def test_multiple_signatures_any_valid_v1_entry_matches() -> None:
    old, new = signing.new_secret(), signing.new_secret()
    both = " ".join([signing.sign(old, "msg_1", NOW, BODY), signing.sign(new, "msg_1", NOW, BODY)])
    sent = {"webhook-id": "msg_1", "webhook-timestamp": str(NOW), "webhook-signature": both}
    signing.verify(old, sent, BODY, now=NOW)
    signing.verify(new, sent, BODY, now=NOW)
    reference_verify(new, sent, BODY, now=NOW)
    with pytest.raises(SignatureError):
        signing.verify(signing.new_secret(), sent, BODY, now=NOW)


def test_garbage_entries_around_the_valid_one_are_skipped() -> None:
    """As the official multi-signature test: other versions, bad base64, wrong lengths."""
    good = signing.sign(VECTOR_SECRET, VECTOR_ID, VECTOR_TS, VECTOR_BODY)
    noise = [
        "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=",
        "v2,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=",
        "v1a,hnO3f9T8Ytu9HwrXslvumlUpqtNVqkhqw/enGzPCXe5BdqzCInXqYXFymVJaA7AZdpXwVLPo3mNl8EM+m7TBAg==",
        "v1,",
        "v1,AAAA",
        "v1,not base64!!",
        "v1,ÿé\u2603",
        "garbage",
        "",
        ",",
        "v1",
    ]
    sent = {**vector_headers(), "webhook-signature": " ".join([*noise, good, *noise])}
    signing.verify(VECTOR_SECRET, sent, VECTOR_BODY, now=VECTOR_TS)
    only_noise = {**vector_headers(), "webhook-signature": " ".join(noise)}
    with pytest.raises(SignatureError, match="no matching"):
        signing.verify(VECTOR_SECRET, only_noise, VECTOR_BODY, now=VECTOR_TS)


def test_signature_of_another_scheme_version_does_not_count() -> None:
    sent = {**vector_headers(), "webhook-signature": "v2," + VECTOR_SIGNATURE[3:]}
    with pytest.raises(SignatureError):
        signing.verify(VECTOR_SECRET, sent, VECTOR_BODY, now=VECTOR_TS)


def test_truncated_signature_does_not_raise_on_length_mismatch() -> None:
    sent = {**vector_headers(), "webhook-signature": VECTOR_SIGNATURE[:-8]}
    with pytest.raises(SignatureError):
        signing.verify(VECTOR_SECRET, sent, VECTOR_BODY, now=VECTOR_TS)


@pytest.mark.parametrize("msg_id", ["", "msg.1", "a.b.c"])
def test_sign_refuses_ids_the_spec_forbids(msg_id: str) -> None:
    with pytest.raises(ValueError):
        signing.sign(VECTOR_SECRET, msg_id, NOW, BODY)


@pytest.mark.parametrize("secret", ["whsec_", "", "whsec_!!!notbase64", "whsec_é"])
def test_malformed_secret_is_a_configuration_error(secret: str) -> None:
    with pytest.raises(ValueError):
        signing.sign(secret, "msg_1", NOW, BODY)
    with pytest.raises(ValueError):
        signing.verify(secret, vector_headers(), BODY, now=NOW)


def test_negative_timestamp_is_refused() -> None:
    with pytest.raises(ValueError):
        signing.sign(VECTOR_SECRET, "msg_1", -1, BODY)


HEADER_NAMES = st.sampled_from(
    ["webhook-id", "webhook-timestamp", "webhook-signature", "Webhook-Signature", "x-other"]
)
ANY_TEXT = st.text(max_size=80)  # includes lone surrogates and non-ASCII
SIGNATURE_LIKE = st.lists(
    st.one_of(
        ANY_TEXT,
        st.builds(lambda s: "v1," + s, ANY_TEXT),
        st.builds(lambda b: "v1," + base64.b64encode(b).decode(), st.binary(max_size=40)),
    ),
    max_size=5,
).map(" ".join)


@settings(max_examples=300, deadline=None)
@given(
    headers=st.dictionaries(st.one_of(HEADER_NAMES, ANY_TEXT), ANY_TEXT, max_size=6),
    body=st.binary(max_size=200),
)
def test_verify_raises_only_signature_error_for_arbitrary_headers(
    headers: dict[str, str], body: bytes
) -> None:
    with pytest.raises(SignatureError):
        signing.verify(VECTOR_SECRET, headers, body, now=VECTOR_TS)


@settings(max_examples=300, deadline=None)
@given(
    msg_id=ANY_TEXT,
    timestamp=st.one_of(ANY_TEXT, st.integers(0, 10**16).map(str)),
    signature=SIGNATURE_LIKE,
    body=st.binary(max_size=200),
)
def test_verify_raises_only_signature_error_for_plausible_headers(
    msg_id: str, timestamp: str, signature: str, body: bytes
) -> None:
    sent = {"webhook-id": msg_id, "webhook-timestamp": timestamp, "webhook-signature": signature}
    with pytest.raises(SignatureError):
        signing.verify(VECTOR_SECRET, sent, body, now=VECTOR_TS)


@settings(max_examples=100, deadline=None)
@given(msg_id=st.from_regex(r"[A-Za-z0-9_\-]{1,40}", fullmatch=True), body=st.binary())
def test_round_trip_property(msg_id: str, body: bytes) -> None:
    sent = signing.headers(VECTOR_SECRET, msg_id, NOW, body)
    signing.verify(VECTOR_SECRET, sent, body, now=NOW)
    assert reference_verify(VECTOR_SECRET, sent, body, now=NOW) == msg_id
