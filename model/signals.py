"""What each event means to the recommender: the one definition of every signal weight.

Training (`model.interactions`), serving (`query_side.recommend.history_of`), item
statistics (`projections.item_stats_fold`) and the feature document
(`projections.user_features_fold`) all read these numbers and functions, so a model is
scored online from exactly the history it was trained on.

Per (user, movie) the events reduce to one weight, `movie_weight`:
- the latest rating counts (a re-rating replaces), scaled by `RATING_SCALE`;
- the best watch progress counts, times `WATCH_WEIGHT` (finishing a film is weaker
  evidence of liking it than a top rating);
- the latest favorite action decides the favorite state (`FAVORITE_WEIGHT` while it is on);
- the latest reaction to a recommendation counts (`FEEDBACK_WEIGHTS`), added on top, so a
  dislike can turn a watched film negative.
The base is the strongest of the positives present; the sum is clipped to
[MIN_WEIGHT, MAX_WEIGHT]. "Latest" means latest in stream order (the order the service
accepted the events), which is the order a projection folds them in.

Why the latest feedback and not the sum of all feedback on a movie: a reaction is the
viewer's current opinion, like a rating, so "click, then dislike" must end disliked; a
sum would let repeated clicks on a movie shown in several lists pile up, and the feature
fold keeps exactly one reaction per movie, so training and serving can agree without
storing every event.

`event_weight` is the weight of one event on its own, for running sums over events that
have no per-movie reduction (the trending score of a movie sums events from many users).

Nothing here imports anything of ours: `model/` depends on nothing else in the project.
"""

from __future__ import annotations

from typing import Final

RATING_SCALE: Final = 5.0
WATCH_WEIGHT: Final = 0.8
FAVORITE_WEIGHT: Final = 1.0
MIN_WEIGHT: Final = -1.0
MAX_WEIGHT: Final = 1.5
# Watch progress at or above this is a completed watch (not recommended again).
COMPLETED: Final = 0.9
# The implicit value of each reaction to a recommendation.
FEEDBACK_WEIGHTS: Final[dict[str, float]] = {
    "like": 1.0,
    "watch": 0.8,
    "click": 0.5,
    "dismiss": -0.5,
    "dislike": -1.0,
}
# A click on a search result shows interest in a movie (trending, genre interest) but the
# model learns no preference from searches.
SEARCH_CLICK_WEIGHT: Final = 0.5


def rating_weight(rating: float) -> float:
    return rating / RATING_SCALE


def watch_weight(progress: float) -> float:
    return WATCH_WEIGHT * min(max(progress, 0.0), 1.0)


def favorite_weight(added: bool) -> float:
    return FAVORITE_WEIGHT if added else -FAVORITE_WEIGHT


def feedback_weight(action: str) -> float:
    return FEEDBACK_WEIGHTS[action]


def is_completed(progress: float) -> bool:
    return progress >= COMPLETED


def movie_weight(
    rating: float | None = None,
    progress: float | None = None,
    favorite: bool | None = None,
    feedback: str | None = None,
) -> float:
    """One movie's weight for one viewer from its reduced signals (see the module doc):
    the latest rating, the best progress, the latest favorite state, the latest reaction.
    Zero means "no signal" and such movies are left out of a history."""
    base: float | None = None
    if rating is not None:
        base = rating_weight(rating)
    if progress is not None:
        base = max(base, watch_weight(progress)) if base is not None else watch_weight(progress)
    if favorite:
        base = max(base, FAVORITE_WEIGHT) if base is not None else FAVORITE_WEIGHT
    total = (base or 0.0) + (feedback_weight(feedback) if feedback is not None else 0.0)
    return min(max(total, MIN_WEIGHT), MAX_WEIGHT)


def event_weight(kind: str, value: float | str | bool) -> float:
    """The weight of a single event: a rating value, a watch progress, a favorite
    add (True) / remove (False), a feedback action, or a search click (any value)."""
    if kind == "rating":
        return rating_weight(float(value))
    if kind == "watch":
        return watch_weight(float(value))
    if kind == "favorite":
        return favorite_weight(bool(value))
    if kind == "feedback":
        return feedback_weight(str(value))
    if kind == "search_click":
        return SEARCH_CLICK_WEIGHT
    raise ValueError(f"unknown signal kind {kind!r}")
