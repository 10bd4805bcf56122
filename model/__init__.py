"""Recommendation model of the service and its offline evaluation.

Pure numpy/scipy/scikit-learn (onnx optional); nothing here knows about databases or
the web. What each event means to the recommender is `model.signals`. Serving uses
`train_tuned` (or `train` with fixed params), `TrainedModel`, `save_model` and
`load_model`; the offline protocol lives in `model.evaluation` (`run_evaluation`,
`format_table`).
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
    implicit_weights,
)
from model.params import Params
from model.recommender import HistoryItem, TrainedModel, histories, train
from model.tuning import train_tuned

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
    "histories",
    "implicit_weights",
    "load_model",
    "save_model",
    "train",
    "train_tuned",
]
