"""The plugin's running parts per hub: the mailer (outbox and channels) and the alert policy,
created by ``startup`` when e-mail is configured and stopped by ``shutdown``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .alerts import AlertMailer
from .mailer import Mailer

if TYPE_CHECKING:
    from hub.api import HubAPI

    from .settings import SendGridSettings


@dataclass(frozen=True)
class Runtime:
    """What runs for one hub."""

    mailer: Mailer
    alerts: AlertMailer


_RUNNING: dict[int, Runtime] = {}


def install(hub: HubAPI, settings: SendGridSettings) -> Runtime:
    """Create the mailer and alert policy of ``hub`` and start the background pass."""
    mailer = Mailer(hub, settings)
    runtime = _RUNNING[id(hub)] = Runtime(mailer, AlertMailer(mailer))
    mailer.start()
    return runtime


async def uninstall(hub: HubAPI) -> None:
    """Stop and forget what runs for ``hub`` (if anything)."""
    runtime = _RUNNING.pop(id(hub), None)
    if runtime is not None:
        await runtime.mailer.stop()


def runtime_of(hub: HubAPI) -> Runtime | None:
    """What runs for ``hub``; None when e-mail is not configured."""
    return _RUNNING.get(id(hub))


def mailer_of(hub: HubAPI) -> Mailer | None:
    """The mailer of ``hub``; None when e-mail is not configured."""
    runtime = _RUNNING.get(id(hub))
    return runtime.mailer if runtime else None
