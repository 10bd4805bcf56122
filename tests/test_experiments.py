"""A/B experiments between model versions, on real PostgreSQL and Redis (SPEC, "Online
evaluation"): assignment, the split, per-variant online metrics, restarts, refusals."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
import time
from collections import Counter
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from cinemate.app import Services, build_app, open_services
from cinemate.settings import Settings
from model.artifacts import save_model
from model.interactions import Interaction
from model.params import Params
from model.recommender import train
from query_side.experiments import Experiment, Variant, artifact_of, assignment
from query_side.model_serving import ModelHolder, ModelRefused
from tests.projection_helpers import wait_caught_up
from tests.test_recommend import COMEDIES, HORRORS

ADMIN = {"Authorization": "Bearer s3cret"}
EXPERIMENT = "/api/v1/admin/experiment"
USERS = [f"viewer{n}" for n in range(400)]


def test_assignment_is_stable_uniform_and_drawn_afresh_per_experiment() -> None:
    places = [assignment("e1", f"u{n}") for n in range(20_000)]
    assert all(0.0 <= p < 1.0 for p in places)
    assert places == [assignment("e1", f"u{n}") for n in range(20_000)]
    for low in (0.0, 0.25, 0.5, 0.75):  # each quarter holds a quarter, within 2 points
        share = sum(low <= p < low + 0.25 for p in places) / len(places)
        assert abs(share - 0.25) < 0.02, (low, share)
    other = [assignment("e2", f"u{n}") for n in range(20_000)]
    same_half = sum((a < 0.5) == (b < 0.5) for a, b in zip(places, other, strict=True))
    assert abs(same_half / len(places) - 0.5) < 0.02  # independent of the first draw


def tastes(seed: int) -> list[Interaction]:
    """Comedy fans and horror fans (tests/test_recommend.planted_model's data)."""
    rng = random.Random(seed)
    records = []
    for user in range(80):
        liked = COMEDIES if user % 2 else HORRORS
        for n, movie in enumerate(rng.sample(liked, 8)):
            records.append(Interaction(f"t{user}", movie, "rating", 4.5, 1_000.0 * user + n))
    return records


def two_models(models: Path) -> tuple[Path, Path]:
    """Two artifacts trained with different parameters, in the models dir."""
    first = save_model(train(tastes(3)), models / "default.npz")
    plain = Params(l2=20.0, sequence_weight=0.0, recency_tau=0.0)
    second = save_model(train(tastes(3), plain), models / "plain.npz")
    return first, second


def test_a_variant_names_an_artifact_or_a_model_version(tmp_path: Path) -> None:
    models = tmp_path / "models"
    first, second = two_models(models)
    version = train(tastes(3)).metadata["version"]  # not the saved one's (another time)
    assert artifact_of("plain.npz", models, None) == second.resolve()
    assert artifact_of(str(first), models, None) == first.resolve()
    saved_version = json.loads((models / "plain.npz.json").read_text())["version"]
    assert artifact_of(saved_version, models, None) == second.resolve()
    with pytest.raises(ModelRefused) as missing:
        artifact_of(version + "x", models, None)
    assert missing.value.status_code == 404
    for outside in ("/etc/passwd.npz", "../x.npz", str(tmp_path / "other.npz")):
        with pytest.raises(ModelRefused) as refused:
            artifact_of(outside, models, None)
        assert refused.value.status_code == 422


async def test_experiment_assign_follows_the_shares(tmp_path: Path) -> None:
    holder = ModelHolder()
    first, second = two_models(tmp_path / "models")
    a, b = await holder.load_other(first), await holder.load_other(second)
    experiment = Experiment("exp", datetime.now(UTC), (Variant(a, 0.2), Variant(b, 0.8)))
    served = Counter(experiment.assign(f"u{n}").sha256 for n in range(10_000))
    assert abs(served[a.sha256] / 10_000 - 0.2) < 0.02
    assert all(experiment.assign(f"u{n}") is experiment.assign(f"u{n}") for n in range(100))


def own(settings: Settings, data_dir: Path) -> Settings:
    return dataclasses.replace(settings, data_dir=data_dir, admin_token="s3cret")


async def opened(settings: Settings, stack: AsyncExitStack) -> tuple[Services, httpx.AsyncClient]:
    assert settings.database_url and settings.redis_url
    services = await open_services(settings, settings.database_url, settings.redis_url, stack)
    transport = httpx.ASGITransport(app=build_app(services))
    http = await stack.enter_async_context(
        httpx.AsyncClient(transport=transport, base_url="http://c")
    )
    return services, http


async def catalog(db: asyncpg.Connection) -> None:
    await db.executemany(
        "INSERT INTO movies (movie_id, title, genres) VALUES ($1, $2, $3)",
        [(m, f"Comedy {m}", ["Comedy"]) for m in COMEDIES]
        + [(m, f"Horror {m}", ["Horror"]) for m in HORRORS],
    )


async def versions_of(http: httpx.AsyncClient, users: list[str]) -> dict[str, dict[str, Any]]:
    answers = {}
    for user in users:
        answer = await http.get(f"/api/v1/recommend/{user}?limit=5")
        assert answer.status_code == 200, answer.text
        answers[user] = answer.json()
    return answers


async def post(http: httpx.AsyncClient, kind: str, body: dict[str, Any]) -> None:
    path = "/api/v1/feedback" if kind == "feedback" else f"/api/v1/events/{kind}"
    answer = await http.post(path, json=body)
    assert answer.status_code == 202, answer.text


async def test_a_50_50_experiment_splits_users_and_credits_each_variant(
    settings: Settings, db: asyncpg.Connection, tmp_path: Path
) -> None:
    """SPEC's "Done when": 400 users asking twice keep their variant and split 40-60 %;
    clicks on one variant's recommendations are that variant's CTR exactly; a watch of a
    shown movie within 24 h converts once. The experiment survives a restart, a refused
    artifact changes nothing, DELETE ends it."""
    settings = own(settings, tmp_path / "data")
    first, second = two_models(settings.data_dir / "models")
    await catalog(db)
    async with AsyncExitStack() as stack:
        services, http = await opened(settings, stack)
        current = services.models.current
        assert current is not None
        assert (await http.get(EXPERIMENT, headers=ADMIN)).status_code == 404
        body = {
            "variants": [
                {"model": "default.npz", "share": 0.5},
                {"model": str(second), "share": 0.5},
            ]
        }
        started = await http.put(EXPERIMENT, json=body, headers=ADMIN)
        assert started.status_code == 200, started.text
        experiment = started.json()
        versions = [v["model_version"] for v in experiment["variants"]]
        assert len(set(versions)) == 2 and [v["share"] for v in experiment["variants"]] == [
            0.5,
            0.5,
        ]

        once = await versions_of(http, USERS)
        twice = await versions_of(http, USERS)
        assert {u: a["model_version"] for u, a in once.items()} == {
            u: a["model_version"] for u, a in twice.items()
        }
        split = Counter(a["model_version"] for a in once.values())
        assert set(split) == set(versions)
        assert 160 <= split[versions[0]] <= 240, split

        shown = await http.get(EXPERIMENT, headers=ADMIN)
        assert shown.status_code == 200
        assert {
            v["model_version"]: (v["users"], v["recommendations"]) for v in shown.json()["variants"]
        } == {version: (count, 2 * count) for version, count in split.items()}

        # Clicks on 30 of the first variant's recommendations (one of them clicked twice,
        # on two movies): its CTR is 30 / its recommendations; the other's has none.
        a_users = [u for u, a in once.items() if a["model_version"] == versions[0]]
        for user in a_users[:30]:
            answer = once[user]
            click = {
                "user_id": user,
                "movie_id": answer["items"][0]["movie_id"],
                "action": "click",
                "recommendation_id": answer["recommendation_id"],
            }
            await post(http, "feedback", click)
        again = once[a_users[0]]
        await post(
            http,
            "feedback",
            {
                "user_id": a_users[0],
                "movie_id": again["items"][1]["movie_id"],
                "action": "click",
                "recommendation_id": again["recommendation_id"],
            },
        )
        # A watch of a shown movie within 24 h converts once, however often it is
        # watched; a watch of a movie not shown does not.
        late = (await versions_of(http, ["late-viewer"]))["late-viewer"]
        movie = late["items"][0]["movie_id"]
        for progress in (0.6, 0.9):
            await post(
                http, "watch", {"user_id": "late-viewer", "movie_id": movie, "progress": progress}
            )
        shown_movies = {i["movie_id"] for i in late["items"]}
        unshown = next(m for m in COMEDIES + HORRORS if m not in shown_movies)
        await post(http, "watch", {"user_id": "late-viewer", "movie_id": unshown, "progress": 1.0})
        await wait_caught_up(services.pool)
        metrics = await http.get("/api/v1/admin/model-metrics", headers=ADMIN)
        found = {m["model_version"]: m for m in metrics.json()["models"]}
        extra = Counter([late["model_version"]])  # its one recommendation
        a, b = versions
        assert found[a]["recommendations"] == 2 * split[a] + extra[a]
        assert found[b]["recommendations"] == 2 * split[b] + extra[b]
        assert found[a]["clicks"] == 30 and found[b]["clicks"] == 0
        assert found[a]["ctr"] == 30 / found[a]["recommendations"]
        assert found[late["model_version"]]["conversions"] == 1
        assert found[a]["conversions"] + found[b]["conversions"] == 1

        # A refused artifact refuses the experiment: nothing changes.
        corrupt = settings.data_dir / "models" / "corrupt.npz"
        corrupt.write_bytes(b"not a zip file")
        for variants, status in (
            ([{"model": "default.npz", "share": 0.5}, {"model": "corrupt.npz", "share": 0.5}], 422),
            ([{"model": "default.npz", "share": 0.5}, {"model": "gone.npz", "share": 0.5}], 404),
            (
                [
                    {"model": "default.npz", "share": 0.5},
                    {"model": "no-such-version", "share": 0.5},
                ],
                404,
            ),
            ([{"model": "default.npz", "share": 0.5}, {"model": "/etc/x.npz", "share": 0.5}], 422),
            ([{"model": "default.npz", "share": 0.5}, {"model": str(first), "share": 0.5}], 422),
        ):
            refused = await http.put(EXPERIMENT, json={"variants": variants}, headers=ADMIN)
            assert refused.status_code == status, refused.text
            assert refused.json()["error"] == "model_refused"
        for invalid in (
            {
                "variants": [
                    {"model": "default.npz", "share": 0.5},
                    {"model": "plain.npz", "share": 0.6},
                ]
            },
            {"variants": [{"model": "default.npz", "share": 1.0}]},
            {
                "variants": [
                    {"model": "default.npz", "share": 0},
                    {"model": "plain.npz", "share": 1},
                ]
            },
            {
                "variants": [
                    {"model": "default.npz", "share": "0.5"},
                    {"model": "plain.npz", "share": 0.5},
                ]
            },
        ):
            refused = await http.put(EXPERIMENT, json=invalid, headers=ADMIN)
            assert refused.status_code == 422, refused.text
            assert refused.json()["error"] == "validation_error"
        assert (await http.put(EXPERIMENT, content=b"{", headers=ADMIN)).status_code == 400
        assert (await http.get(EXPERIMENT, headers=ADMIN)).json()["id"] == experiment["id"]
        assert await db.fetchval("SELECT count(*) FROM experiments") == 1
        assert (await versions_of(http, USERS[:20])) and all(
            a["model_version"] == once[u]["model_version"]
            for u, a in (await versions_of(http, USERS[:20])).items()
        )
        assert (await http.get(EXPERIMENT)).status_code == 401
        assert (
            await http.delete(EXPERIMENT, headers={"Authorization": "Bearer x"})
        ).status_code == 403

    # A restart: the experiment runs on, every user on their variant.
    async with AsyncExitStack() as stack:
        services, http = await opened(settings, stack)
        assert services.experiments is not None and services.experiments.current is not None
        assert (await http.get(EXPERIMENT, headers=ADMIN)).json()["id"] == experiment["id"]
        after = await versions_of(http, USERS[:100])
        assert all(a["model_version"] == once[u]["model_version"] for u, a in after.items())

        # DELETE ends it: everyone back to the current model; a second DELETE finds none.
        ended = await http.delete(EXPERIMENT, headers=ADMIN)
        assert ended.status_code == 200 and ended.json()["id"] == experiment["id"]
        assert (await http.get(EXPERIMENT, headers=ADMIN)).status_code == 404
        assert (await http.delete(EXPERIMENT, headers=ADMIN)).status_code == 404
        assert services.models.current is not None
        current_version = services.models.current.model.metadata["version"]
        assert {a["model_version"] for a in (await versions_of(http, USERS[:50])).values()} == {
            current_version
        }


async def test_every_process_follows_the_experiment_another_starts_and_ends(
    settings: Settings, db: asyncpg.Connection, tmp_path: Path
) -> None:
    settings = own(settings, tmp_path / "data")
    two_models(settings.data_dir / "models")
    await catalog(db)
    async with AsyncExitStack() as stack:
        one, first_http = await opened(settings, stack)
        other, other_http = await opened(settings, stack)
        body = {
            "variants": [
                {"model": "default.npz", "share": 0.5},
                {"model": "plain.npz", "share": 0.5},
            ]
        }
        assert (await first_http.put(EXPERIMENT, json=body, headers=ADMIN)).status_code == 200
        assert one.experiments is not None and other.experiments is not None

        async def within(seconds: float, done: Any) -> None:
            deadline = time.monotonic() + seconds
            while not done():
                assert time.monotonic() < deadline, "not followed in time"
                await asyncio.sleep(0.1)

        await within(10, lambda: other.experiments.current is not None)
        assert other.experiments.current and one.experiments.current
        assert other.experiments.current.id == one.experiments.current.id
        mine = await versions_of(first_http, USERS[:40])
        theirs = await versions_of(other_http, USERS[:40])
        assert {u: a["model_version"] for u, a in mine.items()} == {
            u: a["model_version"] for u, a in theirs.items()
        }
        assert (await other_http.delete(EXPERIMENT, headers=ADMIN)).status_code == 200
        await within(10, lambda: one.experiments.current is None)


async def test_a_process_that_cannot_load_the_experiment_serves_its_current_model(
    settings: Settings, db: asyncpg.Connection, tmp_path: Path
) -> None:
    """A variant's file replaced since the start (another digest) is not served in its
    place: the process says so in its log and serves its current model to everyone."""
    settings = own(settings, tmp_path / "data")
    _, second = two_models(settings.data_dir / "models")
    await catalog(db)
    body = {
        "variants": [{"model": "default.npz", "share": 0.5}, {"model": "plain.npz", "share": 0.5}]
    }
    async with AsyncExitStack() as stack:
        _, http = await opened(settings, stack)
        assert (await http.put(EXPERIMENT, json=body, headers=ADMIN)).status_code == 200
    save_model(train(tastes(4), Params(l2=5.0)), second)
    async with AsyncExitStack() as stack:
        services, http = await opened(settings, stack)
        assert services.experiments is not None and services.experiments.current is None
        assert services.models.current is not None
        version = services.models.current.model.metadata["version"]
        answers = await versions_of(http, USERS[:20])
        assert {a["model_version"] for a in answers.values()} == {version}
        assert (await http.get(EXPERIMENT, headers=ADMIN)).status_code == 200  # still stored
