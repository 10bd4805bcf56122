"""/docs in a real headless browser (Debian's chromium, which scripts/setup.sh --test
installs): the page renders every operation of /openapi.json, offline."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from cinemate.settings import Settings
from tests.live_server import live_server


@pytest.fixture
def server(settings: Settings, tmp_path: Path) -> Iterator[str]:
    with live_server(settings, tmp_path / "data") as url:
        yield url


def rendered(url: str) -> str:
    """The DOM once the page's scripts have run, from a browser that reaches nothing but
    this machine (no proxy, no component updates, a fresh profile)."""
    chromium = shutil.which("chromium")
    assert chromium, "chromium is missing: scripts/setup.sh --test installs it"
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-proxy-server",
                f"--user-data-dir={profile}",
                "--virtual-time-budget=20000",
                "--dump-dom",
                url,
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_docs_render_every_operation(server: str) -> None:
    with urllib.request.urlopen(f"{server}/openapi.json", timeout=10) as answer:
        document = json.load(answer)
    page = rendered(f"{server}/docs")
    assert "Unable to render this definition" not in page
    assert html.escape(document["info"]["title"], quote=False) in page
    # Swagger UI gives each operation a block with id operations-<tag>-<operationId>.
    shown = set(re.findall(r'id="operations-([^"]+)"', page))
    expected = {
        f"{op['tags'][0]}-{op['operationId']}"
        for ops in document["paths"].values()
        for op in ops.values()
    }
    assert len(expected) == sum(len(ops) for ops in document["paths"].values())
    assert expected <= shown, sorted(expected - shown)
    for path, ops in document["paths"].items():
        assert f'data-path="{path}"' in page, path
        for op in ops.values():
            assert html.escape(op["summary"], quote=False) in page, op["summary"]
