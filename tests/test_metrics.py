"""GET /metrics: Prometheus text with the service's series."""

from __future__ import annotations

import httpx

from tests.projection_helpers import wait_caught_up


async def test_metrics_report_traffic_events_lag_and_model(
    client: httpx.AsyncClient, services: object
) -> None:
    await client.post("/api/v1/events/rating", json={"user_id": "m1", "movie_id": "x", "rating": 3})
    await client.post("/api/v1/events/rating", json={"user_id": "m1", "movie_id": "x", "rating": 9})
    await client.get("/api/v1/users/m1/events")
    await wait_caught_up(services.pool)  # type: ignore[attr-defined]
    answer = await client.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    text = answer.text
    assert (
        'cinemate_http_requests_total{method="POST",route="/api/v1/events/rating",status="202"} 1.0'
        in text
    )
    assert 'route="/api/v1/events/rating",status="422"} 1.0' in text
    # Raw paths with user ids never become labels: only the route template does.
    assert 'route="/api/v1/users/{user_id}/events"' in text and "m1/events" not in text
    assert 'cinemate_events_total{outcome="accepted"} 1.0' in text
    assert 'cinemate_projection_lag_events{projection="user_features"} 0.0' in text
    assert 'cinemate_model_info{version="popularity"} 1.0' in text
    assert "cinemate_http_request_seconds_bucket" in text
