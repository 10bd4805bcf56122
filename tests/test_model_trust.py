"""What the service agrees to load: artifacts from the models dir or MODEL_PATH only (one
answer for every other path), a pickle only when its SHA-256 was pinned by the operator
or recorded by `cinemate train`, and when nothing names a file, the newest artifact that
loads: a bad file in the models dir never turns a good model off."""

from __future__ import annotations

import os
import pickle
import shutil
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from cinemate.cli import _train
from cinemate.settings import Settings
from model.artifacts import digest_path, file_sha256
from query_side.model_serving import record_trained
from tests.test_recommend import COMEDIES, HORRORS, client_of, own_settings, planted_model

ADMIN = {"Authorization": "Bearer s3cret"}


class Payload:
    """A pickle that runs code when loaded: it leaves a file behind."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.write_text, (self.marker, "ran"))


def evil_pickle(path: Path, marker: Path) -> Path:
    path.write_bytes(pickle.dumps(Payload(marker)))
    # The digest beside it, written by the same writer: integrity, not trust.
    digest_path(path).write_text(f"{file_sha256(path)}  {path.name}\n")
    return path


@pytest.fixture
async def models(tmp_path: Path) -> Path:
    folder = tmp_path / "data" / "models"
    folder.mkdir(parents=True)
    return folder


@pytest.fixture
async def http(settings: Settings, models: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with AsyncExitStack() as stack:
        yield await client_of(own_settings(settings, models.parent), stack)


async def reload(http: httpx.AsyncClient, path: str | None = None) -> httpx.Response:
    body = {"path": path} if path is not None else None
    return await http.post("/model/reload", json=body, headers=ADMIN)


async def test_paths_outside_the_models_dir_get_one_answer(
    http: httpx.AsyncClient, models: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    planted_model(elsewhere / "real.npz")
    (models / "link.npz").symlink_to(elsewhere / "real.npz")
    answers = {
        str(path): await reload(http, str(path))
        for path in (
            elsewhere / "real.npz",  # exists
            elsewhere / "missing.npz",  # does not
            Path("/etc/passwd.npz"),
            models / ".." / ".." / "elsewhere" / "real.npz",
            models / "link.npz",  # a link out of the models dir
        )
    }
    bodies = {(a.status_code, a.text) for a in answers.values()}
    assert len(bodies) == 1, bodies
    status, text = bodies.pop()
    assert status == 422 and "elsewhere" not in text and "passwd" not in text
    assert (await http.get("/model/info")).json()["version"] == "popularity"

    planted_model(models / "inside.npz")
    for name in ("inside.npz", str(models / "inside.npz")):
        loaded = await reload(http, name)
        assert loaded.status_code == 200 and loaded.json()["path"].endswith("inside.npz")
    assert (await reload(http, "absent.npz")).status_code == 404


async def test_a_pickle_loads_only_when_its_digest_is_recorded_or_pinned(
    http: httpx.AsyncClient,
    models: Path,
    tmp_path: Path,
    db: asyncpg.Connection,
    settings: Settings,
) -> None:
    marker = tmp_path / "pwned"
    evil = evil_pickle(models / "evil.pkl", marker)
    refused = await reload(http, "evil.pkl")
    assert refused.status_code == 422 and "pinned" in refused.json()["detail"]
    assert not marker.exists(), "the pickle ran"

    genuine = planted_model(models / "genuine.pkl")  # with its digest beside it
    assert (await reload(http, "genuine.pkl")).status_code == 422
    await record_trained(db, genuine, "planted")  # what `cinemate train` does
    loaded = await reload(http, "genuine.pkl")
    assert loaded.status_code == 200 and loaded.json()["format"] == "pkl"
    assert (await reload(http, "evil.pkl")).status_code == 422 and not marker.exists()

    pinned = own_settings(settings, models.parent, model_sha256=frozenset({file_sha256(evil)}))
    async with AsyncExitStack() as stack:
        operator = await client_of(pinned, stack)
        # Pinned: the operator vouches for it, so it is unpickled (and is no model).
        answer = await reload(operator, "evil.pkl")
        assert answer.status_code == 422 and marker.exists()


async def test_the_newest_artifact_that_loads_is_served(
    settings: Settings, models: Path, tmp_path: Path
) -> None:
    good = planted_model(models / "good.npz")
    later = good.stat().st_mtime + 10
    (models / "corrupt.npz").write_bytes(b"not a model")
    shutil.copy(good, models / "truncated.onnx")
    evil = evil_pickle(models / "evil.pkl", tmp_path / "pwned")
    for n, path in enumerate((models / "corrupt.npz", models / "truncated.onnx", evil)):
        os.utime(path, (later + n, later + n))
    async with AsyncExitStack() as stack:
        http = await client_of(own_settings(settings, models.parent), stack)
        info = (await http.get("/model/info")).json()
        assert info["sha256"] == file_sha256(good), info  # at start-up
        answer = await reload(http)  # an empty-body reload
        assert answer.status_code == 200 and answer.json()["sha256"] == file_sha256(good)
        movies = (await http.get("/api/v1/recommend/nobody?limit=5")).json()["items"]
        assert movies and {m["movie_id"] for m in movies} <= set(COMEDIES + HORRORS)
    assert not (tmp_path / "pwned").exists()


async def test_cinemate_train_records_what_it_wrote(
    settings: Settings, models: Path, db: asyncpg.Connection
) -> None:
    rows = [
        (f"t{user}", movie)
        for user in range(40)
        for movie in (COMEDIES if user % 2 else HORRORS)[:6]
    ]
    async with AsyncExitStack() as stack:
        http = await client_of(own_settings(settings, models.parent), stack)
        for start in range(0, len(rows), 200):
            batch = [
                {"type": "rating", "user_id": u, "movie_id": m, "rating": 4.5}
                for u, m in rows[start : start + 200]
            ]
            answer = await http.post("/api/v1/events/batch", json={"events": batch})
            assert answer.status_code == 202
    output = models / "trained.pkl"
    await _train(own_settings(settings, models.parent), output)
    recorded = await db.fetchrow("SELECT sha256, file, format FROM model_artifacts")
    assert dict(recorded) == {"sha256": file_sha256(output), "file": "trained.pkl", "format": "pkl"}
    async with AsyncExitStack() as stack:
        http = await client_of(own_settings(settings, models.parent), stack)
        assert (await http.get("/model/info")).json()["format"] == "pkl"
