"""Data preparation of protocol `ml-small-temporal-u20-v1` (EVAL.md rules 1-3)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model.movielens import Ratings, load_ratings
from model.split import temporal_split

PROTOCOL = "ml-small-temporal-u20-v1"
VARIANTS = ("all", "pos35")
POSITIVE_THRESHOLD = 3.5
CUTOFF = 10


@dataclass(frozen=True)
class ProtocolSplit:
    """TRAIN rows, the candidate movieIds (sorted) and each user's TEST ground truth.

    `truth` only holds users with at least one test item inside the candidates: exactly
    the users the metrics are averaged over.
    """

    train: Ratings
    candidates: np.ndarray
    truth: dict[int, set[int]]


def select_variant(ratings: Ratings, variant: str) -> Ratings:
    if variant == "all":
        return ratings
    if variant == "pos35":
        return ratings.subset(ratings.ratings >= POSITIVE_THRESHOLD)
    raise ValueError(f"unknown variant {variant!r}; expected one of {', '.join(VARIANTS)}")


def load_variant(data_dir: Path, variant: str) -> Ratings:
    return select_variant(load_ratings(data_dir), variant)


def protocol_split(ratings: Ratings) -> ProtocolSplit:
    train_mask, test_mask = temporal_split(ratings.users, ratings.items, ratings.timestamps)
    train = ratings.subset(train_mask)
    candidates = np.unique(train.items)
    test = ratings.subset(test_mask)
    in_candidates = np.isin(test.items, candidates)
    truth: dict[int, set[int]] = {}
    for user, item in zip(
        test.users[in_candidates].tolist(), test.items[in_candidates].tolist(), strict=True
    ):
        truth.setdefault(user, set()).add(item)
    return ProtocolSplit(train=train, candidates=candidates, truth=truth)


def validation_split(split: ProtocolSplit) -> ProtocolSplit:
    """Rule 6: the same split applied again to TRAIN, for choosing hyper-parameters."""
    return protocol_split(split.train)


def train_items_by_user(train: Ratings) -> dict[int, np.ndarray]:
    order = np.argsort(train.users, kind="stable")
    users, starts = np.unique(train.users[order], return_index=True)
    groups = np.split(train.items[order], starts[1:])
    return {int(u): g for u, g in zip(users.tolist(), groups, strict=True)}
