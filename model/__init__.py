"""Recommendation model of the service and its offline evaluation.

Pure numpy/scipy/scikit-learn (onnx optional); nothing here knows about databases or
the web. Serving uses `train`, `TrainedModel`, `save_model` and `load_model`; the
offline protocol lives in `model.evaluation` (`run_evaluation`, `format_table`).
"""

from model.artifacts import (
    ArtifactError,
    ArtifactFormatError,
    ArtifactIntegrityError,
    ArtifactNotFoundError,
    load_model,
    save_model,
)
from model.interactions import (
    Interaction,
    Interactions,
    UserItemWeights,
    WeightConfig,
    implicit_weights,
)
from model.params import Params
from model.recommender import HistoryItem, TrainedModel, histories, train

__all__ = [
    "ArtifactError",
    "ArtifactFormatError",
    "ArtifactIntegrityError",
    "ArtifactNotFoundError",
    "HistoryItem",
    "Interaction",
    "Interactions",
    "Params",
    "TrainedModel",
    "UserItemWeights",
    "WeightConfig",
    "histories",
    "implicit_weights",
    "load_model",
    "save_model",
    "train",
]
