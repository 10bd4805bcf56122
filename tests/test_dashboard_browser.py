"""/dashboard in a real headless browser (Debian's chromium) against a seeded server."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cinemate.settings import Settings
from tests.live_server import live_server
from tests.test_docs_browser import rendered
from tests.test_experiments import two_models

ADMIN = {"Authorization": "Bearer s3cret"}
SEEDED_EVENTS = 12
RECOMMENDATIONS = 3


@pytest.fixture(scope="module")
def module_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("dashboard")


@pytest.fixture
def seeded(settings: Settings, tmp_path: Path) -> Iterator[str]:
    """A server with events accepted, recommendations served and one clicked."""
    with live_server(settings, tmp_path / "data", ADMIN_TOKEN="s3cret") as url:
        with httpx.Client(base_url=url, timeout=10) as http:
            events = [
                {"type": "favorite", "user_id": f"s{n}", "movie_id": f"m{n % 4}", "action": "add"}
                for n in range(SEEDED_EVENTS)
            ]
            assert http.post("/api/v1/events/batch", json={"events": events}).status_code == 202
            caught_up(http)
            shown = [http.get(f"/api/v1/recommend/v{n}").json() for n in range(RECOMMENDATIONS)]
            click = {
                "user_id": "v0",
                "movie_id": shown[0]["items"][0]["movie_id"],
                "action": "click",
                "recommendation_id": shown[0]["recommendation_id"],
            }
            assert http.post("/api/v1/feedback", json=click).status_code == 202
            caught_up(http)
        yield url


def caught_up(http: httpx.Client, within: float = 30) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        report = http.get("/api/v1/admin/projections", headers=ADMIN).json()["projections"]
        if all(p["lag_events"] == 0 for p in report):
            return
        time.sleep(0.1)
    raise AssertionError(report)


def figure(page: str, element_id: str) -> str:
    found = re.search(rf'id="{element_id}"[^>]*>([^<]*)<', page)
    assert found, element_id
    return found.group(1)


def test_the_dashboard_shows_the_seeded_figures(seeded: str, tmp_path: Path) -> None:
    page = rendered(f"{seeded}/dashboard#token=s3cret")
    assert figure(page, "health") in ("ok", "degraded")
    assert figure(page, "events-total") == str(SEEDED_EVENTS + 1)  # and the click
    assert figure(page, "recommend-total") == str(RECOMMENDATIONS)
    assert figure(page, "dlq") == "0"
    assert figure(page, "lag") == "0"
    assert figure(page, "experiment") == "none"
    assert re.search(r'<table id="variants" style="display: ?none;?"', page)  # no variants
    assert figure(page, "ingest-rate") != "–"  # a second sample came: the page refreshes
    row = re.search(r"<tr><td>popularity</td>((?:<td[^>]*>[^<]*</td>)+)</tr>", page)
    assert row, page[-3000:]
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", row.group(1))
    assert cells == [str(RECOMMENDATIONS), "1", "33.3 %", "0", "0.0 %"]
    assert 'id="message" role="alert" style="display: none;"' in page
    assert "s3cret" not in page  # the token left the address bar and the page


def test_a_wrong_token_says_so_and_asks_again(seeded: str) -> None:
    page = rendered(f"{seeded}/dashboard#token=nope")
    assert figure(page, "message").startswith("Wrong admin token (wrong admin token)")
    assert 'id="login" style="display: block;"' in page
    assert 'id="board" style="display: none;"' in page
    first_visit = rendered(f"{seeded}/dashboard")
    assert 'id="login" style="display: block;"' in first_visit
    assert figure(first_visit, "message") == ""


def test_a_screenshot_can_be_taken(seeded: str, tmp_path: Path) -> None:
    """The README's picture is taken this way (see docs/dashboard.png)."""
    chromium = shutil.which("chromium")
    assert chromium
    shot = tmp_path / "dashboard.png"
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-proxy-server",
                "--hide-scrollbars",
                f"--user-data-dir={profile}",
                "--virtual-time-budget=8000",
                "--window-size=1280,900",
                f"--screenshot={shot}",
                f"{seeded}/dashboard#token=s3cret",
            ],
            capture_output=True,
            timeout=120,
        )
    assert done.returncode == 0, done.stderr[-3000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def experimenting(settings: Settings, tmp_path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """A server running a 60/40 experiment between two models, a few users served."""
    data = tmp_path / "data"
    two_models(data / "models")
    with live_server(settings, data, ADMIN_TOKEN="s3cret") as url:
        with httpx.Client(base_url=url, timeout=30) as http:
            variants = [
                {"model": "default.npz", "share": 0.6},
                {"model": "plain.npz", "share": 0.4},
            ]
            started = http.put(
                "/api/v1/admin/experiment", json={"variants": variants}, headers=ADMIN
            )
            assert started.status_code == 200, started.text
            for n in range(12):
                assert http.get(f"/api/v1/recommend/e{n % 8}").status_code == 200
            running: dict[str, Any] = http.get("/api/v1/admin/experiment", headers=ADMIN).json()
        yield url, running


def test_the_dashboard_shows_the_running_experiment(
    experimenting: tuple[str, dict[str, Any]],
) -> None:
    url, running = experimenting
    assert sum(v["recommendations"] for v in running["variants"]) == 12
    page = rendered(f"{url}/dashboard#token=s3cret")
    assert figure(page, "experiment").startswith(f"{running['id']}, since ")
    table = re.search(r'<table id="variants" style="">(.*?)</table>', page, re.S)
    assert table, page[-3000:]
    rows = re.findall(r"<tr><td>([^<]*)</td>((?:<td[^>]*>[^<]*</td>)+)</tr>", table.group(1))
    shown = {version: re.findall(r"<td[^>]*>([^<]*)</td>", cells) for version, cells in rows}
    assert shown == {
        v["model_version"]: [
            f"{100 * v['share']:.1f} %",
            str(v["users"]),
            str(v["recommendations"]),
        ]
        for v in running["variants"]
    }
