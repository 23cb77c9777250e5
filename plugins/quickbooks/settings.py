"""``[integrations.quickbooks]``: the Intuit app's keys, the environment and sync tuning.

With no such section the plugin still loads and the integration shows as not configured.
``base_url`` and ``oauth_base_url`` point the plugin at the local sandbox (tests, the demo).
"""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import Field, SecretStr, field_validator

from hub.model import IntegrationSettings

API_BASE_URLS = {
    "sandbox": "https://sandbox-quickbooks.api.intuit.com",
    "production": "https://quickbooks.api.intuit.com",
}
"""Intuit's v3 API hosts per environment (the OAuth endpoints are the same for both)."""
AUTHORIZE_URL = "https://appcenter.intuit.com/connect/oauth2"
TOKEN_URL = "https://oauth.platform.intuit.com/oauth2/v1/tokens/bearer"  # noqa: S105 (a URL)
REVOKE_URL = "https://developer.api.intuit.com/v2/oauth2/tokens/revoke"
"""Intuit's endpoints, from its OpenID discovery document."""
ReportName = Literal[
    "ProfitAndLoss",
    "BalanceSheet",
    "CashFlow",
    "TrialBalance",
    "AgedReceivables",
    "AgedPayables",
    "GeneralLedger",
]
REPORT_NAMES: tuple[ReportName, ...] = get_args(ReportName)
"""The Intuit reports a reports sync can read (aging reports in their summary form)."""
DEFAULT_REPORT_PERIODS = ("months:12", "fiscal_ytd", "last_fiscal_year")


class QuickBooksSettings(IntegrationSettings):
    """Settings of the QuickBooks Online integration (``client_id``/``client_secret`` required)."""

    client_id: str = Field(min_length=1)
    client_secret: SecretStr
    environment: Literal["sandbox", "production"] = "sandbox"
    """Which Intuit API host to call; the app's keys decide which companies it may reach."""
    redirect_uri: str | None = None
    """The callback URL registered with the Intuit app; None: the hub's public URL
    (``server.public_url``, else the listening address) + ``/oauth/quickbooks/callback``."""
    webhook_verifier_token: SecretStr | None = None
    """The app's webhook verifier token; webhooks are refused (401) while it is unset."""
    minor_version: int = Field(default=75, ge=1)
    """``minorversion`` sent with every API call."""
    oauth_base_url: str | None = None
    """Serve authorize/token/revoke from this base instead of Intuit's (the sandbox)."""
    streams: list[str] | None = None
    """Sync only these streams (default: all)."""
    requests_per_minute: int = Field(default=500, ge=10)
    """Intuit's per-company budget; no 60-second window ever holds more requests than this."""
    requests_per_second: int = Field(default=10, ge=1)
    """Intuit's per-company and app budget per second; no 1-second window ever holds more."""
    max_concurrent: int = Field(default=10, ge=1)
    """Intuit's per-company cap on requests in flight."""
    throttle_wait_s: float = Field(default=60.0, ge=0)
    """After Intuit throttles a call (429), the company's calls pause this long, as Intuit
    advises (its budget counts per minute)."""
    retry_attempts: int = Field(default=8, ge=1)
    """Tries per API call on 429, 5xx, a Fault in a 200, a timeout or a reset."""
    retry_base_delay: float = Field(default=1.0, gt=0)
    """Seconds before the first retry, doubling (full jitter) up to a minute; never sooner
    than a ``Retry-After``. Intuit's throttle counts per minute, so be patient."""
    page_size: int = Field(default=1000, ge=2, le=1000)
    """``MAXRESULTS`` of each query page (Intuit's maximum is 1000)."""
    cdc_overlap_seconds: int = Field(default=60, ge=0)
    """How far before the last answer's time the next change-data-capture call starts
    (changes are stamped to the second; re-reading a few is harmless)."""
    cdc_catchup_hours: float = Field(default=24.0, gt=0)
    """Health turns ``warning`` when no sync (the CDC catch-up that runs even while webhooks
    flow) has succeeded for this long."""
    refresh_warning_days: int = Field(default=14, ge=1)
    """Health turns ``warning`` this long before the refresh token expires."""
    sync_on_connect: bool = True
    """Start a first (full) sync as soon as a company is connected."""
    reports: list[ReportName] = Field(default_factory=lambda: list(REPORT_NAMES), min_length=1)
    """The financial reports the ``reports`` stream reads for every period."""
    report_periods: list[str] = Field(
        default_factory=lambda: list(DEFAULT_REPORT_PERIODS), min_length=1, max_length=64
    )
    """The periods the reports cover: ``months:N`` (each of the last N complete months,
    N <= 36), ``fiscal_ytd`` (this fiscal year to date), ``last_fiscal_year``, or a fixed
    ``YYYY-MM-DD..YYYY-MM-DD``. Fiscal years start in CompanyInfo's FiscalYearStartMonth."""
    report_basis: Literal["accrual", "cash"] | None = None
    """The accounting basis of the reports; None: the company's Preferences
    (``ReportPrefs.ReportBasis``)."""
    reports_interval: int = Field(default=86400, ge=0)
    """Seconds between two report syncs in incremental runs (a full sync always reads them;
    0: every sync)."""
    reports_per_minute: int = Field(default=100, ge=1)
    """Report calls per company in any 60 seconds (Intuit throttles the Reports API on its
    own, tighter budget); they also count against the company's other limits."""

    @field_validator("streams")
    @classmethod
    def _known_streams(cls, value: list[str] | None) -> list[str] | None:
        from .reports import ALL_STREAMS  # imported here: reports imports this module

        known = {stream.name for stream in ALL_STREAMS}
        unknown = [name for name in value or () if name not in known]
        if unknown:
            raise ValueError(f"unknown stream(s) {unknown}; known: {sorted(known)}")
        return value

    @field_validator("report_periods")
    @classmethod
    def _known_periods(cls, value: list[str]) -> list[str]:
        from .reports import parse_period  # imported here: reports imports this module

        for text in value:
            parse_period(text)
        return value

    @property
    def api_base_url(self) -> str:
        """The v3 API host: ``base_url`` if set, else the environment's."""
        return (self.base_url or API_BASE_URLS[self.environment]).rstrip("/")

    def _oauth(self, path: str, default: str) -> str:
        return f"{self.oauth_base_url.rstrip('/')}{path}" if self.oauth_base_url else default

    @property
    def authorize_url(self) -> str:
        """Where the admin's browser is sent to grant access."""
        return self._oauth("/connect/oauth2", AUTHORIZE_URL)

    @property
    def token_url(self) -> str:
        """The token endpoint (code exchange and refresh)."""
        return self._oauth("/oauth2/v1/tokens/bearer", TOKEN_URL)

    @property
    def revoke_url(self) -> str:
        """The token revocation endpoint."""
        return self._oauth("/v2/oauth2/tokens/revoke", REVOKE_URL)
