"""The service's model behind the protocol's ranker interface.

It trains and scores through `model.recommender` exactly as the service does, so the
offline number is the served model's number.
"""

from __future__ import annotations

from collections.abc import Sequence

from model.interactions import Interactions, implicit_weights
from model.movielens import Ratings
from model.params import Params
from model.protocol import ProtocolSplit
from model.recommender import HistoryItem, TrainedModel, histories, train
from model.tuning import Validation


def ratings_to_interactions(ratings: Ratings) -> Interactions:
    return Interactions.from_ratings(
        ratings.users, ratings.items, ratings.ratings, ratings.timestamps
    )


def validation_of(split: ProtocolSplit) -> Validation:
    """A protocol split as the tuner reads it: string ids, as the service has them."""
    truth = {str(user): {str(m) for m in movies} for user, movies in split.truth.items()}
    return Validation(implicit_weights(ratings_to_interactions(split.train)), truth)


def user_histories(ratings: Ratings) -> dict[str, list[HistoryItem]]:
    return histories(implicit_weights(ratings_to_interactions(ratings)))


def recommend_users(
    model: TrainedModel,
    user_history: dict[str, list[HistoryItem]],
    users: Sequence[int],
    k: int,
) -> dict[int, list[int]]:
    """Top-k movieIds per user, excluding everything in the user's TRAIN history."""
    out: dict[int, list[int]] = {}
    for user in users:
        history = user_history.get(str(user), [])
        seen = {item.movie_id for item in history}
        out[user] = [int(movie) for movie, _ in model.recommend(history, k, exclude=seen)]
    return out


class ServiceRanker:
    name = "service"

    def __init__(self, params: Params) -> None:
        self.params = params
        self.model: TrainedModel | None = None
        self.histories: dict[str, list[HistoryItem]] = {}

    def fit(self, train_ratings: Ratings) -> None:
        self.model = train(ratings_to_interactions(train_ratings), self.params)
        self.histories = user_histories(train_ratings)

    def recommend(self, users: Sequence[int], k: int) -> dict[int, list[int]]:
        if self.model is None:
            raise RuntimeError("fit() first")
        return recommend_users(self.model, self.histories, users, k)
