"""A/B experiments between model versions: which model serves which user.

An experiment is a few variants (a served model and a share of the users). A user's
variant is a pure function of (experiment id, user id): a keyed BLAKE2b of the user id
read as a number in [0, 1), placed among the cumulative shares. So a user keeps their
variant across requests, API processes and restarts, and a new experiment (a new id)
draws everyone afresh. Per request that is one hash and one bisect over a handful of
bounds, on an `Experiment` that is never mutated (`ExperimentHolder.current` is replaced
in one assignment, as `ModelHolder.current` is).

The running experiment lives in PostgreSQL (`experiments`, at most one row without
`ended_at`). The process that starts or ends one applies it at once; every API process
loads it at start and re-reads it every WATCH_SECONDS, so another process follows within
that time (during those seconds its users are served by its current model).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import uuid
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import accumulate
from pathlib import Path
from typing import Any

import asyncpg

from event_store.errors import UNAVAILABLE_ERRORS
from model.artifacts import file_sha256
from query_side.model_serving import (
    ARTIFACT_SUFFIXES,
    OUTSIDE,
    WATCH_SECONDS,
    ModelHolder,
    ModelRefused,
    ServedModel,
    allowed_path,
)

log = logging.getLogger("cinemate.experiments")

RUNNING_SQL = """
SELECT id, started_at, variants::text AS variants FROM experiments WHERE ended_at IS NULL
"""
# Users and recommendations per variant: the recommendations recorded since the start
# with a variant's model version (`recommendations_time` narrows them to the period).
COUNTS_SQL = """
SELECT model_version, count(*) AS recommendations, count(DISTINCT user_id) AS users
FROM recommendations WHERE created_at >= $1 AND model_version = ANY($2::text[])
GROUP BY model_version
"""
_SCALE = 2.0**-64


def _place(key: bytes, user_id: str) -> float:
    digest = hashlib.blake2b(user_id.encode(), digest_size=8, key=key).digest()
    return int.from_bytes(digest, "big") * _SCALE


def assignment(experiment_id: str, user_id: str) -> float:
    """The user's place in [0, 1) for this experiment: uniform over users, the same for
    the same (experiment id, user id) everywhere and always (BLAKE2b keyed with the
    experiment id, at most 64 bytes of it)."""
    return _place(experiment_id.encode()[:64], user_id)


@dataclass(frozen=True, slots=True)
class Variant:
    served: ServedModel
    share: float

    @property
    def version(self) -> str:
        return str(self.served.model.metadata["version"])


@dataclass(frozen=True)
class Experiment:
    id: str
    started_at: datetime
    variants: tuple[Variant, ...]
    # Derived: each variant's upper bound in [0, 1) but the last (which takes what float
    # rounding leaves of the sum), the hash key, the models in variant order.
    bounds: tuple[float, ...] = field(init=False)
    key: bytes = field(init=False)
    served: tuple[ServedModel, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "bounds", tuple(accumulate(v.share for v in self.variants))[:-1])
        object.__setattr__(self, "key", self.id.encode()[:64])
        object.__setattr__(self, "served", tuple(v.served for v in self.variants))

    def assign(self, user_id: str) -> ServedModel:
        """The model serving `user_id`: one keyed hash, one bisect."""
        return self.served[bisect_right(self.bounds, _place(self.key, user_id))]

    def stored(self) -> str:
        """The `variants` column: what another process needs to serve the same models."""
        return json.dumps(
            [
                {
                    "path": str(v.served.path),
                    "sha256": v.served.sha256,
                    "model_version": v.version,
                    "share": v.share,
                }
                for v in self.variants
            ]
        )


def artifact_of(text: str, models_dir: Path, model_path: Path | None) -> Path:
    """The artifact a variant names: a path as /model/reload takes it (the same single
    refusal for any path outside), or a model version: `<version>.<suffix>` in the
    models dir, else the artifact whose metadata sidecar says that version."""
    if text.endswith(ARTIFACT_SUFFIXES):
        path = allowed_path(text, models_dir, model_path)
        if path is None:
            raise ModelRefused(422, OUTSIDE)
        return path
    for suffix in ARTIFACT_SUFFIXES:
        named = models_dir / f"{text}{suffix}"
        if named.is_file():
            return named.resolve()
    for sidecar in sorted(models_dir.glob("*.json")):
        try:
            meta = json.loads(sidecar.read_text())
        except (OSError, ValueError):
            continue
        artifact = sidecar.with_suffix("")
        if (
            isinstance(meta, dict)
            and meta.get("version") == text
            and artifact.suffix in ARTIFACT_SUFFIXES
            and artifact.is_file()
        ):
            return artifact.resolve()
    raise ModelRefused(404, f"no artifact of model version {text} in the models directory")


class ExperimentHolder:
    """The running experiment of this process, kept in step with PostgreSQL."""

    def __init__(self, models: ModelHolder) -> None:
        self.models = models
        self.current: Experiment | None = None
        self._lock = asyncio.Lock()
        # A stored experiment this process could not load (an artifact gone or changed):
        # not tried again on every poll; its users get the current model meanwhile.
        self._refused: str | None = None

    async def _load(self, path: Path, sha256: str | None = None) -> ServedModel:
        """The served model of `path`, reusing one already in memory (the current model,
        a variant of the running experiment) when it is the same file."""
        if sha256 is None:  # a new experiment: the file as it is now
            try:
                sha256 = await asyncio.to_thread(file_sha256, path)
            except OSError:
                pass  # (loading it says why)
        known = [self.models.current, *(self.current.served if self.current else ())]
        for served in known:
            if served is not None and served.path.resolve() == path and served.sha256 == sha256:
                return served
        served = await self.models.load_other(path)
        if sha256 is not None and served.sha256 != sha256:
            raise ModelRefused(422, f"{path}: changed since the experiment started")
        return served

    async def _variants(
        self, wanted: Sequence[tuple[Path, float, str | None]]
    ) -> tuple[Variant, ...]:
        variants = tuple([Variant(await self._load(p, sha), share) for p, share, sha in wanted])
        versions = [v.version for v in variants]
        if len(set(versions)) < len(versions):
            raise ModelRefused(
                422, f"two variants serve the same model version ({', '.join(versions)})"
            )
        return variants

    async def start(
        self,
        pool: asyncpg.Pool,
        requested: Sequence[tuple[str, float]],
        models_dir: Path,
        model_path: Path | None,
    ) -> Experiment:
        """Load every variant's model, then store and apply the experiment (ending the
        one running). Any refusal (ModelRefused) changes nothing."""
        async with self._lock:
            wanted = [(artifact_of(m, models_dir, model_path), s, None) for m, s in requested]
            variants = await self._variants(wanted)
            draft = Experiment(uuid.uuid4().hex, datetime.min, variants)
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute("LOCK TABLE experiments IN SHARE ROW EXCLUSIVE MODE")
                await conn.execute("UPDATE experiments SET ended_at = now() WHERE ended_at IS NULL")
                started_at = await conn.fetchval(
                    "INSERT INTO experiments (id, variants) VALUES ($1, $2::jsonb)"
                    " RETURNING started_at",
                    draft.id,
                    draft.stored(),
                )
            self.current = Experiment(draft.id, started_at, variants)
            self._refused = None
        log.info("experiment started", extra={"id": draft.id, "variants": draft.stored()})
        return self.current

    async def end(self, pool: asyncpg.Pool) -> str | None:
        """End the running experiment (its id), None when none runs."""
        async with self._lock:
            async with pool.acquire() as conn:
                ended = await conn.fetchval(
                    "UPDATE experiments SET ended_at = now() WHERE ended_at IS NULL RETURNING id"
                )
            self.current = None
        if ended is not None:
            log.info("experiment ended", extra={"id": ended})
        return str(ended) if ended is not None else None

    async def refresh(self, pool: asyncpg.Pool) -> None:
        """Serve what PostgreSQL says runs: the same experiment costs one small read.
        Read under the lock, so a start or end of this process is never undone by a
        read from before it."""
        async with self._lock:
            async with pool.acquire(timeout=2) as conn:
                row = await conn.fetchrow(RUNNING_SQL)
            current = self.current
            if row is None:
                if current is not None:
                    log.info("experiment ended elsewhere", extra={"id": current.id})
                self.current = None
                return
            if (current is not None and current.id == row["id"]) or row["id"] == self._refused:
                return
            stored = json.loads(row["variants"])
            wanted = [(Path(v["path"]), float(v["share"]), v["sha256"]) for v in stored]
            try:
                variants = await self._variants(wanted)
            except ModelRefused as exc:
                self._refused = row["id"]
                self.current = None
                log.error(
                    "the running experiment cannot be served here; the current model serves",
                    extra={"id": row["id"], "reason": exc.reason},
                )
                return
            self.current = Experiment(row["id"], row["started_at"], variants)
        log.info("serving the running experiment", extra={"id": row["id"]})

    async def watch(self, pool: asyncpg.Pool, every: float = WATCH_SECONDS) -> None:
        """Until cancelled: follow the experiment other processes start and end."""
        while True:
            await asyncio.sleep(every)
            try:
                await self.refresh(pool)
            except UNAVAILABLE_ERRORS:
                pass  # PostgreSQL away: the experiment serving stays
            except Exception:
                log.exception("reading the running experiment failed")


async def describe(conn: asyncpg.Connection) -> dict[str, Any] | None:
    """The running experiment as GET answers it (from PostgreSQL, so the same in every
    process), None when none runs. Users and recommendations per variant are counted from
    the recommendations recorded since it started."""
    row = await conn.fetchrow(RUNNING_SQL)
    if row is None:
        return None
    stored = json.loads(row["variants"])
    counts = {
        r["model_version"]: r
        for r in await conn.fetch(
            COUNTS_SQL, row["started_at"], [v["model_version"] for v in stored]
        )
    }
    return {
        "id": row["id"],
        "started_at": row["started_at"],
        "variants": [
            {
                "model_version": v["model_version"],
                "share": v["share"],
                "users": counts[v["model_version"]]["users"] if v["model_version"] in counts else 0,
                "recommendations": (
                    counts[v["model_version"]]["recommendations"]
                    if v["model_version"] in counts
                    else 0
                ),
            }
            for v in stored
        ],
    }
