"""Client insights: ``POST /api/clients/{id}/insights``.

The key figures are the hub's (``hub.key_figures(client_id=…)``, computed by the accounting
plugin from its synced reports; the newest set is used). The model is given them and writes
only the narrative -- overall health, summary, strengths, concerns, recommendations and a
risk level -- as a structured output (:class:`Narrative`). The answer carries the hub's
figures beside that narrative, and the narrative is grounded (:mod:`.grounding`): an item
quoting a number that is not among the hub's figures is removed and flagged.

Answers: 200 ``{"insight_id", "client_id", "client_name", "model", "created_at", "figures":
<the KeyFigures JSON>, "narrative": {"health", "summary", "strengths", "concerns",
"recommendations", "risk_level"}, "flags": [...], "request_id"}``; 404 unknown client; 422
when the client has no key figures (the reason says why); 402 when the plan's budget or the
account's quota is used up; 503 with ``Retry-After`` when rate limited; 502 when the call
failed or the answer did not conform.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

import orjson
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from hub.errors import AuthenticationError, ProviderError, RateLimitError
from hub.model import KeyFigures

from .client import QuotaExceeded
from .extract import Content
from .grounding import ground
from .usage import BudgetExceeded

if TYPE_CHECKING:
    from .service import Runtime

Text = Annotated[str, Field(max_length=1000)]
INSTRUCTIONS = (
    "You advise an accounting firm about one client. You are given the client's financial key "
    "figures, computed by the firm's systems. Write the narrative only: the overall health, a "
    "short summary, strengths, concerns, recommendations and the risk level. Do not write any "
    'number, percentage or amount: name the figure instead ("the current ratio is comfortable'
    '"); the firm shows the figures beside your text, and a sentence quoting a number is '
    "removed."
)
RETRY_AFTER_S = 30


class Narrative(BaseModel):
    """The model's part of client insights: words only."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    health: Literal["strong", "stable", "weak", "critical"]
    summary: Text
    strengths: list[Text] = Field(max_length=8)
    concerns: list[Text] = Field(max_length=8)
    recommendations: list[Text] = Field(max_length=8)
    risk_level: Literal["low", "medium", "high"]


def figures_text(client_name: str, figures: KeyFigures) -> str:
    """The key figures as the model reads them."""
    lines = [
        f"client: {client_name}",
        f"company: {figures.company}",
        f"currency: {figures.currency}, basis: {figures.basis}",
        f"period: {figures.period_start.isoformat()} to {figures.period_end.isoformat()}",
    ]
    lines += [
        f"{name}: {'not computable' if value is None else value}"
        for name, value in figures.figures.items()
    ]
    lines += [f"{name}: {value}" for name, value in figures.amounts.items()]
    return "\n".join(lines)


def _error(status: int, reason: str, **extra: Any) -> web.Response:
    headers = extra.pop("headers", None)
    return web.json_response({"error": reason, **extra}, status=status, headers=headers)


def _failure(exc: Exception) -> web.Response:
    if isinstance(exc, BudgetExceeded | QuotaExceeded):
        return _error(402, str(exc), error_class=exc.error_class)
    if isinstance(exc, RateLimitError):
        headers = {"Retry-After": str(RETRY_AFTER_S)}
        return _error(503, str(exc), error_class=exc.error_class, headers=headers)
    assert isinstance(exc, ProviderError)
    return _error(502, str(exc), error_class=exc.error_class)


async def _client(runtime: Runtime, raw_id: str) -> dict[str, Any] | None:
    if not raw_id.isdigit():
        return None
    wanted = int(raw_id)
    for client in await runtime.hub.clients.list():
        if client["id"] == wanted:
            return client
    return None


async def client_insights(request: web.Request, runtime: Runtime) -> web.Response:
    """``POST /api/clients/{id}/insights`` (see the module docstring)."""
    client = await _client(runtime, request.match_info["id"])
    if client is None:
        return _error(404, f"no client {request.match_info['id']!r}")
    found = await runtime.hub.key_figures(client_id=client["id"])
    if not found:
        return _error(
            422,
            f"client {client['id']} has no key figures: no connection linked to it has synced "
            "reports yet (link the client's accounting company, then sync its reports)",
        )
    figures = found[0]
    settings = runtime.settings
    model = settings.insights_model or settings.model
    content = Content(text=figures_text(str(client["name"]), figures))
    bound = len(INSTRUCTIONS.encode()) + len(content.text.encode())
    bound += len(orjson.dumps(Narrative.model_json_schema())) + 64
    try:
        answer = await runtime.ask(
            "insights", str(client["id"]), model, INSTRUCTIONS, content, Narrative, bound
        )
    except (BudgetExceeded, ProviderError) as exc:
        if isinstance(exc, AuthenticationError):
            await runtime.analysis.disconnect()
        return _failure(exc)
    if answer.parsed is None:
        return _error(
            502, f"{answer.problem} (request {answer.request_id})", error_class="nonconforming"
        )
    narrative, flags = ground(answer.parsed.model_dump(mode="json"), figures)
    result = {
        "insight_id": "ins_" + secrets.token_hex(12),
        "client_id": client["id"],
        "client_name": client["name"],
        "model": model,
        "created_at": datetime.now(UTC).isoformat(),
        "figures": figures.as_json(),
        "narrative": narrative,
        "flags": flags,
        "request_id": answer.request_id,
    }
    row = {
        "id": result["insight_id"],
        "client_id": client["id"],
        "created_at": result["created_at"],
        "model": model,
        "answer": orjson.dumps(result).decode(),
    }
    await runtime.hub.tables(__name__).upsert("insights", [row])
    return web.json_response(result)
