"""``[integrations.openai]``: the API key and server, which API, the models per document type,
limits of each call, the price table and the firm's plan.

``base_url`` points the plugin at OpenAI (the default), Azure OpenAI's v1 endpoint
(``https://<resource>.openai.azure.com/openai/v1``) or any compatible server (the sandbox);
``api = "chat"`` uses ``/chat/completions`` for servers without ``/responses``. Every model the
settings name needs a row in the price table, so that a call's worst case can be priced before
it is made. This module imports no part of the ``openai`` SDK.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, ClassVar, Literal, Self
from urllib.parse import urlsplit

from pydantic import AfterValidator, ConfigDict, Field, SecretStr, field_validator, model_validator

from hub.model import IntegrationSettings

NAME = "openai"
DEFAULT_BASE_URL = "https://api.openai.com/v1"
MIB = 1024 * 1024
DocumentType = Literal[
    "tax_return", "financial_statement", "receipt", "invoice", "bank_statement", "generic"
]
DOCUMENT_TYPES: tuple[DocumentType, ...] = (
    "tax_return",
    "financial_statement",
    "receipt",
    "invoice",
    "bank_statement",
    "generic",
)
PlanName = Literal["starter", "professional", "enterprise"]
PRICE_DECIMALS = 4
"""Prices have at most this many decimals, so that costs are exact in integer units."""


def _exact(value: Decimal) -> Decimal:
    exponent = value.as_tuple().exponent
    if not isinstance(exponent, int) or -exponent > PRICE_DECIMALS:
        raise ValueError(f"a price has at most {PRICE_DECIMALS} decimals")
    return value


PriceValue = Annotated[Decimal, Field(ge=0, le=10_000), AfterValidator(_exact)]
FORBID_EXTRA = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class Price:
    """A model's price in US dollars per 1M tokens (a dataclass: cheap to build at import)."""

    __pydantic_config__: ClassVar[ConfigDict] = FORBID_EXTRA

    input: PriceValue
    """Per 1M input tokens not read from the prompt cache."""
    cached_input: PriceValue
    """Per 1M input tokens read from the prompt cache."""
    output: PriceValue
    """Per 1M output tokens (reasoning tokens included)."""


@dataclass(frozen=True)
class Plan:
    """A plan's monthly limits (calendar month, UTC)."""

    __pydantic_config__: ClassVar[ConfigDict] = FORBID_EXTRA

    tokens: Annotated[int, Field(ge=0)]
    """Input plus output tokens per month."""
    cost: Annotated[Decimal, Field(ge=0)]
    """US dollars per month, at the price table's prices."""


def _price(input: str, cached: str, output: str) -> Price:
    return Price(input=Decimal(input), cached_input=Decimal(cached), output=Decimal(output))


DEFAULT_PRICES: dict[str, Price] = {
    "gpt-4o-mini": _price("0.15", "0.075", "0.60"),
    "gpt-4o": _price("2.50", "1.25", "10.00"),
    "gpt-4.1-mini": _price("0.40", "0.10", "1.60"),
    "gpt-4.1": _price("2.00", "0.50", "8.00"),
}
"""OpenAI's list prices (USD per 1M tokens) of the models the defaults use; add rows (or
replace these) with ``[integrations.openai.prices."<model>"]``."""
PLANS: dict[PlanName, Plan] = {
    "starter": Plan(tokens=2_000_000, cost=Decimal("25")),
    "professional": Plan(tokens=10_000_000, cost=Decimal("150")),
    "enterprise": Plan(tokens=50_000_000, cost=Decimal("750")),
}
"""The monthly limits of each plan; ``token_limit`` and ``cost_limit`` override them."""


class OpenAISettings(IntegrationSettings):
    """Settings of the OpenAI integration (``api_key`` required)."""

    api_key: SecretStr
    """The API key (``sk-…``; an Azure OpenAI key with Azure's v1 endpoint)."""
    base_url: str | None = Field(default=None, pattern=r"^https?://[^\s]+$")
    """The API's base URL including ``/v1``; None: OpenAI's, ``https://api.openai.com/v1``."""
    api: Literal["responses", "chat"] = "responses"
    """``responses`` (``/v1/responses``) or ``chat`` (``/v1/chat/completions``)."""
    model: str = Field(default="gpt-4o-mini", min_length=1, max_length=100)
    """The model of every document type without its own entry in ``models``, and of insights."""
    models: dict[DocumentType, str] = Field(default_factory=dict)
    """A model per document type (``tax_return = "gpt-4.1"``)."""
    vision_model: str | None = Field(default=None, min_length=1, max_length=100)
    """A vision-capable model for images (PNG, JPEG); None: images are refused."""
    insights_model: str | None = Field(default=None, min_length=1, max_length=100)
    """The model of client insights; None: ``model``."""
    max_output_tokens: int = Field(default=2000, ge=16, le=100_000)
    """The most output tokens a call may produce (and what the budget check counts)."""
    max_input_chars: int = Field(default=100_000, ge=1000, le=2_000_000)
    """The most characters of a document's text sent; the rest is cut off (and flagged)."""
    max_document_bytes: int = Field(default=20 * MIB, ge=1024, le=512 * MIB)
    """Larger documents are not read for analysis (a failed analysis says so)."""
    max_pdf_pages: int = Field(default=200, ge=1, le=5000)
    """Pages of a PDF whose text is read."""
    image_tokens: int = Field(default=26_000, ge=100, le=1_000_000)
    """The most input tokens an image counts as in the budget check (gpt-4o-mini's largest
    high-detail image is about 25,500)."""
    timeout: float = Field(default=60.0, gt=0, le=600)
    """Seconds a call may take (connect, wait and read)."""
    max_retries: int = Field(default=2, ge=0, le=10)
    """Retries of a call that was rate limited (429, not ``insufficient_quota``), failed with
    5xx or could not connect; each waits the server's ``retry-after-ms``/``retry-after``."""
    max_retry_wait: float = Field(default=60.0, gt=0, le=3600)
    """The longest ``retry-after`` honoured; a longer one fails the call at once."""
    concurrency: int = Field(default=2, ge=1, le=64)
    """Analyses running at once."""
    queue_size: int = Field(default=100, ge=1, le=10_000)
    """Analyses waiting for a slot; past it a request gets 503 with ``Retry-After``."""
    analyze_on_upload: bool = True
    """Analyse every document on ``document.uploaded``."""
    prices: dict[str, Price] = Field(default_factory=dict)
    """Prices per model, added to (or replacing rows of) :data:`DEFAULT_PRICES`."""
    plan: PlanName = "starter"
    """The firm's plan: its monthly token and cost limits (:data:`PLANS`)."""
    token_limit: int | None = Field(default=None, ge=0)
    """Tokens per month instead of the plan's."""
    cost_limit: Decimal | None = Field(default=None, ge=0)
    """US dollars per month instead of the plan's."""

    @field_validator("prices")
    @classmethod
    def _with_defaults(cls, value: dict[str, Price]) -> dict[str, Price]:
        return {**DEFAULT_PRICES, **value}

    @model_validator(mode="after")
    def _every_model_priced(self) -> Self:
        prices = self.prices or DEFAULT_PRICES
        for key, model in self.named_models().items():
            if model not in prices:
                raise ValueError(f'{key}: model {model!r} has no row in prices (add prices."…")')
        return self

    def named_models(self) -> dict[str, str]:
        """Every model the settings name, by the key that names it."""
        named = {"model": self.model}
        named.update({f"models.{kind}": model for kind, model in self.models.items()})
        if self.vision_model:
            named["vision_model"] = self.vision_model
        if self.insights_model:
            named["insights_model"] = self.insights_model
        return named

    def model_for(self, kind: DocumentType) -> str:
        """The model that analyses documents of ``kind``."""
        return self.models.get(kind, self.model)

    def price_of(self, model: str) -> Price:
        """The price of ``model`` (every model the settings name has one)."""
        return (self.prices or DEFAULT_PRICES)[model]

    @property
    def limits(self) -> Plan:
        """This month's limits: the plan's, with ``token_limit`` / ``cost_limit`` applied."""
        plan = PLANS[self.plan]
        return Plan(
            tokens=plan.tokens if self.token_limit is None else self.token_limit,
            cost=plan.cost if self.cost_limit is None else self.cost_limit,
        )

    @property
    def api_base(self) -> str:
        """The base URL calls go to."""
        return (self.base_url or DEFAULT_BASE_URL).rstrip("/")

    @property
    def host(self) -> str:
        """The API's host (the connection's key)."""
        return urlsplit(self.api_base).netloc or "api.openai.com"
