"""Prometheus metrics, one registry per hub (tests run many hubs in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from hub.store.records import BatchCounts

DURATION_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)


class Metrics:
    """The hub's counters and histograms; ``render()`` gives the text format."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.syncs = Counter(
            "hub_syncs", "Sync runs finished", ["integration", "state"], registry=r
        )
        self.sync_errors = Counter(
            "hub_sync_errors",
            "Failed sync runs by error class",
            ["integration", "error_class"],
            registry=r,
        )
        self.sync_duration = Histogram(
            "hub_sync_duration_seconds",
            "Sync run duration",
            ["integration"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.records_written = Counter(
            "hub_records",
            "Records written by syncs",
            ["integration", "stream", "action"],
            registry=r,
        )
        self.syncs_running = Gauge("hub_syncs_running", "Syncs in progress", registry=r)
        self.http_requests = Counter(
            "hub_http_requests", "HTTP requests served", ["method", "route", "status"], registry=r
        )
        self.http_duration = Histogram(
            "hub_http_request_duration_seconds", "HTTP request duration", ["route"], registry=r
        )
        self.webhooks = Counter(
            "hub_webhooks",
            "Webhook requests by source and outcome",
            ["source", "outcome"],
            registry=r,
        )
        self.webhooks_rejected = Counter(
            "hub_webhooks_rejected",
            "Webhook requests refused before anything was stored, by reason",
            ["reason"],
            registry=r,
        )
        self._request_children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self._webhook_children: dict[tuple[str, str], Counter] = {}
        self.connection_health = Gauge(
            "hub_connection_healthy",
            "1 if the connection is healthy",
            ["integration", "connection"],
            registry=r,
        )

    def request_served(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count and time one HTTP request (label children are cached: this is a hot path)."""
        key = (method, route, status)
        children = self._request_children.get(key)
        if children is None:
            children = (
                self.http_requests.labels(method, route, str(status)),
                self.http_duration.labels(route),
            )
            self._request_children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def webhook(self, source: str, outcome: str) -> None:
        """Count one webhook request of ``source`` by outcome (children cached: a hot path)."""
        child = self._webhook_children.get((source, outcome))
        if child is None:
            child = self._webhook_children[source, outcome] = self.webhooks.labels(source, outcome)
        child.inc()

    def records(self, integration: str, stream: str, counts: BatchCounts) -> None:
        """Count one batch's created, updated and deleted records."""
        for action, value in (
            ("created", counts.created),
            ("updated", counts.updated),
            ("deleted", counts.deleted),
        ):
            if value:
                self.records_written.labels(integration, stream, action).inc(value)

    def sync_finished(
        self, integration: str, state: str, error_class: str | None, duration_s: float
    ) -> None:
        """Count a finished run and observe its duration."""
        self.syncs.labels(integration, state).inc()
        self.sync_duration.labels(integration).observe(duration_s)
        if state == "failed" and error_class:
            self.sync_errors.labels(integration, error_class).inc()

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
