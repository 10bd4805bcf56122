import numpy as np

from model.baselines import PopularityRanker
from model.movielens import Ratings
from model.protocol import protocol_split, select_variant, validation_split
from model.split import temporal_split


def _ratings(rows: list[tuple[int, int, float, int]]) -> Ratings:
    users, items, ratings, stamps = (np.asarray(c) for c in zip(*rows, strict=True))
    return Ratings(users.astype(np.int64), items.astype(np.int64), ratings, stamps.astype(np.int64))


def _test_counts(n: int) -> int:
    users = np.zeros(n, dtype=np.int64)
    items = np.arange(n)
    _, test = temporal_split(users, items, np.arange(n))
    return int(test.sum())


def test_last_floor_fifth_is_test_with_at_least_one() -> None:
    assert [_test_counts(n) for n in (2, 4, 5, 9, 10, 14, 15, 20)] == [1, 1, 1, 1, 2, 2, 3, 4]


def test_users_with_fewer_than_two_interactions_are_dropped() -> None:
    users = np.array([1, 2, 2])
    train, test = temporal_split(users, np.array([10, 10, 11]), np.array([5, 1, 2]))
    assert not train[0] and not test[0]
    assert train.tolist() == [False, True, False]
    assert test.tolist() == [False, False, True]


def test_sort_is_by_timestamp_then_item() -> None:
    # Shuffled input; three items share the last timestamp, so movieId decides.
    items = np.array([30, 1, 20, 2, 10])
    stamps = np.array([5, 1, 5, 2, 5])
    train, test = temporal_split(np.zeros(5, dtype=np.int64), items, stamps)
    assert items[test].tolist() == [30]
    assert sorted(items[train].tolist()) == [1, 2, 10, 20]


def test_test_items_outside_train_leave_the_ground_truth() -> None:
    split = protocol_split(
        _ratings(
            [
                (1, 10, 4.0, 1),
                (1, 11, 4.0, 2),
                (1, 99, 4.0, 3),  # 99 only ever in test
                (2, 10, 4.0, 1),
                (2, 12, 4.0, 2),
                (2, 11, 4.0, 3),
            ]
        )
    )
    assert split.candidates.tolist() == [10, 11, 12]
    assert split.truth == {2: {11}}
    validation = validation_split(split)  # rule 2 again, on TRAIN only
    assert validation.candidates.tolist() == [10]
    assert validation.truth == {}


def test_pos35_drops_low_ratings_before_splitting() -> None:
    ratings = _ratings([(1, 1, 3.0, 1), (1, 2, 3.5, 2), (1, 3, 5.0, 3)])
    assert select_variant(ratings, "pos35").items.tolist() == [2, 3]


def test_popularity_ties_go_to_lower_movie_id() -> None:
    train = _ratings(
        [
            (1, 50, 4.0, 1),
            (2, 50, 4.0, 1),
            (1, 7, 4.0, 2),
            (2, 7, 4.0, 2),
            (3, 9, 4.0, 1),
            (3, 8, 4.0, 2),
        ]
    )
    ranker = PopularityRanker()
    ranker.fit(train)
    assert ranker.recommend([3], 4)[3] == [7, 50]
    assert ranker.recommend([1], 4)[1] == [8, 9]
