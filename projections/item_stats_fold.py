"""Item statistics for popular/trending: pure, time-decayed interaction weights per movie.

A movie's trend score is sum(w_i * exp(-(T - t_i) / tau)) over its events, kept as
(score, reference time T = latest event time). Ranking compares ln(score) + T / tau,
which orders movies exactly as their scores decayed to any common "now" would, without
underflowing for old data.
"""

from __future__ import annotations

import math
from typing import Any

from model import signals
from schema import events

HALF_LIFE_DAYS = 7.0
TAU_SECONDS = HALF_LIFE_DAYS * 86_400 / math.log(2)

Stats = dict[str, Any]


def signal_weight(event: events.InteractionEvent) -> float:
    """How much an event says "people want this movie now": the event's own weight as
    the model means it (`model.signals.event_weight`), so trending and the model agree
    on what a like or a half-watched film is worth."""
    if isinstance(event, events.Watched):
        return signals.event_weight("watch", event.progress)
    if isinstance(event, events.Rated):
        return signals.event_weight("rating", event.rating)
    if isinstance(event, events.Favorited):
        return signals.event_weight("favorite", event.action == "add")
    if isinstance(event, events.FeedbackGiven):
        return signals.event_weight("feedback", event.action)
    if isinstance(event, events.Searched) and event.clicked_movie_id:
        return signals.event_weight("search_click", True)
    return 0.0


def movie_of(event: events.InteractionEvent) -> str | None:
    if isinstance(event, events.Searched):
        return event.clicked_movie_id
    return getattr(event, "movie_id", None)


def empty_stats(movie_id: str) -> Stats:
    return {"movie_id": movie_id, "interactions": 0, "score": 0.0, "score_at": None}


def apply(stats: Stats, event: events.InteractionEvent) -> Stats:
    weight = signal_weight(event)
    at = event.timestamp.timestamp()
    stats["interactions"] += 1
    if stats["score_at"] is None:
        stats["score"], stats["score_at"] = weight, at
    elif at >= stats["score_at"]:
        stats["score"] = stats["score"] * math.exp((stats["score_at"] - at) / TAU_SECONDS) + weight
        stats["score_at"] = at
    else:
        stats["score"] += weight * math.exp((at - stats["score_at"]) / TAU_SECONDS)
    return stats


def trend_key(score: float, score_at: float) -> float:
    """Monotonic in the decayed score; -inf for movies with nothing positive."""
    if score <= 0:
        return -math.inf
    return math.log(score) + score_at / TAU_SECONDS
