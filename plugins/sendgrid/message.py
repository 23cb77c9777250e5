"""What the plugin sends, independent of the transport: a subject, a plain-text body the
plugin always writes (SMTP sends it; SendGrid too when no template is configured), an
optional dynamic template with its data, and the recipients (each sees only their own
address: one SendGrid personalization, or one SMTP message, per recipient).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

MAX_PERSONALIZATIONS = 1000
"""SendGrid's limits per mail-send request: 1,000 personalizations and 1,000 recipients in
all, each address at most once (one recipient per personalization meets all three)."""


@dataclass(frozen=True)
class Recipient:
    """One addressee: the address, a display name and their own template data."""

    email: str
    name: str = ""
    data: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The stored form (``from_json`` reads it back)."""
        return {"email": self.email, "name": self.name, "data": dict(self.data)}

    @staticmethod
    def from_json(value: Mapping[str, Any]) -> Recipient:
        """A recipient from its stored form."""
        return Recipient(str(value["email"]), str(value.get("name") or ""), value.get("data") or {})


@dataclass(frozen=True)
class Message:
    """One message to one or more recipients (at most :data:`MAX_PERSONALIZATIONS`)."""

    kind: str
    subject: str
    text: str
    recipients: tuple[Recipient, ...]
    template_id: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The stored form, kept until the message is sent (``from_json`` reads it back)."""
        return {
            "kind": self.kind,
            "subject": self.subject,
            "text": self.text,
            "recipients": [r.to_json() for r in self.recipients],
            "template_id": self.template_id,
            "data": dict(self.data),
        }

    @staticmethod
    def from_json(value: Mapping[str, Any]) -> Message:
        """A message from its stored form."""
        return Message(
            kind=str(value["kind"]),
            subject=str(value["subject"]),
            text=str(value["text"]),
            recipients=tuple(Recipient.from_json(r) for r in value["recipients"]),
            template_id=value.get("template_id"),
            data=value.get("data") or {},
        )

    def with_recipients(self, recipients: Iterable[Recipient]) -> Message:
        """The same message to other recipients."""
        return Message(
            self.kind, self.subject, self.text, tuple(recipients), self.template_id, self.data
        )


def normalise(address: str) -> str:
    """The form addresses are compared in (suppressions, de-duplication): trimmed, lower case."""
    return address.strip().lower()


def unique(recipients: Iterable[Recipient]) -> Iterator[Recipient]:
    """``recipients`` with each address once (the first occurrence wins)."""
    seen: set[str] = set()
    for recipient in recipients:
        key = normalise(recipient.email)
        if key not in seen:
            seen.add(key)
            yield recipient


def chunks(message: Message) -> Iterator[Message]:
    """``message`` split into messages within SendGrid's per-request limits, each address
    once in all of them."""
    recipients = list(unique(message.recipients))
    for start in range(0, len(recipients), MAX_PERSONALIZATIONS):
        yield message.with_recipients(recipients[start : start + MAX_PERSONALIZATIONS])
