"""The tuner: it scores trials as the served model would, and it reaches the corners."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from model.baselines import EaseRanker
from model.holdout import temporal_split
from model.interactions import Interaction
from model.movielens import Ratings
from model.params import PLAIN_EASE, Params
from model.recommender import histories, train_from_weights
from model.service_ranker import ServiceRanker
from model.tuning import Evaluator, Space, Validation, train_tuned, tune
from tests.model.synthetic import random_events

TWO_BLOCKS = Params(
    l2=20.0,
    min_item_users=1,
    recency_tau=8.0,
    sequence_weight=1.0,
    sequence_window=3,
    sequence_decay=1.0,
    sequence_tau=1.0,
)


def saga_events(seed: int = 5, n_users: int = 150) -> list[Interaction]:
    """Ten sagas of five parts; every viewer watches whole sagas in order, part after part.
    What comes next is known from the newest movie alone; the set of movies says little."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(n_users):
        t = 0.0
        for saga in rng.permutation(10)[: int(rng.integers(2, 5))].tolist():
            for part in range(5):
                rows.append(Interaction(f"u{user}", f"{saga * 10 + part + 1}", "rating", 4.0, t))
                t += 1.0
    return rows


def shuffled_taste_events(seed: int = 9, n_users: int = 150) -> list[Interaction]:
    """Two tastes, 30 movies each; viewers pick 12 of theirs in random order (no order)."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(n_users):
        base = 1 if user % 2 else 101
        for t, movie in enumerate(rng.choice(30, size=12, replace=False).tolist()):
            rows.append(Interaction(f"u{user}", str(base + movie), "rating", 4.0, float(t)))
    return rows


def validation_of(events: list[Interaction]) -> Validation:
    kept, held_out = temporal_split(events)
    return Validation.from_events(kept, held_out)


@pytest.mark.parametrize(
    "params",
    [
        replace(PLAIN_EASE, l2=20.0, min_item_users=1),
        replace(TWO_BLOCKS, sequence_tau=TWO_BLOCKS.recency_tau),  # one blended block
        TWO_BLOCKS,
        replace(TWO_BLOCKS, value_power=0.0, max_history=4),
    ],
)
def test_trials_rank_like_the_served_model(params: Params) -> None:
    validation = validation_of(list(_records(random_events())))
    evaluator = Evaluator(validation, params)
    model = train_from_weights(validation.weights, params)
    assert model.blocks == (
        2 if params.sequence_tau != params.recency_tau and params.sequence_weight else 1
    )
    seen = histories(validation.weights)
    top = evaluator.top(params)
    same = 0
    for user, row in zip(evaluator.users, top.tolist(), strict=True):
        history = seen.get(user, [])
        served = [m for m, _ in model.recommend(history, 10, {h.movie_id for h in history})]
        same += served == [model.item_ids[c] for c in row if c >= 0]
    # Batch float32 sums may break an exact tie differently now and then, no more.
    assert same >= 0.95 * len(evaluator.users)


def test_plain_ease_corner_is_the_protocols_ease() -> None:
    """With every item in the vocabulary, the plain-EASE params rank exactly as the EASE
    reference of the protocol (same l2)."""
    events = shuffled_taste_events()
    ratings = Ratings(
        np.asarray([int(e.user_id[1:]) for e in events]),
        np.asarray([int(e.movie_id) for e in events]),
        np.full(len(events), 4.0),
        np.asarray([int(e.timestamp) for e in events]),
    )
    service = ServiceRanker(replace(PLAIN_EASE, l2=50.0, min_item_users=1))
    ease = EaseRanker(l2=50.0)
    service.fit(ratings)
    ease.fit(ratings)
    users = sorted(set(ratings.users.tolist()))
    assert service.recommend(users, 10) == ease.recommend(users, 10)


def test_without_order_the_tuner_never_falls_below_plain_ease() -> None:
    validation = validation_of(shuffled_taste_events())
    params, trials = tune(validation, Params(min_item_users=1))
    plain = trials[0]
    assert (plain.params.sequence_weight, plain.params.recency_tau) == (0.0, 0.0)
    assert (plain.params.value_power, plain.params.max_history) == (0.0, 0)
    assert max(t.ndcg for t in trials) >= plain.ndcg
    assert Evaluator(validation, params).ndcg(params) == max(t.ndcg for t in trials)


def test_with_strong_order_the_tuner_turns_the_order_block_on() -> None:
    validation = validation_of(saga_events())
    params, trials = tune(validation, Params(min_item_users=1))
    plain = trials[0].ndcg
    best = max(t.ndcg for t in trials)
    assert params.sequence_weight > 0.0
    assert best > 1.3 * plain  # what comes next is the newest part + 1: order must win


def test_l2_line_search_moves_toward_better_values() -> None:
    validation = validation_of(shuffled_taste_events())
    space = Space(l2_factor=4.0, l2_steps=3, passes=1)
    _, trials = tune(validation, Params(min_item_users=1, l2=1.0), space)
    tried = [t.params.l2 for t in trials]
    assert len(set(tried)) >= 2 and max(tried) > 1.0  # l2=1 overfits: it must move up


def test_train_tuned_records_how_it_was_chosen() -> None:
    tuned = train_tuned(saga_events(n_users=60), Params(min_item_users=1), data_position=7)
    metadata = tuned.model.metadata
    assert metadata["params"] == tuned.params.to_dict()
    assert metadata["data_position"] == 7
    assert metadata["metrics"]["tuned_on_holdout"] is True
    assert metadata["metrics"]["ndcg"] == pytest.approx(max(t.ndcg for t in tuned.trials), abs=1e-4)
    assert metadata["tuning_trials"] == len(tuned.trials) > 1
    assert metadata["train_seconds"] >= metadata["tune_seconds"] > 0


def _records(events: object) -> list[Interaction]:
    from model.interactions import Interactions

    assert isinstance(events, Interactions)
    return [
        Interaction(str(u), str(m), k, float(v), float(t))
        for u, m, k, v, t in zip(
            events.user_ids.tolist(),
            events.movie_ids.tolist(),
            events.kinds.tolist(),
            events.values.tolist(),
            events.timestamps.tolist(),
            strict=True,
        )
    ]
