import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.base import clone

from model.artifacts import (
    ArtifactError,
    ArtifactFormatError,
    ArtifactIntegrityError,
    ArtifactNotFoundError,
    digest_path,
    load_model,
    metadata_path,
    save_model,
)
from model.estimator import SeqEaseEstimator
from model.interactions import implicit_weights
from model.recommender import HistoryItem, TrainedModel, histories, train
from tests.model.synthetic import SMALL_PARAMS, random_events


def _user_histories() -> list[list[HistoryItem]]:
    return list(histories(implicit_weights(random_events())).values())


def test_all_formats_give_identical_top_10(random_model: TrainedModel, tmp_path: Path) -> None:
    loaded = {
        fmt: load_model(save_model(random_model, tmp_path / f"m.{fmt}"))
        for fmt in ("npz", "pkl", "onnx")
    }
    for history in _user_histories():
        recent = history[-8:]
        exclude = {h.movie_id for h in recent}
        expected = random_model.recommend(recent, 10, exclude)
        assert len(expected) == 10
        for fmt, model in loaded.items():
            assert model.recommend(recent, 10, exclude) == expected, fmt
    for fmt, model in loaded.items():
        assert model.item_ids == random_model.item_ids
        assert model.metadata["version"] == random_model.metadata["version"]
        assert model.metadata["format"] == fmt
        assert model.similar("m1", 5) == random_model.similar("m1", 5)


def test_sidecars_hold_digest_and_metadata(random_model: TrainedModel, tmp_path: Path) -> None:
    path = save_model(random_model, tmp_path / "nested" / "model.npz")
    digest = digest_path(path).read_text().split()[0]
    sidecar = json.loads(metadata_path(path).read_text())
    assert sidecar["sha256"] == digest == load_model(path).metadata["sha256"]
    assert sidecar["format"] == "npz"
    assert sidecar["n_items"] == random_model.n_items


def test_pkl_with_mismatched_digest_is_refused(random_model: TrainedModel, tmp_path: Path) -> None:
    path = save_model(random_model, tmp_path / "m.pkl")
    digest_path(path).write_text("0" * 64 + "  m.pkl\n")
    with pytest.raises(ArtifactIntegrityError, match="does not match"):
        load_model(path)


def test_tampered_pkl_is_refused(random_model: TrainedModel, tmp_path: Path) -> None:
    path = save_model(random_model, tmp_path / "m.pkl")
    with path.open("ab") as handle:
        handle.write(b"\x00")
    with pytest.raises(ArtifactIntegrityError):
        load_model(path)


def test_pkl_without_digest_is_refused(random_model: TrainedModel, tmp_path: Path) -> None:
    path = save_model(random_model, tmp_path / "m.pkl")
    digest_path(path).unlink()
    with pytest.raises(ArtifactIntegrityError, match="without a recorded digest"):
        load_model(path)


@pytest.mark.parametrize("fmt", ["npz", "onnx"])
def test_truncated_artifact_is_refused(
    random_model: TrainedModel, tmp_path: Path, fmt: str
) -> None:
    path = save_model(random_model, tmp_path / f"m.{fmt}")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ArtifactIntegrityError):
        load_model(path)
    digest_path(path).unlink()  # without the digest, the format check itself must catch it
    with pytest.raises(ArtifactFormatError, match="not a valid"):
        load_model(path)


def test_garbage_npz_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.npz"
    path.write_bytes(b"this is not a zip archive")
    with pytest.raises(ArtifactFormatError):
        load_model(path)


def test_missing_and_unsupported_paths(tmp_path: Path, random_model: TrainedModel) -> None:
    with pytest.raises(ArtifactNotFoundError):
        load_model(tmp_path / "absent.npz")
    with pytest.raises(ArtifactError, match="unsupported"):
        save_model(random_model, tmp_path / "m.bin")


def test_estimator_is_a_scikit_learn_estimator() -> None:
    estimator = SeqEaseEstimator(params=SMALL_PARAMS.to_dict())
    assert clone(estimator).get_params() == {"params": SMALL_PARAMS.to_dict()}
    fitted = estimator.fit(random_events())
    model = fitted.to_model()
    vector = np.zeros((1, model.matrix.shape[0]))  # one weight per row of every block
    vector[0, 0] = 1.0
    assert np.allclose(fitted.decision_function(vector)[0], model.matrix[0])


@pytest.mark.parametrize("fmt", ["npz", "pkl", "onnx"])
def test_one_and_two_block_models_round_trip(tmp_path: Path, fmt: str) -> None:
    """One blended block (both read alike) and two stacked blocks score the same after
    saving, in every format."""
    one = train(random_events(), replace(SMALL_PARAMS, sequence_tau=SMALL_PARAMS.recency_tau))
    two = train(random_events(), replace(SMALL_PARAMS, sequence_tau=1.0))
    assert (one.blocks, two.blocks) == (1, 2)
    for model in (one, two):
        loaded = load_model(save_model(model, tmp_path / f"m{model.blocks}.{fmt}"))
        assert loaded.blocks == model.blocks
        for history in _user_histories()[:20]:
            assert loaded.recommend(history, 10) == model.recommend(history, 10)


def _write_npz(path: Path, matrix: np.ndarray, items: list[str], metadata: dict[str, Any]) -> Path:
    with path.open("wb") as handle:
        np.savez(
            handle,
            layout=np.asarray(1, dtype=np.int64),
            matrix=matrix.astype(np.float32),
            item_ids=np.asarray(items, dtype=str),
            popularity=np.ones(len(items), dtype=np.float32),
            metadata=np.asarray([json.dumps(metadata)]),
        )
    return path


def test_version_1_artifacts_still_score_as_they_did(tmp_path: Path) -> None:
    """Version 1: one n x n matrix, params without value_power, each history item read
    as weight * exp(-rank / recency_tau) over the newest max_history."""
    rng = np.random.default_rng(1)
    items = [str(i) for i in range(1, 9)]
    matrix = rng.standard_normal((8, 8))
    old_params = {
        "l2": 500.0,
        "min_item_users": 5,
        "max_items": 4000,
        "sequence_weight": 1.0,
        "sequence_window": 10,
        "sequence_decay": 5.0,
        "sequence_backward": 0.5,
        "recency_tau": 3.0,
        "max_history": 2,
    }
    metadata = {"version": "seqease-old", "artifact_version": 1, "params": old_params}
    model = load_model(_write_npz(tmp_path / "old.npz", matrix, items, metadata))
    history = [HistoryItem("1", 0.5, 1.0), HistoryItem("2", 1.0, 2.0), HistoryItem("3", 0.8, 3.0)]
    # Newest first: "3" (rank 0), "2" (rank 1); "1" is beyond max_history.
    expected = 0.8 * matrix[2].astype(np.float32) + 1.0 * np.exp(-1 / 3.0) * matrix[1].astype(
        np.float32
    )
    assert model.blocks == 1
    assert np.allclose(model.score(history), expected, atol=1e-6)


def test_newer_artifact_versions_are_refused(tmp_path: Path) -> None:
    items = ["1", "2"]
    metadata = {"version": "seqease-future", "artifact_version": 99, "params": {}}
    path = _write_npz(tmp_path / "future.npz", np.eye(2), items, metadata)
    with pytest.raises(ArtifactFormatError, match="artifact_version 99"):
        load_model(path)
