"""The model as a scikit-learn estimator, the object a `.pkl` artifact holds."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator

from model.interactions import Interactions
from model.params import Params
from model.recommender import TrainedModel, train


class SeqEaseEstimator(BaseEstimator):
    """Fitted attributes are plain arrays and a JSON string, so the pickle references no
    class but this one and numpy's."""

    def __init__(self, params: dict[str, Any] | None = None) -> None:
        self.params = params

    def fit(self, X: Interactions, y: None = None) -> SeqEaseEstimator:
        return self._set_model(train(X, Params.from_dict(self.params or {})))

    def decision_function(self, user_vectors: np.ndarray) -> np.ndarray:
        """Scores over `item_ids_` for dense user vectors over the matrix rows
        (n_users x (blocks * n_items): block 0's history weights, then block 1's)."""
        return np.asarray(user_vectors, dtype=np.float64) @ self.matrix_.astype(np.float64)

    def to_model(self) -> TrainedModel:
        metadata = json.loads(self.metadata_json_)
        return TrainedModel(
            [str(item) for item in self.item_ids_.tolist()],
            self.matrix_,
            self.popularity_,
            Params.from_dict(metadata.get("params", {})),
            metadata,
        )

    @classmethod
    def from_model(cls, model: TrainedModel) -> SeqEaseEstimator:
        return cls(params=model.params.to_dict())._set_model(model)

    def _set_model(self, model: TrainedModel) -> SeqEaseEstimator:
        self.item_ids_ = np.asarray(model.item_ids, dtype=str)
        self.matrix_ = model.matrix
        self.popularity_ = model.popularity
        self.metadata_json_ = json.dumps(model.metadata, default=_plain)
        return self


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
