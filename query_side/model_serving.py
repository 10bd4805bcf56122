"""The model being served: found, loaded and validated off the request path, swapped whole."""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from model.artifacts import ArtifactError, file_sha256, load_model
from model.recommender import TrainedModel

log = logging.getLogger("cinemate.model")

ARTIFACT_SUFFIXES = (".npz", ".pkl", ".onnx")


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


def newest_artifact(models_dir: Path) -> Path | None:
    candidates = [p for p in models_dir.glob("*") if p.suffix in ARTIFACT_SUFFIXES]
    return max(candidates, key=lambda p: p.stat().st_mtime) if candidates else None


def _load_and_check(path: Path) -> ServedModel:
    try:
        model = load_model(path)
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
    return ServedModel(model, path, file_sha256(path), datetime.now(UTC))


class ModelHolder:
    """Holds the served model; `current` is replaced in one assignment, never mutated."""

    def __init__(self) -> None:
        self.current: ServedModel | None = None
        self._lock = asyncio.Lock()

    async def load(self, path: Path) -> ServedModel:
        async with self._lock:
            served = await asyncio.to_thread(_load_and_check, path)
            self.current = served
        log.info(
            "model loaded",
            extra={"version": served.model.metadata.get("version"), "path": str(path)},
        )
        return served

    async def load_initial(self, model_path: Path | None, models_dir: Path) -> None:
        """At start: MODEL_PATH, else the newest artifact in the data dir, else none
        (recommendations then come from popularity)."""
        path = model_path or newest_artifact(models_dir)
        if path is None:
            return
        try:
            await self.load(path)
        except ModelRefused as exc:
            log.warning("no model served at start", extra={"reason": exc.reason})
