"""Session-wide trained models on synthetic data."""

from __future__ import annotations

import pytest

from model.recommender import TrainedModel, train
from tests.model.synthetic import SMALL_PARAMS, random_events, two_cluster_events


@pytest.fixture(scope="session")
def cluster_model() -> TrainedModel:
    return train(two_cluster_events(), SMALL_PARAMS)


@pytest.fixture(scope="session")
def random_model() -> TrainedModel:
    return train(random_events(), SMALL_PARAMS)
