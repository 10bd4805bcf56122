"""The README's Architecture section follows one watch event, file by file: that list
and the count beside it are what the code does, measured by a profiler hook over one
POST, the store follower's batch that folds it and the relay's Kafka message."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import sys
import time
from contextlib import AsyncExitStack
from pathlib import Path
from types import FrameType
from typing import Any

import asyncpg
import httpx

from cinemate.app import build_app, open_services
from cinemate.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
# The other read models the same batch feeds: on the path to Kafka and to user_features
# only because the follower applies every projection in one transaction.
OTHER_PROJECTIONS = {
    "projections/item_stats_fold.py",
    "projections/outcomes.py",
    "projections/simple_projections.py",
}


def _architecture() -> str:
    start = README.index("## Architecture")
    return README[start : README.index("\n## ", start + 1)]


async def _files_one_watch_runs(settings: Settings, database_url: str) -> set[str]:
    seen: set[str] = set()

    def hook(frame: FrameType, event: str, arg: Any) -> None:
        name = frame.f_code.co_filename
        if event == "call" and name.startswith(str(ROOT)) and "/.venv/" not in name:
            seen.add(str(Path(name).relative_to(ROOT)))

    async with AsyncExitStack() as stack:
        services = await open_services(
            settings,
            database_url,
            settings.redis_url or "",
            stack,
            run_projections=True,
            run_relay=True,
            load_model=False,
        )
        transport = httpx.ASGITransport(app=build_app(services))
        conn = await asyncpg.connect(database_url)
        stack.push_async_callback(conn.close)
        async with httpx.AsyncClient(transport=transport, base_url="http://cinemate") as http:

            async def watch(user: str) -> None:
                body = {"user_id": user, "movie_id": "m42", "progress": 0.95}
                answer = await http.post("/api/v1/events/watch", json=body)
                assert answer.status_code == 202, answer.text

            async def delivered(user: str) -> bool:
                folded = await conn.fetchval(
                    "SELECT count(*) FROM user_features WHERE user_id = $1", user
                )
                relayed = await conn.fetchval(
                    "SELECT position FROM projection_checkpoints WHERE name = 'kafka_relay'"
                )
                newest = await conn.fetchval("SELECT max(position) FROM interaction_events")
                return bool(folded) and relayed is not None and relayed >= newest

            # Warm: first calls (catalog load, topic creation, connections) are not the path.
            await watch("warm")
            deadline = time.monotonic() + 30
            while not await delivered("warm"):
                assert time.monotonic() < deadline, "the warm-up event was not delivered"
                await asyncio.sleep(0.05)
            # On while the test polls too: the hook sees every task of the loop (a
            # follower batch may run while a poll awaits), and the polls themselves run
            # only this file and asyncpg, which it leaves out.
            sys.setprofile(hook)
            try:
                await watch("u1")
                while not await delivered("u1"):
                    assert time.monotonic() < deadline + 30, "the event was not delivered"
                    await asyncio.sleep(0.01)
            finally:
                sys.setprofile(None)
    return {name for name in seen if not name.startswith("tests/")}


async def test_the_readme_lists_the_files_one_watch_event_runs_through(
    settings: Settings, database_url: str, kafka_bootstrap: str
) -> None:
    own = dataclasses.replace(settings, kafka_bootstrap_servers=kafka_bootstrap, enable_kafka=True)
    files = await _files_one_watch_runs(own, database_url)
    section = _architecture()
    # Every file the README walks through runs for the event (SQL runs in PostgreSQL).
    steps = section[section.index("```") : section.index("```", section.index("```") + 3)]
    walked = set(re.findall(r"\b[a-z_]+/[a-z_]+\.py\b", steps))
    assert walked, "the Architecture section lists no files"
    assert walked <= files, walked - files
    # The count beside the list is the profiler's.
    stated = re.search(r"it is (\d+) Python files", section)
    assert stated, "the Architecture section states no count"
    assert int(stated.group(1)) == len(files), sorted(files)
    others = re.search(r"(\d+) without the other projections", section)
    assert others and int(others.group(1)) == len(files - OTHER_PROJECTIONS), sorted(files)
