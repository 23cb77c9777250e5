"""Health and diagnostics of the e-mail connection.

Checks: the API key is accepted (``GET /v3/scopes``, a cheap authenticated call) and may
send mail (``mail.send`` scope), the sender is a verified single sender when the API lists
it, the last send's result, e-mails waiting or given up, the suppression count, and the SMTP
server reachable (connect, TLS, login) when one is configured. A refused key raises
``AuthenticationError`` (the hub marks the connection ``disconnected``). The diagnostics dump
reports the same facts; the hub redacts it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hub.errors import AuthenticationError, AuthorizationError, ProviderError, error_class_of
from hub.model import HealthCheck, HealthReport, HealthStatus

from . import smtp

if TYPE_CHECKING:
    from .mailer import Mailer


async def _sendgrid_checks(mailer: Mailer) -> list[HealthCheck]:
    client = mailer.sendgrid
    if client is None:
        return []
    try:
        scopes = await client.scopes()
    except AuthenticationError:
        raise
    except ProviderError as exc:
        return [HealthCheck("API key valid", False, f"{exc.error_class}: {exc}"[:300])]
    checks = [
        HealthCheck("API key valid", True, f"{len(scopes)} scopes"),
        HealthCheck("may send mail", "mail.send" in scopes, "scope mail.send"),
    ]
    sender = mailer.settings.from_email.lower()
    try:
        senders = await client.verified_senders()
    except (AuthorizationError, ProviderError):
        return checks  # the key may not read senders (a domain-authenticated account)
    listed = [s for s in senders if str(s.get("from_email", "")).lower() == sender]
    if listed:
        verified = bool(listed[0].get("verified"))
        checks.append(HealthCheck("sender verified", verified, sender))
    return checks


async def _smtp_check(mailer: Mailer) -> list[HealthCheck]:
    settings = mailer.settings.smtp
    if settings is None:
        return []
    where = f"{settings.host}:{settings.port} ({settings.security})"
    try:
        greeting = await smtp.reachable(settings)
    except ProviderError as exc:
        return [HealthCheck("SMTP reachable", False, f"{where}: {exc}"[:300])]
    return [HealthCheck("SMTP reachable", True, f"{where}: {greeting}"[:300])]


async def _outbox_checks(mailer: Mailer) -> list[HealthCheck]:
    last = await mailer.tables.query(
        "sends", "status != 'suppressed'", order_by="updated_at DESC", limit=1
    )
    waiting = await mailer.count("sends", "status IN ('queued', 'retrying')")
    suppressed = await mailer.count("suppressions")
    checks = []
    if last:
        row = last[0]
        ok = row["status"] not in ("failed", "retrying")
        detail = f"{row['status']} at {row['updated_at']}"
        if row["last_error"]:
            detail += f": {row['last_error']}"
        checks.append(HealthCheck("last send", ok, detail[:300]))
    checks.append(HealthCheck("e-mails waiting", waiting == 0, f"{waiting} to resend"))
    checks.append(HealthCheck("suppressions", True, f"{suppressed} addresses"))
    return checks


async def diagnose(mailer: Mailer) -> HealthReport:
    """The connection's health report.

    :raise AuthenticationError: SendGrid refused the API key.
    """
    remote = [*await _sendgrid_checks(mailer), *await _smtp_check(mailer)]
    checks = [*remote, *await _outbox_checks(mailer)]
    channel_ok = [c.ok for c in remote if c.name in ("API key valid", "SMTP reachable")]
    if channel_ok and not any(channel_ok):
        return HealthReport(HealthStatus.ERROR, "no e-mail channel works", checks)
    bad = [c for c in checks if not c.ok]
    if bad:
        message = "; ".join(f"{c.name}: {c.detail}" for c in bad)
        return HealthReport(HealthStatus.WARNING, message[:500], checks)
    return HealthReport(HealthStatus.HEALTHY, "e-mail channels ready", checks)


async def dump(mailer: Mailer) -> dict[str, Any]:
    """The troubleshooting facts for the hub's diagnostics dump."""
    settings = mailer.settings
    out: dict[str, Any] = {
        "channels": [name for name, _ in mailer.channels()],
        "api_host": settings.api_base_url if settings.api_key else None,
        "from_email": settings.from_email,
        "alert_recipients": len(settings.alert_recipients),
        "event_webhook_keys": len(settings.verification_keys),
        "rate_limit": {"remaining": mailer.gate.remaining, "reset_at": mailer.gate.reset_at},
    }
    try:
        report = await diagnose(mailer)
        out["checks"] = [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in report.checks]
    except Exception as exc:
        out["checks"] = {"error": f"{error_class_of(exc)}: {exc}"[:300]}
    counts: dict[str, int] = {}
    for status in ("queued", "retrying", "sent", "failed", "delivered", "suppressed"):
        counts[status] = await mailer.count("sends", "status = ?", [status])
    out["sends"] = counts
    return out
