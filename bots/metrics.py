"""Prometheus metrics for the service: answers, latencies, platform API calls, rate limits, Dify errors."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from core.dify.errors import DifyError
from core.render.renderer import RenderStats

LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0)


class Metrics:
    """One registry per service (tests run several services in one process)."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.answers = Counter(
            "difybots_answers",
            "Answers finished, by platform and outcome",
            ["platform", "outcome"],
            registry=self.registry,
        )
        self.first_text = Histogram(
            "difybots_first_text_seconds",
            "From message to first visible text",
            ["platform"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.duration = Histogram(
            "difybots_answer_seconds",
            "From message to final frame",
            ["platform"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.api_calls = Counter(
            "difybots_platform_api_calls",
            "Platform API calls by method and result",
            ["platform", "method", "result"],
            registry=self.registry,
        )
        self.rate_limited = Counter(
            "difybots_rate_limited", "Rate-limit answers (429) from a platform", ["platform"], registry=self.registry
        )
        self.dify_errors = Counter(
            "difybots_dify_errors", "Answers that ended with a Dify error, by code", ["code"], registry=self.registry
        )
        self.in_flight = Gauge(
            "difybots_answers_in_flight", "Answers streaming right now", ["platform"], registry=self.registry
        )

    def track_in_flight(self, platform: str, count: Callable[[], int]) -> None:
        self.in_flight.labels(platform).set_function(lambda: float(count()))

    def answer_finished(self, platform: str, stats: RenderStats) -> None:
        self.answers.labels(platform, stats.outcome).inc()
        if stats.first_text_at is not None:
            self.first_text.labels(platform).observe(max(0.0, stats.first_text_at - stats.started_at))
        if stats.final_at is not None:
            self.duration.labels(platform).observe(max(0.0, stats.final_at - stats.started_at))
        if stats.rate_limited:
            self.rate_limited.labels(platform).inc(stats.rate_limited)
        if isinstance(stats.error, DifyError):
            self.dify_errors.labels(stats.error.code or type(stats.error).__name__).inc()

    def api_call(self, platform: str, method: str, result: str) -> None:
        self.api_calls.labels(platform, method, result).inc()
        if result == "rate_limited":
            self.rate_limited.labels(platform).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
