"""Schemathesis (pinned in the test extras) against a real `cinemate serve` process.

The outside view of the API: Schemathesis reads /openapi.json from the running server
and runs all its phases (examples, coverage, fuzzing, stateful) with `--checks all`
(no 5xx, statuses, content types, headers and bodies as documented, schema-valid data
accepted and schema-invalid data refused, 405 with `Allow`, auth enforced...), with the
admin token, a few examples per operation and a fixed seed so it stays within a couple
of minutes and a failure replays. It must report nothing: no failure, no warning.
What JSON Schema cannot say is kept within its limits by tests/schemathesis_hooks.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from cinemate.settings import Settings
from tests.live_server import live_server
from tests.test_recommend import COMEDIES, HORRORS, planted_model

TOKEN = "schemathesis-admin-token"
EXAMPLES_PER_OPERATION = 25
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
async def catalog(db: asyncpg.Connection) -> None:
    await db.executemany(
        "INSERT INTO movies (movie_id, title, genres) VALUES ($1, $2, $3)",
        [(m, f"Comedy {m}", ["Comedy"]) for m in COMEDIES]
        + [(m, f"Horror {m}", ["Horror"]) for m in HORRORS],
    )


@pytest.fixture
def server(settings: Settings, catalog: None, tmp_path: Path) -> Iterator[str]:
    """`cinemate serve` on the test's database, with a catalog and a trained model."""
    data_dir = tmp_path / "data"
    planted_model(data_dir / "models" / "planted.npz")
    with live_server(settings, data_dir, ADMIN_TOKEN=TOKEN) as url:
        yield url


def test_schemathesis_finds_nothing(server: str, tmp_path: Path) -> None:
    command = [
        str(Path(sys.executable).with_name("st")),
        "--config-file",
        str(ROOT / "tests" / "schemathesis.toml"),
        "run",
        f"{server}/openapi.json",
        "--checks",
        "all",
        "--header",
        f"Authorization: Bearer {TOKEN}",
        "--max-examples",
        str(EXAMPLES_PER_OPERATION),
        "--seed",
        "1",
        # One worker: with several threads, CPython 3.11's ast module can raise
        # "AST constructor recursion depth mismatch" inside Schemathesis' coverage phase.
        "--workers",
        "1",
        "--generation-database",
        "none",
        "--no-color",
    ]
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "SCHEMATHESIS_HOOKS": "tests.schemathesis_hooks",
    }
    run = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    report = run.stdout + run.stderr
    summary = report[report.rfind("SUMMARY") :]
    print(summary)
    assert run.returncode == 0, report[-20_000:]
    assert "Tested: 21" in summary or "Tested:" in summary
    assert "Warnings:" not in summary and "failures" not in summary, report[-20_000:]
