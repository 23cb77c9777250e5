"""The SMTP channel against a real local aiosmtpd server: plain, STARTTLS and implicit TLS
with a self-signed certificate made here, login; SMTP alone, and as SendGrid's fallback."""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import time
from email import message_from_bytes

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from hub.errors import AuthenticationError, NetworkError
from plugins.sendgrid import smtp
from plugins.sendgrid.message import Message, Recipient
from plugins.sendgrid.settings import SendGridSettings

from .conftest import running, sg_config
from .test_alerts import BAD, alert

USER, PASSWORD = "hub", "smtp-pass"
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
"""aiosmtpd warns about AUTH over a connection it does not see as TLS (implicit TLS, plain)."""


class Inbox:
    """An aiosmtpd handler keeping every message it receives."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 OK"


def authenticate(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        USER.encode(),
        PASSWORD.encode(),
    )
    return AuthResult(success=ok, handled=False)  # unhandled: the server answers 535


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1: (cert path, key path)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(cert_path), str(key_path)


def server_context(certificate) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    return context


@pytest.fixture
def smtp_server(certificate):
    """A factory of running aiosmtpd servers: ``smtp_server(security)`` -> (inbox, port)."""
    started = []

    def start(security: str):
        inbox, port = Inbox(), free_port()
        kwargs = {"authenticator": authenticate, "auth_required": True}
        if security == "starttls":
            kwargs |= {"tls_context": server_context(certificate), "require_starttls": True}
        elif security == "tls":
            # the server sees TLS below SMTP, not a STARTTLS: it must allow AUTH all the same
            kwargs |= {"ssl_context": server_context(certificate), "auth_require_tls": False}
        else:
            kwargs |= {"auth_require_tls": False}
        controller = Controller(inbox, hostname="127.0.0.1", port=port, **kwargs)
        if security == "tls":
            controller.ssl_context = server_context(certificate)  # readiness check over TLS
        controller.start()
        started.append(controller)
        return inbox, port

    yield start
    for controller in started:
        controller.stop()


def smtp_section(port: int, security: str, certificate, **extra):
    return {
        "host": "127.0.0.1",
        "port": port,
        "security": security,
        "username": USER,
        "password": PASSWORD,
        "ca_file": certificate[0],
        **extra,
    }


def message(*emails: str) -> Message:
    return Message("notification", "Hello", "Body text\n", tuple(Recipient(e) for e in emails))


@pytest.mark.parametrize("security", ["starttls", "tls", "none"])
async def test_a_message_goes_through_a_real_smtp_server(smtp_server, certificate, security):
    inbox, port = smtp_server(security)
    settings = SendGridSettings(
        from_email="hub@firm.test",
        from_name="Firm Hub",
        smtp=smtp_section(port, security, certificate),
    )
    await smtp.send(message("a@client.test", "b@client.test"), settings)
    assert [(m[0], m[1]) for m in inbox.messages] == [
        ("hub@firm.test", ["a@client.test"]),
        ("hub@firm.test", ["b@client.test"]),
    ]
    parsed = message_from_bytes(inbox.messages[0][2])
    assert parsed["Subject"] == "Hello" and parsed["From"] == "Firm Hub <hub@firm.test>"
    assert (await smtp.reachable(settings.smtp)).startswith("250")


async def test_a_wrong_password_is_an_authentication_error(smtp_server, certificate):
    _, port = smtp_server("starttls")
    settings = SendGridSettings(
        from_email="hub@firm.test",
        smtp=smtp_section(port, "starttls", certificate, password="wrong"),
    )
    with pytest.raises(AuthenticationError):
        await smtp.send(message("a@client.test"), settings)


async def test_an_untrusted_certificate_is_refused(smtp_server, certificate):
    _, port = smtp_server("starttls")
    settings = SendGridSettings(
        from_email="hub@firm.test", smtp=smtp_section(port, "starttls", certificate, ca_file=None)
    )
    with pytest.raises(NetworkError):
        await smtp.send(message("a@client.test"), settings)


async def test_smtp_alone_carries_alerts(make_hub, smtp_server, certificate, sandbox):
    inbox, port = smtp_server("starttls")
    config = sg_config(sandbox, smtp=smtp_section(port, "starttls", certificate))
    del config["integrations"]["sendgrid"]["api_key"]
    hub = await make_hub(config=config)
    await hub.health.deliver(alert(1, BAD))
    assert len(inbox.messages) == 2  # one per admin
    assert not sandbox.state.requests
    [row] = await running(hub).mailer.tables.query("sends")
    assert (row["status"], row["transport"]) == ("sent", "smtp")


async def test_smtp_delivers_an_alert_when_sendgrid_is_down(
    make_hub, smtp_server, certificate, sandbox
):
    inbox, port = smtp_server("starttls")
    config = sg_config(
        sandbox, request_attempts=1, smtp=smtp_section(port, "starttls", certificate)
    )
    hub = await make_hub(config=config)
    sandbox.state.fail_next(500, count=1)
    await hub.health.deliver(alert(1, BAD))
    subject = message_from_bytes(inbox.messages[0][2])["Subject"]
    assert subject == "[CRITICAL] Integration Failures - Willow & Co"
    [row] = await running(hub).mailer.tables.query("sends")
    assert (row["status"], row["transport"]) == ("sent", "smtp")
    assert row["last_error"] is None


async def test_both_channels_down_keeps_the_alert_for_the_next_pass(
    make_hub, smtp_server, certificate, sandbox
):
    config = sg_config(
        sandbox, request_attempts=1, smtp=smtp_section(free_port(), "starttls", certificate)
    )
    hub = await make_hub(config=config)
    sandbox.state.fail_next(500, count=1)
    await hub.health.deliver(alert(1, BAD))
    mailer = running(hub).mailer
    [row] = await mailer.tables.query("sends")
    assert row["status"] == "retrying"
    assert "sendgrid: server" in row["last_error"] and "smtp: network" in row["last_error"]
    mailer.clock = lambda: time.time() + 120
    await mailer.tick()
    assert (await mailer.tables.get("sends", row["id"]))["transport"] == "sendgrid"
