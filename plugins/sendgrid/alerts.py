"""Alert e-mails to the admins, one per state change, never a storm.

Every alert updates the connection's row in ``alert_state``. A connection that has had no
alert e-mail within ``alert_min_interval`` seconds gets one at once; a change inside that
window is coalesced: the background pass sends one summary when the window ends ("changed
state N times", the status it has then). Reminders (the hub re-sends an open alert every
``health.reminder_interval``) go through the same window. Each e-mail lists every connection
failing at that moment, worst first, with its message and a link to its place on the admin
page (``server.public_url``); the subject says the worst severity:
``[CRITICAL] Integration Failures - <firm>``, ``[WARNING] Integration Warnings - <firm>`` or
``[RESOLVED] Integrations Healthy - <firm>``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from hub.model import HealthStatus

from .mailer import recipients_of, stamp
from .message import Message

if TYPE_CHECKING:
    from hub.api import Row
    from hub.model import Alert

    from .mailer import Mailer

RANK = {"disconnected": 0, "error": 1, "warning": 2, "healthy": 3}
CRITICAL = frozenset({"error", "disconnected"})


def subject(firm: str, statuses: Sequence[str]) -> tuple[str, str]:
    """``(severity, subject)`` of an alert e-mail about connections in ``statuses``."""
    if CRITICAL & set(statuses):
        return "CRITICAL", f"[CRITICAL] Integration Failures - {firm}"
    if "warning" in statuses:
        return "WARNING", f"[WARNING] Integration Warnings - {firm}"
    return "RESOLVED", f"[RESOLVED] Integrations Healthy - {firm}"


def link(base_url: str, connection_id: str) -> str:
    """The connection's place on the admin page."""
    return f"{base_url}/admin#connection-{quote(connection_id, safe='')}"


class AlertMailer:
    """The alert policy of one hub's mailer."""

    def __init__(self, mailer: Mailer) -> None:
        self.mailer = mailer
        self.tables = mailer.tables
        mailer.ticks.append(self.flush)

    @property
    def enabled(self) -> bool:
        """Alert e-mail is on when admins' addresses are configured."""
        return bool(self.mailer.settings.alert_recipients)

    async def on_alert(self, alert: Alert) -> None:
        """Record ``alert``; e-mail now if its connection is outside its quiet window."""
        if not self.enabled:
            return
        now = self.mailer.clock()
        row = await self.tables.get("alert_state", alert.connection_id)
        changes = int(row["changes"]) if row else 0
        await self.tables.upsert(
            "alert_state",
            [
                {
                    "connection_id": alert.connection_id,
                    "integration": alert.integration,
                    "title": alert.connection_title,
                    "status": alert.status.value,
                    "message": alert.message,
                    "changed_at": alert.created_at or stamp(),
                    "changes": changes + (0 if alert.reminder else 1),
                }
            ],
        )
        if alert.reminder and alert.status is HealthStatus.HEALTHY:
            return
        mailed_at = row["mailed_at"] if row else None
        if mailed_at is None or now - float(mailed_at) >= self.mailer.settings.alert_min_interval:
            await self.mail([alert.connection_id], reminder=alert.reminder)

    async def flush(self) -> None:
        """Send the summary of the changes coalesced in windows that have ended."""
        if not self.enabled:
            return
        window_start = self.mailer.clock() - self.mailer.settings.alert_min_interval
        rows = await self.tables.query(
            "alert_state", "changes > 0 AND mailed_at <= ?", [window_start]
        )
        if rows:
            await self.mail([str(row["connection_id"]) for row in rows], reminder=False)

    async def mail(self, about: Sequence[str], reminder: bool) -> None:
        """E-mail the admins the failing connections, and what changed for ``about``."""
        rows = await self.tables.query("alert_state", order_by="connection_id")
        shown = [r for r in rows if r["status"] != "healthy" or r["connection_id"] in about]
        shown.sort(key=lambda r: (RANK.get(str(r["status"]), 9), str(r["connection_id"])))
        settings = self.mailer.settings
        severity, title = subject(settings.firm_name, [str(r["status"]) for r in shown])
        if reminder:
            title = f"{title} (reminder)"
        base = self.mailer.hub.public_url
        items = [self._item(row, base, row["connection_id"] in about) for row in shown]
        message = Message(
            kind="alert",
            subject=title,
            text=_text(settings.firm_name, severity, items),
            recipients=recipients_of(settings.alert_recipients),
            template_id=settings.templates.integration_alert,
            data={
                "firm": settings.firm_name,
                "severity": severity,
                "subject": title,
                "items": items,
            },
        )
        await self.mailer.send(message)
        now = self.mailer.clock()
        await self.mailer.update(
            "alert_state",
            "connection_id",
            [
                {"connection_id": r["connection_id"], "mailed_status": r["status"]}
                | {"mailed_at": now, "changes": 0}
                for r in rows
                if r["connection_id"] in about
            ],
        )

    @staticmethod
    def _item(row: Row, base: str, changed: bool) -> dict[str, Any]:
        changes = int(row["changes"])
        note = f"changed state {changes} times since the last e-mail" if changes > 1 else ""
        return {
            "integration": row["integration"],
            "connection": row["connection_id"],
            "title": row["title"],
            "status": row["status"],
            "message": row["message"],
            "url": link(base, str(row["connection_id"])),
            "changed": changed,
            "note": note,
        }


def _text(firm: str, severity: str, items: Sequence[dict[str, Any]]) -> str:
    failing = [i for i in items if i["status"] != "healthy"]
    lines = [f"{firm}: {len(failing)} integration connection(s) need attention.", ""]
    if severity == "RESOLVED":
        lines = [f"{firm}: every integration connection is healthy again.", ""]
    for item in items:
        lines.append(f"- {item['title']} ({item['integration']}): {item['status'].upper()}")
        if item["message"]:
            lines.append(f"  {item['message']}")
        if item["note"]:
            lines.append(f"  ({item['note']})")
        lines.append(f"  {item['url']}")
    return "\n".join(lines) + "\n"
