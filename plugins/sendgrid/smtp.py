"""The SMTP channel (aiosmtplib): STARTTLS, implicit TLS or plain, with optional login.

Each recipient gets their own message (the plain-text body; SMTP has no templates), over one
connection per send. ``aiosmtplib`` is imported when the channel is first used.
"""

from __future__ import annotations

import ssl
from email.message import EmailMessage
from email.utils import formataddr, make_msgid
from typing import TYPE_CHECKING

from hub.errors import AuthenticationError, NetworkError, ProviderError, ValidationError

if TYPE_CHECKING:
    import aiosmtplib

    from .message import Message
    from .settings import SendGridSettings, SmtpSettings


def _tls_context(smtp: SmtpSettings) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=smtp.ca_file)


def _client(smtp: SmtpSettings) -> aiosmtplib.SMTP:
    import aiosmtplib

    return aiosmtplib.SMTP(
        hostname=smtp.host,
        port=smtp.port,
        use_tls=smtp.security == "tls",
        start_tls=smtp.security == "starttls",
        tls_context=_tls_context(smtp) if smtp.security != "none" else None,
        timeout=smtp.timeout,
    )


def _error(exc: Exception) -> ProviderError:
    import aiosmtplib

    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        return AuthenticationError(f"SMTP login refused: {exc}")
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused | aiosmtplib.SMTPSenderRefused):
        return ValidationError(f"SMTP refused the message: {exc}")
    return NetworkError(f"SMTP: {type(exc).__name__}: {exc}")


def _emails(message: Message, settings: SendGridSettings) -> list[EmailMessage]:
    sender = formataddr((settings.from_name, settings.from_email))
    out = []
    for recipient in message.recipients:
        mail = EmailMessage()
        mail["From"] = sender
        mail["To"] = formataddr((recipient.name, recipient.email))
        mail["Subject"] = message.subject
        mail["Message-ID"] = make_msgid(domain=settings.from_email.rpartition("@")[2])
        mail.set_content(message.text)
        out.append(mail)
    return out


async def send(message: Message, settings: SendGridSettings) -> str:
    """Send ``message`` by SMTP; return the first Message-ID.

    :raise ProviderError: classified (login refused, recipients refused, unreachable).
    """
    smtp = settings.smtp
    if smtp is None:
        raise ValueError("no [integrations.sendgrid.smtp] is configured")
    import aiosmtplib

    mails = _emails(message, settings)
    try:
        async with _client(smtp) as client:
            if smtp.username and smtp.password:
                await client.login(smtp.username, smtp.password.get_secret_value())
            for mail in mails:
                await client.send_message(mail)
    except (aiosmtplib.SMTPException, OSError) as exc:
        raise _error(exc) from None
    return str(mails[0]["Message-ID"]) if mails else ""


async def reachable(smtp: SmtpSettings) -> str:
    """Connect (and log in when configured), then quit; the server's greeting.

    :raise ProviderError: classified, as :func:`send`.
    """
    import aiosmtplib

    try:
        async with _client(smtp) as client:
            if smtp.username and smtp.password:
                await client.login(smtp.username, smtp.password.get_secret_value())
            code, text = await client.noop()
            return f"{code} {text}".strip()
    except (aiosmtplib.SMTPException, OSError) as exc:
        raise _error(exc) from None
