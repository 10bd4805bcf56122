import dataclasses

import numpy as np

from model.ids import natural_order
from model.interactions import Interaction
from model.recommender import HistoryItem, TrainedModel, train
from tests.model.synthetic import CLUSTER_A, CLUSTER_B, SMALL_PARAMS, history_of, two_cluster_events


def test_recommendations_stay_in_the_users_cluster(cluster_model: TrainedModel) -> None:
    for cluster in (CLUSTER_A, CLUSTER_B):
        history = history_of(cluster[:6])
        recs = cluster_model.recommend(history, k=5, exclude={h.movie_id for h in history})
        assert len(recs) == 5
        assert {movie for movie, _ in recs} <= set(cluster[6:])


def test_similar_items_are_from_the_same_cluster(cluster_model: TrainedModel) -> None:
    similar = cluster_model.similar(CLUSTER_B[0], k=5)
    assert len(similar) == 5
    assert {movie for movie, _ in similar} <= set(CLUSTER_B[1:])
    assert cluster_model.similar("no-such-movie") == []


def test_a_new_interaction_changes_the_next_recommendation(cluster_model: TrainedModel) -> None:
    history = history_of(CLUSTER_A[:6])
    seen = {h.movie_id for h in history} | {CLUSTER_B[0]}
    before = cluster_model.recommend(history, k=5, exclude=seen)
    newer = [*history, HistoryItem(CLUSTER_B[0], 1.0, 100.0)]
    after = cluster_model.recommend(newer, k=5, exclude=seen)
    assert after != before
    b_rows = [cluster_model.item_ids.index(m) for m in CLUSTER_B[1:]]
    assert cluster_model.score(history)[b_rows].max() == 0.0
    assert cluster_model.score(newer)[b_rows].max() > 0.0


def test_recent_items_weigh_more_than_old_ones(cluster_model: TrainedModel) -> None:
    old_a_new_b = [HistoryItem(CLUSTER_A[0], 1.0, 1.0), HistoryItem(CLUSTER_B[0], 1.0, 2.0)]
    old_b_new_a = [HistoryItem(CLUSTER_B[0], 1.0, 1.0), HistoryItem(CLUSTER_A[0], 1.0, 2.0)]
    exclude = {CLUSTER_A[0], CLUSTER_B[0]}
    assert cluster_model.recommend(old_a_new_b, 1, exclude)[0][0] in CLUSTER_B
    assert cluster_model.recommend(old_b_new_a, 1, exclude)[0][0] in CLUSTER_A


def test_unknown_movies_are_ignored(cluster_model: TrainedModel) -> None:
    scores = cluster_model.score([HistoryItem("unknown", 1.0, 1.0)])
    assert scores.dtype == np.float32
    assert scores.shape == (cluster_model.n_items,)
    assert not scores.any()
    # Without known history the ranking falls back to popularity.
    assert len(cluster_model.recommend([HistoryItem("unknown", 1.0, 1.0)], k=3)) == 3


def test_allowed_and_exclude_filter_the_answer(cluster_model: TrainedModel) -> None:
    history = history_of(CLUSTER_A[:6])
    allowed = {CLUSTER_A[10], CLUSTER_A[11], CLUSTER_B[3]}
    recs = cluster_model.recommend(history, k=10, exclude={CLUSTER_A[11]}, allowed=allowed)
    assert [movie for movie, _ in recs][:1] == [CLUSTER_A[10]]
    assert {movie for movie, _ in recs} <= allowed - {CLUSTER_A[11]}


def test_training_is_deterministic_and_ids_are_naturally_ordered() -> None:
    first = train(two_cluster_events(), SMALL_PARAMS)
    second = train(two_cluster_events(), SMALL_PARAMS)
    assert first.item_ids == tuple(natural_order(CLUSTER_A + CLUSTER_B))
    assert np.array_equal(first.matrix, second.matrix)
    history = history_of(CLUSTER_B[:3])
    assert first.recommend(history, 10) == second.recommend(history, 10)


def test_metadata_describes_the_model(cluster_model: TrainedModel) -> None:
    meta = cluster_model.metadata
    assert meta["n_items"] == 40
    assert meta["n_users"] == 40
    assert meta["params"]["l2"] == SMALL_PARAMS.l2
    assert meta["version"].startswith("seqease-")
    assert meta["trained_at"].endswith("Z")
    assert {"data_position", "metrics", "format"} <= set(meta)


def test_negative_feedback_pushes_similar_items_down(cluster_model: TrainedModel) -> None:
    liked = history_of(CLUSTER_A[:4])
    disliked = [*liked, HistoryItem(CLUSTER_B[0], -1.0, 50.0)]
    b_rows = [cluster_model.item_ids.index(m) for m in CLUSTER_B[1:]]
    assert cluster_model.score(liked)[b_rows].mean() == 0.0
    assert cluster_model.score(disliked)[b_rows].mean() < 0.0


def test_min_item_users_bounds_the_vocabulary() -> None:
    events = two_cluster_events()
    model = train(events, SMALL_PARAMS.__class__(l2=10.0, min_item_users=1000))
    assert model.n_items == 0
    assert model.recommend(history_of(CLUSTER_A[:2]), 5) == []


def test_mixed_event_kinds_train_and_dislikes_are_not_positives() -> None:
    events = [
        *two_cluster_events(),
        *(Interaction(f"u{u}", "999", "feedback", -1.0, 5000.0) for u in range(10)),
        *(Interaction(f"u{u}", "500", "watch", 0.95, 5000.0 + u) for u in range(20, 30)),
        *(Interaction(f"u{u}", "500", "favorite", 1.0, 6000.0) for u in range(20, 25)),
    ]
    model = train(events, SMALL_PARAMS)
    assert model.index_of("999") is None  # only ever disliked: never a training positive
    assert model.index_of("500") is not None
    similar = {movie for movie, _ in model.similar("500", 3)}
    assert similar <= set(CLUSTER_B)


def test_recency_ranks_are_newest_first_vectorised() -> None:
    from model.interactions import implicit_weights
    from model.recommender import histories, newest_first, recency_ranks
    from tests.model.synthetic import random_events

    events = random_events()
    # Coarse times: many ties, which go to the higher natural movie id first.
    coarse = dataclasses.replace(events, timestamps=np.floor(events.timestamps / 4))
    weights = implicit_weights(coarse)
    ranks = recency_ranks(weights.user_ids, weights.movie_ids, weights.timestamps)
    expected = {
        (user, item.movie_id): rank
        for user, history in histories(weights).items()
        for rank, item in enumerate(newest_first(history))
    }
    got = {
        (u, m): int(r)
        for u, m, r in zip(
            weights.user_ids.tolist(), weights.movie_ids.tolist(), ranks, strict=True
        )
    }
    assert got == expected
