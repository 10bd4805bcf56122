"""Prometheus metrics: HTTP traffic by route, appended events, lags, the served model."""

from __future__ import annotations

import collections
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from schema import topics


class Metrics:
    """One registry per app, so tests and several apps in a process stay apart."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "cinemate_http_requests_total",
            "HTTP requests by route, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "cinemate_http_request_seconds",
            "HTTP request latency by route (includes recommend and ingest)",
            ["route", "method"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )
        self.events = Counter(
            "cinemate_events_total",
            "Events through the append path, by outcome",
            ["outcome"],
            registry=self.registry,
        )
        self.lag_events = Gauge(
            "cinemate_projection_lag_events",
            "Events not yet applied, per projection (kafka_relay: not yet published)",
            ["projection"],
            registry=self.registry,
        )
        self.lag_seconds = Gauge(
            "cinemate_projection_lag_seconds",
            "Age of the oldest event not yet applied",
            ["projection"],
            registry=self.registry,
        )
        self.model = Gauge(
            "cinemate_model_info",
            "The model being served (value 1)",
            ["version"],
            registry=self.registry,
        )
        # Read from PostgreSQL at scrape time: consumers run in other processes, and the
        # audit trail has every dead letter of every one of them.
        self.dead_letters = Gauge(
            "cinemate_dlq_messages",
            f"Messages sent to {topics.DEAD_LETTERS}, all consumers, ever (audit trail)",
            registry=self.registry,
        )
        self.consumer_lag = Gauge(
            "cinemate_kafka_consumer_lag_messages",
            f"Messages on {topics.INTERACTIONS} not yet consumed, per live consumer",
            ["member"],
            registry=self.registry,
        )

        # Online metrics of the last 24 h per model version (query_side.model_metrics),
        # read from PostgreSQL at most every MODEL_METRICS_TTL seconds: the projection
        # that folds them may run in another process.
        self.online = {
            name: Gauge(
                f"cinemate_model_{name}",
                f"{text}, recommendations of the last 24 h, per model version",
                ["model_version"],
                registry=self.registry,
            )
            for name, text in (
                ("recommendations", "Recommendations served"),
                ("clicks", "Recommendations with at least one click"),
                ("ctr", "Click-through rate"),
                ("conversions", "Conversions (watched, rated >= 4 or favorited in 24 h)"),
                ("conversion_rate", "Conversions per recommendation"),
            )
        }
        self.online_read_at = float("-inf")

    def set_online(self, models: list[dict[str, Any]]) -> None:
        for gauge in self.online.values():
            gauge.clear()
        for row in models:
            for name, gauge in self.online.items():
                gauge.labels(row["model_version"]).set(row[name])

    def count_outcomes(self, outcomes: list[str]) -> None:
        """Once per group commit: one increment per outcome, not one label lookup per event."""
        for outcome, count in collections.Counter(outcomes).items():
            self.events.labels(outcome).inc(count)


MODEL_METRICS_TTL = 10.0
Refresh = Callable[[], Awaitable[None]]


def metrics_route(metrics: Metrics, refresh: Refresh) -> Route:
    async def endpoint(request: Request) -> Response:
        await refresh()
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return Route("/metrics", endpoint, methods=["GET"])


def set_lags(metrics: Metrics, report: list[dict[str, Any]]) -> None:
    for row in report:
        metrics.lag_events.labels(row["name"]).set(row["lag_events"] or 0)
        metrics.lag_seconds.labels(row["name"]).set(row["lag_seconds"] or 0)
