"""Forwarding to the daemon: an ingest worker answers webhooks itself and passes every other
request (admin page, API, OAuth callbacks, plugin routes) to the daemon's private Unix
socket, streaming the answer back unchanged.

Clients cannot tell which process accepted their connection (the kernel spreads connections
over the processes sharing the port). Nothing is kept between requests: no cookies, no
redirects followed, no decompression, no headers added.
"""

from __future__ import annotations

import aiohttp
import structlog
from aiohttp import web
from multidict import CIMultiDictProxy
from yarl import URL

from hub.web.api import json_response

log = structlog.get_logger("hub.web")

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",  # set again from the body actually sent
    }
)
NOT_ADDED = ("Accept", "Accept-Encoding", "User-Agent", "Content-Type")
CHUNK_BYTES = 64 * 1024


def _end_to_end(headers: CIMultiDictProxy[str]) -> list[tuple[str, str]]:
    """``headers`` without hop-by-hop ones (and those the ``Connection`` header names)."""
    listed = ",".join(headers.getall("Connection", []))
    named = {token.strip().lower() for token in listed.split(",")}
    return [
        (key, value)
        for key, value in headers.items()
        if key.lower() not in HOP_BY_HOP and key.lower() not in named
    ]


class Forwarder:
    """Passes requests to the daemon over ``socket_path`` (open with :meth:`start`)."""

    def __init__(self, socket_path: str) -> None:
        self._socket_path = socket_path
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        """Open the connection pool to the daemon."""
        self._session = aiohttp.ClientSession(
            connector=aiohttp.UnixConnector(path=self._socket_path),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=5),
            cookie_jar=aiohttp.DummyCookieJar(),  # never one user's cookies on another's request
            auto_decompress=False,
            skip_auto_headers=NOT_ADDED,
        )

    async def close(self) -> None:
        """Close the pool."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def forward(self, request: web.Request) -> web.StreamResponse:
        """Answer ``request`` with the daemon's answer to it (503 if the daemon is not there)."""
        if self._session is None:
            raise RuntimeError("the forwarder is not started")
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge as exc:  # the daemon would answer it in JSON too
            return json_response({"error": exc.text or "request body too large"}, status=413)
        try:
            upstream = await self._session.request(
                request.method,
                URL(f"http://hub{request.raw_path}", encoded=True),
                headers=_end_to_end(request.headers),
                data=body or None,
                allow_redirects=False,
            )
        except aiohttp.ClientError as exc:
            log.warning("the daemon did not answer a forwarded request", error=str(exc))
            return json_response(
                {"error": "the hub daemon is not answering; try again shortly"}, status=503
            )
        async with upstream:
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for key, value in _end_to_end(upstream.headers):
                response.headers.add(key, value)
            if upstream.content_length is not None:
                response.content_length = upstream.content_length
            await response.prepare(request)
            async for chunk in upstream.content.iter_chunked(CHUNK_BYTES):
                await response.write(chunk)
            await response.write_eof()
        return response
