"""Fuzzing ``POST /webhooks/{source}`` on every registered source (hypothesis).

Whatever the body, the signature headers or the generic sender's name: never a 5xx, a JSON
``{"error": …}`` for every 4xx, and no partial rows (a request row and its events only for a
2xx answer, every event tied to its request, every delivery to its event). The sources are
those the loaded plugins register with a ``webhook`` hook; the ones this file knows how to sign
(``generic``, ``custom_accounting``, ``quickbooks``) also get correctly signed bodies, so their
parsers see the same garbage after the signature check.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import orjson
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from hub.hookspecs import hookimpl
from hub.model import HubEvent
from hub.testing import build_hub
from hub.web.keys import HUB

LIMIT = 64 * 1024
SECRET = "fuzz-generic-secret"
LEDGER_SECRET = "fuzz-ledger-secret"
VERIFIER = "fuzz-verifier-token"
SENDERS = {
    "zap": {"secret": SECRET, "header": "X-Signature", "encoding": "hex"},
    "script": {"secret": SECRET, "header": "X-Hub-Sig", "encoding": "base64"},
}
UNSIGNED_IS_401 = {"generic", "quickbooks", "custom_accounting"}
"""Sources checked to answer 401 to a missing or wrong signature."""
SETTINGS = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def hmac_sha256(secret: str, body: bytes) -> bytes:
    return hmac.new(secret.encode(), body, hashlib.sha256).digest()


@dataclass(frozen=True)
class Source:
    """How to address and sign one webhook source."""

    name: str
    header: str | None  # the signature header (None: unknown source, not signed here)
    sign: Callable[[bytes], str] | None
    path: str = ""

    @property
    def url(self) -> str:
        return f"/webhooks/{self.name}{self.path}"


KNOWN: dict[str, list[Source]] = {
    "generic": [
        Source("generic", "X-Signature", lambda b: hmac_sha256(SECRET, b).hex(), "/zap"),
        Source(
            "generic",
            "X-Hub-Sig",
            lambda b: base64.b64encode(hmac_sha256(SECRET, b)).decode(),
            "/script",
        ),
    ],
    "custom_accounting": [
        Source(
            "custom_accounting",
            "X-Ledger-Signature",
            lambda b: hmac_sha256(LEDGER_SECRET, b).hex(),
        )
    ],
    "quickbooks": [
        Source(
            "quickbooks",
            "intuit-signature",
            lambda b: base64.b64encode(hmac_sha256(VERIFIER, b)).decode(),
        )
    ],
}
CONFIGS: dict[str, dict[str, Any]] = {
    "custom_accounting": {
        "base_url": "http://127.0.0.1:9",
        "api_token": "fuzz-token",
        "webhook_secret": LEDGER_SECRET,
    },
    "quickbooks": {
        "client_id": "fuzz-client",
        "client_secret": "fuzz-client-secret",
        "base_url": "http://127.0.0.1:9",
        "oauth_base_url": "http://127.0.0.1:9",
        "webhook_verifier_token": VERIFIER,
        "sync_on_connect": False,
    },
}


class Listener:
    """An ``event`` hook, so that every stored event also gets delivery rows."""

    __name__ = "fuzz_listener"

    @hookimpl
    def event(self, event: HubEvent) -> None:
        return None


# ---------------------------------------------------------------- strategies

header_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs")), max_size=40
) | st.text(
    alphabet=st.characters(codec="utf-8", blacklist_categories=("Cc", "Cs")),
    min_size=1000,
    max_size=2000,
)
json_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | json_text,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(json_text, children, max_size=5)
    ),
    max_leaves=25,
)


def mostly(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``good`` three times in four, else ``bad``."""
    return st.one_of(good, good, good, bad)


small_ids = mostly(
    st.sampled_from(["1", "2", "evt_3"]) | st.integers(0, 9), st.just("") | json_text
)
ledger_events = st.fixed_dictionaries(
    {
        "id": small_ids,
        "type": mostly(st.sampled_from(["transaction.updated", "account.deleted"]), small_ids),
    },
    optional={"data": mostly(st.fixed_dictionaries({"id": small_ids}), json_values)},
)
ledger_bodies = st.fixed_dictionaries(
    {"events": st.lists(mostly(ledger_events, json_values), max_size=5)}
)
entity_names = mostly(st.sampled_from(["Customer", "Invoice", "Vendor", "Class"]), json_text)
operations = mostly(st.sampled_from(["Create", "Update", "Delete", "Merge", "Void"]), json_text)
classic_entities = st.fixed_dictionaries(
    {"name": entity_names, "id": small_ids, "operation": operations},
    optional={"lastUpdated": json_text, "deletedId": small_ids},
)
classic_bodies = st.fixed_dictionaries(
    {
        "eventNotifications": st.lists(
            mostly(
                st.fixed_dictionaries(
                    {
                        "realmId": small_ids,
                        "dataChangeEvent": st.fixed_dictionaries(
                            {
                                "entities": st.lists(
                                    mostly(classic_entities, json_values), max_size=4
                                )
                            }
                        ),
                    }
                ),
                json_values,
            ),
            max_size=3,
        )
    }
)
cloudevent_bodies = st.lists(
    mostly(
        st.fixed_dictionaries(
            {
                "type": mostly(
                    st.builds(lambda e, o: f"qbo.{e}.{o}.v1", entity_names, operations), json_text
                ),
                "id": small_ids,
                "intuitaccountid": small_ids,
                "intuitentityid": small_ids,
            },
            optional={"data": json_values},
        ),
        json_values,
    ),
    max_size=4,
)
SHAPES: dict[str, st.SearchStrategy[Any]] = {
    "generic": json_values,
    "custom_accounting": mostly(ledger_bodies, json_values),
    "quickbooks": mostly(classic_bodies | cloudevent_bodies, json_values),
}


@st.composite
def mangled(draw: st.DrawFn, shaped: st.SearchStrategy[bytes]) -> bytes:
    """A JSON body with a few bytes replaced, cut or inserted."""
    body = bytearray(draw(shaped))
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(body)))
        body[at : at + draw(st.integers(0, 2))] = draw(st.binary(max_size=3))
    return bytes(body)


@st.composite
def large(draw: st.DrawFn) -> bytes:
    """A body of about the size limit (either side of it), built cheaply by repetition."""
    size = draw(st.integers(LIMIT - 64, LIMIT + 1024))
    chunk = draw(st.binary(min_size=1, max_size=16))
    return (chunk * (size // len(chunk) + 1))[:size]


def bodies_for(source: str, large_bodies: bool = True) -> st.SearchStrategy[bytes]:
    """Bodies for ``source``: its own payload shapes (valid or not), mangled ones, binary,
    empty, and (with ``large_bodies``) about the size limit."""
    shaped = SHAPES.get(source, json_values).map(orjson.dumps)
    others = [mangled(shaped), st.binary(max_size=300), st.just(b"")]
    return st.one_of(shaped, shaped, *others, *([large()] if large_bodies else []))


# ---------------------------------------------------------------- helpers


@pytest.fixture
async def fuzz_client(hub_client: Any, hub_config: Any) -> Any:
    """A client of a hub with every webhook source this file can sign configured."""
    loaded = build_hub(hub_config()).plugins.integrations  # which plugins exist here
    config: dict[str, Any] = {
        "webhooks": {"max_body_bytes": LIMIT, "max_attempts": 2, "generic": SENDERS},
        "integrations": {name: value for name, value in CONFIGS.items() if name in loaded},
    }
    return await hub_client(plugins=[Listener()], config=config, authorized=False)


def sources_of(client: Any) -> list[Source]:
    """Every registered webhook source, signable where this file knows how."""
    plugins = client.app[HUB].plugins
    found = [name for name in plugins.integrations if plugins.has_owner_hook(name, "webhook")]
    assert "generic" in found
    return [s for name in found for s in KNOWN.get(name, [Source(name, None, None)])]


async def counts(client: Any) -> tuple[int, int, int]:
    """(webhook requests, webhook events, deliveries), after checking there are no orphans."""

    def read(db: Any) -> tuple[int, int, int]:
        orphans = db.execute(
            "SELECT (SELECT count(*) FROM events e WHERE e.source != 'hub' AND NOT EXISTS "
            "(SELECT 1 FROM webhook_requests r WHERE r.id = e.request_id)), "
            "(SELECT count(*) FROM deliveries d WHERE NOT EXISTS "
            "(SELECT 1 FROM events e WHERE e.id = d.event))"
        ).fetchone()
        assert orphans == (0, 0), f"partial rows: {orphans}"
        row = db.execute(
            "SELECT (SELECT count(*) FROM webhook_requests), "
            "(SELECT count(*) FROM events WHERE source != 'hub'), "
            "(SELECT count(*) FROM deliveries d JOIN events e ON e.id = d.event "
            "WHERE e.source != 'hub')"
        ).fetchone()
        return int(row[0]), int(row[1]), int(row[2])

    result: tuple[int, int, int] = await client.app[HUB].store.db.read(read)
    return result


async def check_answer(response: Any) -> dict[str, Any]:
    """No 5xx, and JSON everywhere (with ``error`` for a 4xx)."""
    text = await response.text()
    assert response.status < 500, text
    assert response.content_type == "application/json", text
    answer: dict[str, Any] = orjson.loads(text)
    if response.status >= 400:
        assert isinstance(answer.get("error"), str), text
    return answer


# ---------------------------------------------------------------- properties


@SETTINGS
@given(data=st.data())
async def test_any_request_to_any_source_is_answered_without_5xx_or_partial_rows(fuzz_client, data):
    client = fuzz_client
    source = data.draw(st.sampled_from(sources_of(client)), label="source")
    body = data.draw(bodies_for(source.name), label="body")
    url = source.url
    if source.name == "generic" and data.draw(st.integers(0, 3), label="other sender") == 0:
        sender = data.draw(st.text(max_size=40), label="sender")
        url = "/webhooks/generic/" + quote(sender, safe=data.draw(st.sampled_from(["", "/"])))
    headers: dict[str, str] = {}
    mode = "unknown"
    if source.header is not None and source.sign is not None:
        mode = data.draw(st.sampled_from(["absent", "garbage", "signed", "signed", "prefixed"]))
        if mode == "garbage":
            headers[source.header] = data.draw(header_text, label="signature")
        elif mode == "signed":
            headers[source.header] = source.sign(body)
        elif mode == "prefixed":
            headers[source.header] = "sha256=" + source.sign(body)
    for name in data.draw(
        st.sets(st.sampled_from(["webhook-id", "X-Event-Id", "Idempotency-Key"]))
    ):
        headers[name] = data.draw(header_text, label=name)

    before = await counts(client)
    response = await client.post(url, data=body, headers=headers)
    answer = await check_answer(response)
    after = await counts(client)
    event(f"{source.name}: {response.status}")

    if 200 <= response.status < 300:
        assert after[0] == before[0] + 1
        assert after[1] == before[1] + answer["received"]
    else:
        assert after[:2] == before[:2]
    if url == source.url:  # a configured sender
        if len(body) > LIMIT:
            assert response.status == 413
        elif mode in ("absent", "garbage") and source.name in UNSIGNED_IS_401:
            assert response.status == 401


@SETTINGS
@given(data=st.data())
async def test_correctly_signed_garbage_reaches_the_parsers_without_5xx(fuzz_client, data):
    """Past the signature check, each source's parser sees its own payload shapes, broken."""
    client = fuzz_client
    signable = [s for s in sources_of(client) if s.sign is not None]
    source = data.draw(st.sampled_from(signable), label="source")
    assert source.header is not None and source.sign is not None
    body = data.draw(bodies_for(source.name, large_bodies=False), label="body")
    headers = {source.header: source.sign(body)}
    for name in data.draw(st.sets(st.sampled_from(["webhook-id", "Idempotency-Key"]))):
        headers[name] = data.draw(header_text, label=name)

    before = await counts(client)
    response = await client.post(source.url, data=body, headers=headers)
    answer = await check_answer(response)
    after = await counts(client)
    event(f"{source.name}: {response.status}")
    assert response.status in (200, 400), answer
    if response.status == 200:
        assert after[0] == before[0] + 1
        assert after[1] == before[1] + answer["received"]
    else:
        assert after[:2] == before[:2]


@SETTINGS
@given(
    payload=json_values,
    id_header=st.sampled_from(["webhook-id", "X-Event-Id", "Idempotency-Key", None]),
    suffix=st.text(
        alphabet=st.characters(codec="utf-8", blacklist_categories=("Cc", "Cs", "Z")), max_size=60
    ),
    sender=st.sampled_from(sorted(SENDERS)),
)
async def test_signed_generic_json_is_stored_exactly_once(
    fuzz_client, payload, id_header, suffix, sender
):
    client = fuzz_client
    body = orjson.dumps(payload)
    (source,) = [s for s in KNOWN["generic"] if s.path == f"/{sender}"]
    assert source.header is not None and source.sign is not None
    headers = {source.header: source.sign(body)}
    event_id = f"{uuid.uuid4().hex}-{suffix}"
    if id_header is None:
        event_id = hashlib.sha256(body).hexdigest()  # a resent body is a duplicate
    else:
        headers[id_header] = event_id

    async def stored() -> list[tuple[str, str]]:
        return await client.app[HUB].store.db.read(
            lambda db: db.execute(
                "SELECT type, data FROM events WHERE source = 'generic' AND event_id = ?",
                [f"{sender}:{event_id}"],
            ).fetchall()
        )

    known = bool(await stored())
    before = await counts(client)
    first = await client.post(source.url, data=body, headers=headers)
    second = await client.post(source.url, data=body, headers=headers)
    assert (first.status, second.status) == (200, 200), await first.text()
    assert await first.json() == {"received": 0 if known else 1, "duplicates": int(known)}
    assert await second.json() == {"received": 0, "duplicates": 1}
    after = await counts(client)
    assert after[0] == before[0] + 2  # both requests are kept, raw
    assert after[1] == before[1] + (0 if known else 1)

    ((event_type, data),) = await stored()
    assert event_type == f"generic.{sender}.received"
    assert orjson.loads(data) == (payload if isinstance(payload, dict) else {"body": payload})


async def test_the_same_id_from_two_senders_is_two_events(fuzz_client):
    client = fuzz_client
    answers = []
    for source in KNOWN["generic"]:
        assert source.header is not None and source.sign is not None
        body = b'{"n": 1}'
        headers = {source.header: source.sign(body), "webhook-id": "1"}
        response = await client.post(source.url, data=body, headers=headers)
        answers.append(await response.json())
    assert answers == [{"received": 1, "duplicates": 0}] * 2


@SETTINGS
@given(
    ids=st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=6),
    types=st.sampled_from(["txn.updated", "txn.deleted"]),
)
async def test_an_id_repeated_within_one_request_is_a_duplicate(fuzz_client, ids, types):
    """A provider batch naming one event twice: one event, one delivery per handler, no 500."""
    client = fuzz_client
    assert "custom_accounting" in client.app[HUB].plugins.integrations
    (source,) = KNOWN["custom_accounting"]
    assert source.header is not None and source.sign is not None
    batch = uuid.uuid4().hex
    body = orjson.dumps({"events": [{"id": f"{batch}-{i}", "type": types} for i in ids]})
    before = await counts(client)
    response = await client.post(source.url, data=body, headers={source.header: source.sign(body)})
    answer = await check_answer(response)
    assert response.status == 200
    assert answer == {"received": len(set(ids)), "duplicates": len(ids) - len(set(ids))}
    hub = client.app[HUB]
    await hub.dispatcher.drain()  # routed: each new event has its deliveries now
    after = await counts(client)
    handlers = hub.dispatcher.handlers_for(source.name, f"{source.name}.{types}", True)
    assert after[1] == before[1] + len(set(ids))
    assert after[2] == before[2] + len(set(ids)) * len(handlers)


@pytest.mark.parametrize(
    "raw",
    [b"\xe9", b"\xff\xfe", b"caf\xc3", "é".encode("latin-1") + b"-ok", b"\xed\xa0\x80"],
)
async def test_header_bytes_that_are_not_utf8_are_stored_not_a_500(fuzz_client, raw):
    """aiohttp keeps undecodable header bytes as surrogate escapes; the store must cope."""
    client = fuzz_client
    body = orjson.dumps({"raw": raw.hex()})
    (source, _) = KNOWN["generic"]
    assert source.sign is not None
    head = (
        f"POST {source.url} HTTP/1.1\r\nHost: hub\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n{source.header}: {source.sign(body)}\r\n"
        "Connection: close\r\n"
    ).encode()
    request = head + b"webhook-id: id-" + raw + b"\r\nX-Note: " + raw + b"\r\n\r\n" + body
    statuses = []
    for _ in range(2):  # the second is a duplicate of the first
        reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
        writer.write(request)
        await writer.drain()
        answer = await reader.read()
        writer.close()
        await writer.wait_closed()
        statuses.append(int(answer.split(b" ", 2)[1]))
    assert statuses == [200, 200]
    ((event_id, headers),) = await client.app[HUB].store.db.read(
        lambda db: db.execute(
            "SELECT e.event_id, r.headers FROM events e JOIN webhook_requests r "
            "ON r.id = e.request_id WHERE e.source = 'generic' AND e.data = ?",
            [body.decode()],
        ).fetchall()
    )
    assert event_id.startswith("zap:id-")
    assert "X-Note" in orjson.loads(headers)


async def test_example_plugin_answers_401_to_a_non_ascii_signature(fuzz_client):
    client = fuzz_client
    assert "custom_accounting" in client.app[HUB].plugins.integrations
    (source,) = KNOWN["custom_accounting"]
    assert source.header is not None
    response = await client.post(source.url, data=b'{"events": []}', headers={source.header: "é"})
    assert response.status == 401
