"""The webhook's Prometheus metrics: reviews answered, their latency, baseline writes, cache hits.

With PROMETHEUS_MULTIPROC_DIR set (the `netwarden webhook` command sets it) every gunicorn worker
writes its samples to that directory and /metrics aggregates all workers, whichever worker answers
the scrape. Without it (tests, `flask run`) each app keeps a private registry.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable

from prometheus_client import CollectorRegistry, Counter, Histogram

from netwarden.model import names

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(frozen=True)
class WebhookMetrics:
    reviews: Counter
    latency: Histogram
    policy_writes: Counter
    cache_hits: Counter
    #: The registry to expose on /metrics (built per scrape in multiprocess mode).
    scrape_registry: Callable[[], CollectorRegistry]
    # The labelled children, looked up once, not per review.
    _review_counters: dict[tuple[str, str], Any] = field(default_factory=dict, init=False, repr=False, compare=False)
    _latency_histograms: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)
    _cache_hit_counters: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    def cache_hit(self, cache: str) -> None:
        child = self._cache_hit_counters.get(cache)
        if child is None:
            child = self._cache_hit_counters.setdefault(cache, self.cache_hits.labels(cache))
        child.inc()

    def count_review(self, webhook: str, outcome: str, seconds: float) -> None:
        """Count one answered review."""
        key = (webhook, outcome)
        counter = self._review_counters.get(key)
        if counter is None:
            counter = self._review_counters.setdefault(key, self.reviews.labels(webhook, outcome))
        latency = self._latency_histograms.get(webhook)
        if latency is None:
            latency = self._latency_histograms.setdefault(webhook, self.latency.labels(webhook))
        counter.inc()
        latency.observe(seconds)


def make_metrics() -> WebhookMetrics:
    """Per-app metrics; aggregated across gunicorn workers when PROMETHEUS_MULTIPROC_DIR is set."""
    multiproc_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if multiproc_dir:
        from prometheus_client import multiprocess, values

        # prometheus_client picks its value class at import time; the variable may have been set after.
        values.ValueClass = values.get_value_class()
        registry: CollectorRegistry | None = None

        def scrape() -> CollectorRegistry:
            aggregate = CollectorRegistry()
            multiprocess.MultiProcessCollector(aggregate, path=multiproc_dir)
            return aggregate
    else:
        registry = CollectorRegistry()

        def scrape() -> CollectorRegistry:
            assert registry is not None
            return registry

    return WebhookMetrics(
        reviews=Counter(names.METRIC_REVIEWS, "AdmissionReviews answered, by webhook and outcome",
                        ["webhook", "outcome"], registry=registry),
        latency=Histogram(names.METRIC_REVIEW_LATENCY, "Time to answer an AdmissionReview, seconds",
                          ["webhook"], buckets=LATENCY_BUCKETS, registry=registry),
        policy_writes=Counter(names.METRIC_POLICY_WRITES, "Baseline NetworkPolicy creates at admission, by result",
                              ["result"], registry=registry),
        cache_hits=Counter(names.METRIC_CACHE_HITS, "Admission lookups answered from a cache, by cache",
                           ["cache"], registry=registry),
        scrape_registry=scrape,
    )
