"""Usage and limits: what each call cost, this month's totals, and the plan's budget.

Every call's tokens and cost are recorded (``calls``) and added to the month's totals per
model (``months``) in one transaction. Before a call, :class:`Budget` checks its worst case
-- the bound of its input in tokens plus ``max_output_tokens``, at the model's price --
against what the month has used plus what calls in flight have reserved; a call that could
exceed the plan's tokens or cost is refused before it is made (:class:`BudgetExceeded`).
A token is at least one byte of UTF-8 text, so the input's bytes bound its tokens.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson

from hub.api import HubAPI, TableSession
from hub.errors import HubError

from .settings import OpenAISettings, Plan, Price

UNITS_PER_USD = 10**10
"""Costs are kept in integer units of 1e-10 USD: exact for prices of up to 4 decimals."""
PRICE_SCALE = 10**4
"""A price per 1M tokens times this is the cost of one token in units."""
RATE_LIMIT_PREFIX = "x-ratelimit-"


class BudgetExceeded(HubError):
    """A call's worst case would exceed the plan's remaining monthly tokens or cost."""

    error_class = "plan_limit"
    advice = "raise integrations.openai.plan (or token_limit / cost_limit), or wait for next month"


@dataclass(frozen=True)
class Tokens:
    """The tokens a call used."""

    input: int
    cached: int
    output: int

    @property
    def total(self) -> int:
        """Input plus output tokens (what the plan's token limit counts)."""
        return self.input + self.output


def cost_units(price: Price, tokens: Tokens) -> int:
    """The cost of ``tokens`` at ``price`` in units (exact)."""
    uncached = max(tokens.input - tokens.cached, 0)
    cached = min(tokens.cached, tokens.input)
    scaled = uncached * price.input + cached * price.cached_input + tokens.output * price.output
    return int(scaled * PRICE_SCALE)


def usd(units: int) -> str:
    """``units`` as US dollars, exact (``"0.0001235"``)."""
    value = (Decimal(units) / UNITS_PER_USD).normalize()
    return f"{value:f}"


def month_of(at: datetime) -> str:
    """The calendar month (UTC) ``at`` counts in: ``2026-12``."""
    return at.astimezone(UTC).strftime("%Y-%m")


@dataclass(frozen=True)
class Call:
    """One model call as it is recorded."""

    purpose: str
    """``analysis``, ``insights`` or ``health``."""
    subject: str | None
    """The document id or client id it was for."""
    model: str
    tokens: Tokens
    request_id: str | None
    outcome: str
    """``ok``, ``nonconforming`` (the answer failed validation) or ``refused``."""


async def record(
    hub: HubAPI, settings: OpenAISettings, call: Call, rate_limits: dict[str, str]
) -> int:
    """Store ``call`` and add it to the month's totals (one transaction); the cost in units.

    :param rate_limits: the answer's ``x-ratelimit-*`` headers (kept for health).
    """
    now = datetime.now(UTC)
    units = cost_units(settings.price_of(call.model), call.tokens)
    row = {
        "at": now.isoformat(),
        "month": month_of(now),
        "purpose": call.purpose,
        "subject": call.subject,
        "model": call.model,
        "input_tokens": call.tokens.input,
        "cached_tokens": call.tokens.cached,
        "output_tokens": call.tokens.output,
        "cost_units": units,
        "request_id": call.request_id,
        "outcome": call.outcome,
    }

    def write(tx: TableSession) -> None:
        columns = ", ".join(row)
        tx.execute(
            f"INSERT INTO {{calls}} ({columns}) VALUES ({', '.join('?' for _ in row)})",  # noqa: S608
            list(row.values()),
        )
        tx.execute(
            "INSERT INTO {months} (month, model, calls, input_tokens, cached_tokens,"
            " output_tokens, cost_units) VALUES (?, ?, 1, ?, ?, ?, ?)"
            " ON CONFLICT (month, model) DO UPDATE SET calls = calls + 1,"
            " input_tokens = input_tokens + excluded.input_tokens,"
            " cached_tokens = cached_tokens + excluded.cached_tokens,"
            " output_tokens = output_tokens + excluded.output_tokens,"
            " cost_units = cost_units + excluded.cost_units",
            [
                row["month"],
                call.model,
                call.tokens.input,
                call.tokens.cached,
                call.tokens.output,
                units,
            ],
        )
        if rate_limits:
            headers = orjson.dumps(rate_limits).decode()
            tx.upsert("rate_limits", [{"host": settings.host, "at": row["at"], "headers": headers}])

    await hub.tables(__name__).transaction(write)
    return units


@dataclass(frozen=True)
class MonthUsage:
    """A month's usage: totals and per model."""

    month: str
    tokens: int
    cost_units: int
    models: list[dict[str, Any]]


async def month_usage(hub: HubAPI, month: str | None = None) -> MonthUsage:
    """The usage of ``month`` (default: this one)."""
    month = month or month_of(datetime.now(UTC))
    rows = await hub.tables(__name__).query("months", "month = ?", [month], order_by="model")
    models = [
        {
            "model": row["model"],
            "calls": row["calls"],
            "input_tokens": row["input_tokens"],
            "cached_tokens": row["cached_tokens"],
            "output_tokens": row["output_tokens"],
            "cost_usd": usd(row["cost_units"]),
        }
        for row in rows
    ]
    tokens = sum(row["input_tokens"] + row["output_tokens"] for row in rows)
    return MonthUsage(month, tokens, sum(row["cost_units"] for row in rows), models)


def limit_units(plan: Plan) -> int:
    """The plan's monthly cost in units."""
    return int(plan.cost * UNITS_PER_USD)


def share(used: int, limit: int) -> float:
    """How much of ``limit`` is used (1.0: all of it; a zero limit is always used up)."""
    return 1.0 if limit <= 0 else round(used / limit, 4)


async def report(hub: HubAPI, settings: OpenAISettings) -> dict[str, Any]:
    """This month's usage against the plan's limits (``GET /api/openai/usage``, health)."""
    used = await month_usage(hub)
    limits = settings.limits
    cost_limit = limit_units(limits)
    return {
        "month": used.month,
        "plan": settings.plan,
        "limits": {"tokens": limits.tokens, "cost_usd": usd(cost_limit)},
        "used": {"tokens": used.tokens, "cost_usd": usd(used.cost_units)},
        "share": {
            "tokens": share(used.tokens, limits.tokens),
            "cost": share(used.cost_units, cost_limit),
        },
        "remaining": {
            "tokens": max(limits.tokens - used.tokens, 0),
            "cost_usd": usd(max(cost_limit - used.cost_units, 0)),
        },
        "models": used.models,
        "rate_limits": await last_rate_limits(hub, settings),
    }


async def last_rate_limits(hub: HubAPI, settings: OpenAISettings) -> dict[str, Any] | None:
    """The ``x-ratelimit-*`` headers of the last answer from the API, and when."""
    row = await hub.tables(__name__).get("rate_limits", settings.host)
    if row is None:
        return None
    return {"at": row["at"], "headers": orjson.loads(row["headers"])}


def rate_limit_headers(headers: Any) -> dict[str, str]:
    """The ``x-ratelimit-*`` headers of an answer."""
    return {
        name.lower(): value
        for name, value in headers.items()
        if name.lower().startswith(RATE_LIMIT_PREFIX)
    }


class Budget:
    """The month's budget of one hub: reservations of the calls in flight, checked under one
    lock against the recorded usage, so concurrent calls cannot together pass the limit."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._tokens = 0
        self._units = 0

    @asynccontextmanager
    async def reserve(
        self, hub: HubAPI, settings: OpenAISettings, model: str, input_bound: int
    ) -> AsyncIterator[None]:
        """Reserve the worst case of one call of ``model`` for as long as the block runs.

        :param input_bound: the most input tokens the call can count.
        :raise BudgetExceeded: the worst case does not fit in what the month has left.
        """
        worst = Tokens(input=input_bound, cached=0, output=settings.max_output_tokens)
        units = cost_units(settings.price_of(model), worst)
        async with self._lock:
            used = await month_usage(hub)
            limits = settings.limits
            tokens_left = limits.tokens - used.tokens - self._tokens
            units_left = limit_units(limits) - used.cost_units - self._units
            if worst.total > tokens_left:
                raise BudgetExceeded(
                    f"plan limit: this call could use {worst.total} tokens and the "
                    f"{settings.plan} plan has {max(tokens_left, 0)} of {limits.tokens} left "
                    f"this month ({used.month})"
                )
            if units > units_left:
                raise BudgetExceeded(
                    f"plan limit: this call could cost ${usd(units)} and the {settings.plan} "
                    f"plan has ${usd(max(units_left, 0))} of ${usd(limit_units(limits))} "
                    f"left this month ({used.month})"
                )
            self._tokens += worst.total
            self._units += units
        try:
            yield
        finally:
            self._tokens -= worst.total
            self._units -= units
