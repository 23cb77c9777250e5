"""Metrics of several processes as one: the daemon's ``/metrics`` adds its ingest workers'."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from hub.metrics import Metrics


def values(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(metrics.render().decode())
        for sample in family.samples
        if not sample.name.endswith("_created")
    }


def test_a_workers_counts_and_histograms_add_to_the_daemons():
    daemon, worker = Metrics(), Metrics()
    daemon.webhook("generic", "accepted")
    daemon.request_served("POST", "/webhooks/{source}", 200, 0.002)
    for _ in range(3):
        worker.webhook("generic", "accepted")
        worker.request_served("POST", "/webhooks/{source}", 200, 0.2)
    worker.webhook("generic", "bad_signature")  # a label set the daemon never saw
    daemon.absorb("worker-0", worker.snapshot())
    seen = values(daemon)
    accepted = ("hub_webhooks_total", (("outcome", "accepted"), ("source", "generic")))
    assert seen[accepted] == 4
    assert seen["hub_webhooks_total", (("outcome", "bad_signature"), ("source", "generic"))] == 1
    route = (("route", "/webhooks/{source}"),)
    assert seen["hub_http_request_duration_seconds_count", route] == 4
    bucket = (("le", "0.005"), ("route", "/webhooks/{source}"))
    assert seen["hub_http_request_duration_seconds_bucket", bucket] == 1  # only the daemon's
    assert abs(seen["hub_http_request_duration_seconds_sum", route] - 0.602) < 1e-9

    # a newer snapshot replaces the older one (snapshots are cumulative)
    worker.webhook("generic", "accepted")
    daemon.absorb("worker-0", worker.snapshot())
    assert values(daemon)[accepted] == 5

    # the worker exits: its counts stay, its gauges go; its replacement starts from zero
    worker.syncs_running.set(2)
    daemon.absorb("worker-0", worker.snapshot())
    assert values(daemon)["hub_syncs_running", ()] == 2
    daemon.retire("worker-0")
    assert values(daemon)[accepted] == 5
    assert values(daemon)["hub_syncs_running", ()] == 0
    replacement = Metrics()
    replacement.webhook("generic", "accepted")
    daemon.absorb("worker-0", replacement.snapshot())
    assert values(daemon)[accepted] == 6
    assert daemon.render().count(b"# TYPE hub_webhooks_total counter") == 1  # one family
