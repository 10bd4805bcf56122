import json
from pathlib import Path

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
from model.recommender import HistoryItem, TrainedModel, histories
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
    vector = np.zeros((1, model.n_items))
    vector[0, 0] = 1.0
    assert np.allclose(fitted.decision_function(vector)[0], model.matrix[0])
