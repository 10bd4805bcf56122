"""The model being served: found, loaded and validated off the request path, swapped whole.

What may be served: artifacts in the models dir, or the operator's MODEL_PATH, nothing
else (a client naming a path learns nothing about it either: every path outside gets one
answer). A pickle runs code when loaded, so a `.pkl` loads only when its SHA-256 is
pinned by the operator (MODEL_SHA256) or was recorded in PostgreSQL by `cinemate train`.
When nothing names a file, the newest artifact that loads wins: a bad file dropped in the
models dir never turns a good model off.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from event_store.errors import UNAVAILABLE_ERRORS
from model.artifacts import ArtifactError, file_sha256, load_model
from model.recommender import TrainedModel

log = logging.getLogger("cinemate.model")

ARTIFACT_SUFFIXES = (".npz", ".pkl", ".onnx")
OUTSIDE = "only artifacts in the models directory or at MODEL_PATH can be loaded"
RECORD_SQL = """
INSERT INTO model_artifacts (sha256, file, format, version) VALUES ($1, $2, $3, $4)
ON CONFLICT (sha256) DO NOTHING
"""


class ModelRefused(Exception):
    """A model file that cannot serve; the one serving before stays."""

    def __init__(self, status_code: int, reason: str) -> None:
        super().__init__(reason)
        self.status_code = status_code
        self.reason = reason


@dataclass(frozen=True)
class ServedModel:
    model: TrainedModel
    path: Path
    sha256: str
    loaded_at: datetime

    def info(self) -> dict[str, Any]:
        meta = self.model.metadata
        return {
            "version": meta.get("version"),
            "format": self.path.suffix.lstrip("."),
            "path": str(self.path),
            "sha256": self.sha256,
            "trained_at": meta.get("trained_at"),
            "items": self.model.n_items,
            "metrics": meta.get("metrics") or {},
            "data_position": meta.get("data_position"),
            "loaded_at": self.loaded_at.isoformat().replace("+00:00", "Z"),
        }


# How often a serving process looks for a newer artifact in its models dir (SPEC: picked
# up within 10 s), and how old a file must be before it is read: artifacts are renamed
# into place whole, but a .pkl's digest file follows it a moment later.
WATCH_SECONDS = 2.0
SETTLE_SECONDS = 1.0


def artifacts_newest_first(models_dir: Path) -> list[Path]:
    candidates = [p for p in models_dir.glob("*") if p.suffix in ARTIFACT_SUFFIXES]
    return sorted(candidates, key=lambda p: p.stat().st_mtime, reverse=True)


def newest_artifact(models_dir: Path) -> Path | None:
    candidates = artifacts_newest_first(models_dir)
    return candidates[0] if candidates else None


def allowed_path(text: str, models_dir: Path, model_path: Path | None) -> Path | None:
    """The artifact a client named, if it may be loaded: inside the models dir (relative
    names are taken from there; links are followed first), or the operator's MODEL_PATH."""
    named = Path(text)
    resolved = (named if named.is_absolute() else models_dir / named).resolve()
    if resolved.is_relative_to(models_dir.resolve()):
        return resolved
    if model_path is not None and resolved == model_path.resolve():
        return resolved
    return None


async def record_trained(conn: asyncpg.Connection, path: Path, version: str) -> None:
    """`cinemate train` vouches for the artifact it wrote: its pickle may then load."""
    await conn.execute(RECORD_SQL, file_sha256(path), path.name, path.suffix.lstrip("."), version)


def trusted_pickles(
    pool: asyncpg.Pool, pinned: Collection[str]
) -> Callable[[], Awaitable[frozenset[str]]]:
    """Digests a `.pkl` may have: the operator's pins and what training recorded (only
    the pins while PostgreSQL cannot be reached)."""
    pins = frozenset(d.lower() for d in pinned)

    async def trusted() -> frozenset[str]:
        try:
            async with pool.acquire(timeout=2) as conn:
                rows = await conn.fetch("SELECT sha256 FROM model_artifacts")
        except UNAVAILABLE_ERRORS:
            return pins
        return pins | {r["sha256"] for r in rows}

    return trusted


async def _no_pickles() -> frozenset[str]:
    return frozenset()


Signature = tuple[str, int, int, int]


def _signature(models_dir: Path | None) -> Signature | None:
    """The newest artifact as it is now: its path, mtime and size, and its digest file's
    mtime (a .pkl refused for a missing digest is tried again once the digest appears)."""
    try:
        path = newest_artifact(models_dir) if models_dir is not None else None
        if path is None:
            return None
        stat = path.stat()
        digest = path.with_name(path.name + ".sha256")
        digest_mtime = digest.stat().st_mtime_ns if digest.exists() else 0
    except FileNotFoundError:  # replaced while we looked: next time
        return None
    return (str(path), stat.st_mtime_ns, stat.st_size, digest_mtime)


def _load_and_check(path: Path, trusted: Collection[str]) -> ServedModel:
    try:
        model = load_model(path, trusted_pickles=trusted)
    except ArtifactError as exc:  # its message names the file already
        missing = isinstance(exc, FileNotFoundError)
        raise ModelRefused(404 if missing else 422, str(exc)) from None
    except Exception as exc:
        raise ModelRefused(422, f"{path}: not a usable model ({exc!r})") from None
    # Score a one-item history: a model that loads but cannot score must not go live.
    try:
        probe = model.recommend([], k=1)
        if model.n_items and not probe:
            raise ValueError("ranks no item")
        if model.item_ids:
            from model.recommender import HistoryItem

            scores = model.score([HistoryItem(model.item_ids[0])])
            if not all(math.isfinite(float(s)) for s in scores[:100]):
                raise ValueError("scores are not finite")
    except Exception as exc:
        raise ModelRefused(422, f"{path}: loads but cannot score ({exc})") from None
    return ServedModel(model, path, model.metadata["sha256"], datetime.now(UTC))


class ModelHolder:
    """Holds the served model; `current` is replaced in one assignment, never mutated."""

    def __init__(self) -> None:
        self.current: ServedModel | None = None
        self._lock = asyncio.Lock()
        self.models_dir: Path | None = None
        # Which pickles may load (see trusted_pickles); none until the service says.
        self.trusted_pickles: Callable[[], Awaitable[frozenset[str]]] = _no_pickles
        # The newest artifact of models_dir when a model was last loaded or refused: the
        # watcher acts only on a newer one, so a model an admin chose stays until then.
        self._seen: Signature | None = None

    async def load(self, path: Path) -> ServedModel:
        async with self._lock:
            self._seen = _signature(self.models_dir)
            trusted = await self.trusted_pickles()
            served = await asyncio.to_thread(_load_and_check, path, trusted)
            self.current = served
        log.info(
            "model loaded",
            extra={"version": served.model.metadata.get("version"), "path": str(path)},
        )
        return served

    async def load_other(self, path: Path) -> ServedModel:
        """A model to serve beside `current` (an experiment's variant): found trusted,
        loaded and checked as `load` does, but never swapped in."""
        trusted = await self.trusted_pickles()
        return await asyncio.to_thread(_load_and_check, path, trusted)

    async def load_newest(self, models_dir: Path) -> ServedModel:
        """The newest artifact in the models dir that loads; ModelRefused (with the
        newest one's reason) when none does, and the model serving before stays."""
        refusals = []
        for path in artifacts_newest_first(models_dir):
            try:
                return await self.load(path)
            except ModelRefused as exc:
                log.warning("model artifact refused", extra={"reason": exc.reason})
                refusals.append(exc)
        if not refusals:
            raise ModelRefused(404, f"no model artifact in {models_dir}")
        raise ModelRefused(422, f"no artifact in the models directory loads: {refusals[0].reason}")

    async def load_initial(self, model_path: Path | None, models_dir: Path) -> None:
        """At start: MODEL_PATH, else the newest artifact in the data dir that loads, else
        none (recommendations then come from popularity)."""
        self.models_dir = models_dir
        self._seen = _signature(models_dir)
        try:
            if model_path is not None:
                await self.load(model_path)
            elif newest_artifact(models_dir) is not None:
                await self.load_newest(models_dir)
        except ModelRefused as exc:
            log.warning("no model served at start", extra={"reason": exc.reason})

    async def pick_up_newer(self) -> ServedModel | None:
        """Load the newest artifact of the models dir if it is newer than what this holder
        last saw (`cinemate train` or `demo` wrote one). A broken one is logged and left
        alone until it changes; the model serving before stays."""
        seen = _signature(self.models_dir)
        if seen is None or seen == self._seen:
            return None
        if time.time() - seen[1] / 1e9 < SETTLE_SECONDS:
            return None
        path = Path(seen[0])
        try:
            served = await self.load(path)
        except ModelRefused as exc:
            self._seen = seen
            log.warning(
                "newer model artifact refused; the model serving before stays",
                extra={"path": str(path), "reason": exc.reason},
            )
            return None
        log.info(
            "picked up a newer model from the models dir",
            extra={"version": served.model.metadata.get("version"), "path": str(path)},
        )
        return served

    async def watch(self, every: float = WATCH_SECONDS) -> None:
        """Until cancelled: serve newer artifacts of the models dir within seconds."""
        while True:
            await asyncio.sleep(every)
            try:
                await self.pick_up_newer()
            except Exception:  # a file system hiccup must not end the watch
                log.exception("looking for a newer model failed")
