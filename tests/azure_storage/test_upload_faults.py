"""Bad uploads and failing storage: refused with a clear 4xx/5xx, nothing recorded, no blob."""

from __future__ import annotations

import asyncio

import aiohttp
from azure.storage.blob.aio import BlobServiceClient

from hub.testing import ADMIN_TOKEN
from plugins.azure_storage.sandbox import start_azurite
from tests.azure_storage.conftest import BLOCK, azure_config
from tests.azure_storage.test_documents import PDF, form, upload

LIMIT = 3 * BLOCK


async def committed_blobs(connection_string: str, container: str) -> list[str]:
    async with BlobServiceClient.from_connection_string(connection_string) as service:
        client = service.get_container_client(container)
        if not await client.exists():
            return []
        return [blob.name async for blob in client.list_blobs()]


async def staged_blobs(connection_string: str, container: str) -> list[str]:
    async with BlobServiceClient.from_connection_string(connection_string) as service:
        client = service.get_container_client(container)
        if not await client.exists():
            return []
        return [blob.name async for blob in client.list_blobs(include=["uncommittedblobs"])]


async def recorded(client) -> list[dict]:
    return (await (await client.get("/api/documents")).json())["documents"]


async def limited(hub_client, azurite, container_name, **extra):
    config = azure_config(azurite, container_name, max_upload_bytes=LIMIT, **extra)
    return await hub_client(config=config)


async def test_a_declared_length_over_the_limit_is_refused_before_the_body_is_read(
    hub_client, azurite, container_name
):
    client = await limited(hub_client, azurite, container_name)
    reader, writer = await asyncio.open_connection("127.0.0.1", client.server.port)
    writer.write(
        b"POST /api/documents HTTP/1.1\r\nHost: hub\r\nAuthorization: Bearer "
        + ADMIN_TOKEN.encode()
        + b"\r\n"
        b"Content-Type: multipart/form-data; boundary=x\r\n"
        + f"Content-Length: {10 * LIMIT}\r\n\r\n".encode()
    )
    await writer.drain()  # no body is ever sent: the answer cannot wait for it
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
    writer.close()
    assert head.startswith(b"HTTP/1.1 413"), head
    assert await recorded(client) == []


async def test_an_undeclared_body_over_the_limit_is_cut_off_and_never_committed(
    hub_client, azurite, container_name
):
    client = await limited(hub_client, azurite, container_name)

    async def body():
        yield b"%PDF-1.7\n" + b"x" * (LIMIT + BLOCK)

    data = aiohttp.FormData()
    data.add_field("client", "acme")
    data.add_field("file", body(), filename="big.pdf")
    response = await client.post("/api/documents", data=data)
    assert response.status == 413
    assert "limit" in (await response.json())["error"]
    assert await recorded(client) == []
    assert await committed_blobs(azurite.connection_string, container_name) == []


async def test_a_file_at_the_limit_is_accepted(hub_client, azurite, container_name):
    client = await limited(hub_client, azurite, container_name)
    status, doc = await upload(client, b"a" * LIMIT, name="notes.txt")
    assert status == 201, doc
    assert doc["size"] == LIMIT and doc["content_type"] == "text/plain"


async def test_an_empty_file_is_refused(docs, azurite):
    status, answer = await upload(docs, b"")
    assert status == 400 and answer == {"error": "the file is empty"}
    assert await recorded(docs) == []
    assert await committed_blobs(azurite.connection_string, docs.container) == []


async def test_bad_forms_are_refused_with_a_reason(docs):
    cases = [
        (aiohttp.FormData({"client": "acme"}, default_to_multipart=True), "no file part"),
        (form(PDF, client="../other"), "client must be"),
        (form(PDF, client=""), "client must be"),
        (form(PDF, name=""), "needs a name"),
    ]
    for data, reason in cases:
        response = await docs.post("/api/documents", data=data)
        assert response.status == 400, reason
        assert reason in (await response.json())["error"]
    response = await docs.post(
        "/api/documents", data=b"raw", headers={"Content-Type": "text/plain"}
    )
    assert response.status == 400
    bad_sender = {"X-Uploaded-By": "not an address"}
    response = await docs.post("/api/documents", data=form(PDF), headers=bad_sender)
    assert response.status == 400
    assert await recorded(docs) == []


def chunk(data: bytes) -> bytes:
    """``data`` as one chunk of a chunked HTTP body."""
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def raw_form(filename: str, data: bytes = PDF, client: str = "acme") -> bytes:
    """A multipart body with ``filename`` as given (a quoted string: only \\ and " escaped)."""
    return (
        b'--b0undary\r\nContent-Disposition: form-data; name="client"\r\n\r\n'
        + client.encode()
        + b'\r\n--b0undary\r\nContent-Disposition: form-data; name="file"; filename="'
        + filename.replace("\\", "\\\\").replace('"', '\\"').encode()
        + b'"\r\nContent-Type: application/pdf\r\n\r\n'
        + data
        + b"\r\n--b0undary--\r\n"
    )


async def test_hostile_file_names_stay_inside_the_clients_prefix(docs):
    names = ["../../x", "..\\..\\evil.pdf", "a\tb.pdf", "é" * 5 + ".pdf", "n" * 300 + ".pdf", ".."]
    stored = []
    for name in names:
        response = await docs.post(
            "/api/documents",
            data=raw_form(name),
            headers={"Content-Type": "multipart/form-data; boundary=b0undary"},
        )
        doc = await response.json()
        assert response.status == 201, (name, doc)
        prefix, _, last = doc["blob_name"].rpartition("/")
        assert prefix == "firm/acme", doc["blob_name"]
        assert ".." not in last and last.isascii() and last.isprintable()
        assert doc["name"] == name  # the record keeps what the uploader said
        stored.append(last.split("_", 1)[1])
    assert stored[:4] == ["x", "evil.pdf", "a_b.pdf", "pdf"]
    assert len(stored[4]) == 120 and stored[4].endswith(".pdf")
    assert stored[5] == "file"


async def test_a_nul_byte_in_a_file_name_is_refused_or_kept_out_of_the_blob_name(docs):
    headers = {"Content-Type": "multipart/form-data; boundary=b0undary"}
    response = await docs.post("/api/documents", data=raw_form("a\x00b.pdf"), headers=headers)
    assert response.status == 400  # a raw NUL is not a valid header character
    assert "malformed multipart" in (await response.json())["error"]
    encoded = raw_form("x").replace(b'filename="x"', b"filename*=UTF-8''a%00b%2F..%2Fc.pdf")
    response = await docs.post("/api/documents", data=encoded, headers=headers)
    doc = await response.json()
    assert response.status == 201, doc
    assert doc["name"] == "a\x00b/../c.pdf"
    assert doc["blob_name"].rpartition("/")[::2] == ("firm/acme", doc["blob_name"][-28:])
    assert doc["blob_name"].endswith("_c.pdf")


async def test_storage_stopped_mid_upload_answers_503_and_records_nothing(
    hub_client, tmp_path, container_name
):
    azurite = start_azurite(tmp_path / "azurite")
    try:
        client = await hub_client(config=azure_config(azurite, container_name))
        reader, writer = await asyncio.open_connection("127.0.0.1", client.server.port)
        head, tail = raw_form("return.pdf", b"%PDF-1.7\n" + b"x" * (12 * BLOCK)).split(b"x", 1)
        writer.write(
            b"POST /api/documents HTTP/1.1\r\nHost: hub\r\nAuthorization: Bearer "
            + ADMIN_TOKEN.encode()
            + b"\r\nContent-Type: multipart/form-data; boundary=b0undary\r\n"
            b"Connection: close\r\nTransfer-Encoding: chunked\r\n\r\n"
            + chunk(head + tail[: 8 * BLOCK])
        )
        await writer.drain()  # more than the multipart reader holds back (one read)
        while not await staged_blobs(azurite.connection_string, container_name):
            await asyncio.sleep(0.02)  # poll until the hub staged its first block
        azurite.stop()
        writer.write(chunk(tail[8 * BLOCK :]) + b"0\r\n\r\n")
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 60)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 503"), answer
        assert b"unreachable" in answer
        assert await recorded(client) == []
    finally:
        azurite.stop()
    restarted = start_azurite(tmp_path / "azurite", port=azurite.port)
    try:
        assert await committed_blobs(restarted.connection_string, container_name) == []
    finally:
        restarted.close()


async def test_documents_need_the_admin_token(hub_client, azurite, container_name):
    client = await hub_client(config=azure_config(azurite, container_name), authorized=False)
    assert (await client.get("/api/documents")).status == 401
    assert (await client.post("/api/documents", data=form(PDF))).status == 401


async def test_without_configuration_the_api_says_so(hub_client):
    client = await hub_client()
    response = await client.get("/api/documents")
    assert response.status == 503
    assert "not configured" in (await response.json())["error"]
