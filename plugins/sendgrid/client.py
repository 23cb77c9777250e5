"""SendGrid v3 API calls, through the hub's shared HTTP client.

Mail send is ``POST /v3/mail/send`` (202 with ``X-Message-Id``). A 429 is retried after
``X-RateLimit-Reset`` (capped), a 5xx with backoff (the shared client's ``RetryPolicy``);
besides, when an answer says ``X-RateLimit-Remaining: 0`` the next request waits for the
reset instead of spending a 429. A 400 is raised with SendGrid's reasons (``errors[].message``
and ``field``). Suppressions are read and deleted through ``/v3/suppression/<list>``
(bounces, blocks, spam reports, invalid e-mails, global unsubscribes).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from hub.api import HttpClient, Response, RetryPolicy
from hub.errors import ProviderError, ValidationError

from .message import Message

if TYPE_CHECKING:
    from .settings import SendGridSettings

SUPPRESSION_LISTS = ("bounces", "blocks", "spam_reports", "invalid_emails", "unsubscribes")
"""SendGrid's suppression lists the plugin reconciles (``/v3/suppression/<list>``)."""
PAGE_SIZE = 500
"""Rows per suppression page (SendGrid's maximum)."""
SEND_TIMEOUT = 60.0


def reason_of(error: ProviderError) -> str:
    """SendGrid's own reasons in an error answer (``errors[].message`` and ``field``), else
    the error's message."""
    try:
        errors = orjson.loads(error.body).get("errors") or []
        reasons = [
            f"{e.get('message')}" + (f" (field {e['field']})" if e.get("field") else "")
            for e in errors
            if isinstance(e, dict)
        ]
    except (orjson.JSONDecodeError, AttributeError, TypeError):
        reasons = []
    status = f"SendGrid answered {error.status}: " if error.status else ""
    return f"{status}{'; '.join(reasons)}" if reasons else str(error)


@dataclass
class RateGate:
    """SendGrid's rate-limit headers as last seen, less the requests sent since: when none
    remain in the window, the next request waits for its reset instead of spending a 429."""

    remaining: int | None = None
    reset_at: float = 0.0

    async def wait(self) -> None:
        """Take one request of the window's budget, sleeping until the reset if none is left."""
        while self.remaining is not None and self.remaining <= 0:
            delay = self.reset_at - time.time()
            if delay <= 0:
                self.remaining = None  # a new window: the next answer tells its budget
                break
            await asyncio.sleep(min(delay, 60.0))
        if self.remaining is not None:
            self.remaining -= 1

    def saw(self, response: Response) -> None:
        """Take in the ``X-RateLimit-Remaining`` / ``-Reset`` of ``response``."""
        try:
            remaining = int(response.headers["X-RateLimit-Remaining"])
            reset = float(response.headers["X-RateLimit-Reset"])
        except (KeyError, ValueError):
            return
        if reset != self.reset_at or self.remaining is None:
            self.remaining, self.reset_at = remaining, reset
        else:  # answers of one window may come back out of order: the lowest count holds
            self.remaining = min(self.remaining, remaining)


class SendGridClient:
    """The calls of one API key (its rate-limit state is kept on the :class:`RateGate`)."""

    def __init__(self, http: HttpClient, settings: SendGridSettings, gate: RateGate) -> None:
        if settings.api_key is None:
            raise ValueError("SendGridClient needs an api_key")
        self._http = http
        self._settings = settings
        self._gate = gate
        self._base = settings.api_base_url
        self._headers = {"Authorization": f"Bearer {settings.api_key.get_secret_value()}"}
        self._retry = RetryPolicy(
            attempts=settings.request_attempts,
            base_delay=0.5,
            max_delay=settings.request_max_delay,
            reset_header="X-RateLimit-Reset",
        )

    async def _call(self, method: str, path: str, **kwargs: Any) -> Response:
        await self._gate.wait()
        response = await self._http.request(
            method,
            f"{self._base}{path}",
            limit_key=NAME_KEY,
            headers=self._headers,
            retry=self._retry,
            **kwargs,
        )
        self._gate.saw(response)
        return response

    def payload(self, message: Message, send_id: str) -> dict[str, Any]:
        """The mail-send body of ``message``: one personalization per recipient, each with
        the send id as a custom argument (events carry it back)."""
        settings = self._settings
        sender: dict[str, str] = {"email": settings.from_email}
        if settings.from_name:
            sender["name"] = settings.from_name
        personalizations = []
        for recipient in message.recipients:
            to: dict[str, str] = {"email": recipient.email}
            if recipient.name:
                to["name"] = recipient.name
            # the published schema types the message-level custom_args as a string: the
            # send id goes on each personalization, where it is an object
            item: dict[str, Any] = {"to": [to], "custom_args": {"hub_send": send_id}}
            if message.template_id:
                item["dynamic_template_data"] = {**message.data, **recipient.data}
            personalizations.append(item)
        body: dict[str, Any] = {
            "personalizations": personalizations,
            "from": sender,
            "subject": message.subject,
        }
        if message.template_id:
            body["template_id"] = message.template_id
        else:
            body["content"] = [{"type": "text/plain", "value": message.text}]
        return body

    async def send(self, message: Message, send_id: str) -> str:
        """Send ``message``; return SendGrid's message id (``X-Message-Id``).

        :raise ProviderError: classified; a 400 carries SendGrid's reasons in its message.
        """
        try:
            response = await self._call(
                "POST",
                "/v3/mail/send",
                json=self.payload(message, send_id),
                timeout=SEND_TIMEOUT,
            )
        except ValidationError as exc:
            raise ValidationError(reason_of(exc), status=exc.status) from None
        return response.headers.get("X-Message-Id", "")

    async def scopes(self) -> list[str]:
        """The API key's scopes (``GET /v3/scopes``): a cheap authenticated call."""
        scopes = (await self._call("GET", "/v3/scopes")).json().get("scopes") or []
        return [str(scope) for scope in scopes]

    async def verified_senders(self) -> list[dict[str, Any]]:
        """The account's single senders (``GET /v3/verified_senders``)."""
        results = (await self._call("GET", "/v3/verified_senders")).json().get("results") or []
        return [r for r in results if isinstance(r, dict)]

    async def suppressions(self, kind: str) -> AsyncIterator[list[dict[str, Any]]]:
        """Pages of one suppression list (``email``, ``created``, ``reason``)."""
        offset = 0
        while True:
            params = {"limit": str(PAGE_SIZE), "offset": str(offset)}
            rows = (await self._call("GET", f"/v3/suppression/{kind}", params=params)).json()
            page = [row for row in rows or [] if isinstance(row, dict) and row.get("email")]
            if page:
                yield page
            if len(rows or []) < PAGE_SIZE:
                return
            offset += PAGE_SIZE

    async def delete_suppression(self, kind: str, email: str) -> bool:
        """Remove ``email`` from one suppression list; False when it was not on it."""
        try:
            await self._call("DELETE", f"/v3/suppression/{kind}/{email}")
        except ValidationError as exc:
            if exc.status == 404:
                return False
            raise
        return True


NAME_KEY = "sendgrid:api"
"""The shared client's limit key of SendGrid calls (one API key per hub)."""
