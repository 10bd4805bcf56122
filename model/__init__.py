"""Recommendation model of the service and its offline evaluation.

Pure numpy/scipy/scikit-learn (onnx optional); nothing here knows about databases or
the web. What each event means to the recommender is `model.signals`. Serving uses
`train_tuned` (or `train` with fixed params), `TrainedModel`, `save_model` and
`load_model`; the offline protocol lives in `model.evaluation` (`run_evaluation`,
`format_table`).

Those names are imported from their modules when first used, not with the package:
the projections read `model.signals` only, and a process that folds events (a worker,
a replay) need not load numpy, scipy and scikit-learn to start.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

_MODULES = {
    "ArtifactError": "model.artifacts",
    "ArtifactFormatError": "model.artifacts",
    "ArtifactIntegrityError": "model.artifacts",
    "ArtifactNotFoundError": "model.artifacts",
    "load_model": "model.artifacts",
    "save_model": "model.artifacts",
    "Interaction": "model.interactions",
    "Interactions": "model.interactions",
    "UserItemWeights": "model.interactions",
    "implicit_weights": "model.interactions",
    "Params": "model.params",
    "HistoryItem": "model.recommender",
    "TrainedModel": "model.recommender",
    "histories": "model.recommender",
    "train": "model.recommender",
    "train_tuned": "model.tuning",
}
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


def __getattr__(name: str) -> Any:
    if name not in _MODULES:
        raise AttributeError(f"module 'model' has no attribute {name!r}")
    return getattr(importlib.import_module(_MODULES[name]), name)
