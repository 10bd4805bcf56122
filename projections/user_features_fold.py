"""The user_features fold: pure functions from (state, event) to state, and state to document.

The state keeps the running sums the document needs (progress sum, rating sum, genre
weights, per-movie history); the document is what clients read. Events at or below the
state's stream version are ignored, which makes redelivery and overlapping refreshes
harmless.

`items` holds, per movie, exactly the reduced signals the model reads (`model.signals`:
latest rating, best progress, latest favorite state, latest feedback action, and `at`,
the newest time of those events), so serving rebuilds a history equal to training's.
`apply` reads and writes only the item of the event's movie (`movie_of`); nothing else
here reads `items`. So a state need only hold the items of the movies a batch touches:
the adapter keeps each item in a row of its own (user_items) and loads just those, and
an event costs the same whether its user touched ten movies or three thousand.
A genre's weight is the sum of `signals.movie_weight` over the user's movies in that
genre (kept up to date by adding each event's change to its movie's weight), plus
`signals.SEARCH_CLICK_WEIGHT` per search result clicked.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from model import signals
from schema import events

RECENT_MOVIES = 50
RECENT_SEARCHES = 10
TOP_GENRES = 5
COMPLETED = signals.COMPLETED
EVENT_TYPES = ("watch", "search", "rating", "favorite", "feedback")
# The events that say something about one movie, all of which the model reads.
MOVIE_SIGNALS = (events.Watched, events.Rated, events.Favorited, events.FeedbackGiven)

State = dict[str, Any]
GenresOf = Callable[[str], Sequence[str]]


def empty_state(user_id: str) -> State:
    return {
        "user_id": user_id,
        "stream_version": 0,
        "position": 0,
        "counts": dict.fromkeys(EVENT_TYPES, 0),
        "watch_seconds": 0,
        "progress_sum": 0.0,
        "completed": 0,
        "rating_sum": 0.0,
        "favorites": [],
        "recent_movies": [],
        "recent_searches": [],
        "genre_weights": {},
        "items": {},
        "first_event_at": None,
        "last_event_at": None,
    }


def _to_front(items: list[str], value: str, limit: int | None = None) -> list[str]:
    """`value` first, once, then the others in their order, at most `limit`: the list
    itself, changed in place (list.remove and insert run in C: this runs per event and
    a generator over the list was a third of a replay's fold)."""
    if items and items[0] == value:
        return items
    if value in items:  # values are unique in these lists; no exception when absent
        items.remove(value)
    items.insert(0, value)
    if limit and len(items) > limit:
        del items[limit:]
    return items


def _add_genres(state: State, genres_of: GenresOf, movie_id: str, weight: float) -> None:
    if not weight:
        return
    weights = state["genre_weights"]
    for genre in genres_of(movie_id):
        total = weights.get(genre, 0.0) + weight
        # A movie's weight leaving again (a favorite removed) must leave no float dust
        # that would still count as a positive interest.
        if abs(total) < 1e-9:
            weights.pop(genre, None)
        else:
            weights[genre] = total


def movie_of(event: events.InteractionEvent) -> str | None:
    """The movie whose item `apply` reads and changes for this event, if any."""
    return event.movie_id if isinstance(event, MOVIE_SIGNALS) else None


def _movie_weight(item: dict[str, Any]) -> float:
    # Positional: twice per movie event, and keywords cost a replay measurably.
    get = item.get
    return signals.movie_weight(get("rating"), get("progress"), get("favorite"), get("feedback"))


def _item(state: State, movie_id: str) -> dict[str, Any]:
    item: dict[str, Any] = state["items"].setdefault(movie_id, {})
    return item


def iso(moment: datetime) -> str:
    """The time as the documents write it: ISO 8601, UTC as `Z`. A UTC time (every
    event's timestamp read from the store) is written by orjson, a quarter of the cost
    of isoformat on each event of a replay; a test holds the two identical."""
    if moment.tzinfo is UTC:
        return orjson.dumps(moment, option=orjson.OPT_UTC_Z)[1:-1].decode()
    return moment.isoformat().replace("+00:00", "Z")


def _before(earlier: str, later: str) -> bool:
    """Whether time `earlier` is before time `later` (both as `iso` writes them).

    Two UTC times of the same length (both with fractions of a second, or both without)
    order as their strings do, which is the common case and several times cheaper;
    others (offsets, one with fractions) are compared as times: "10:00:00.5Z" sorts
    before "10:00:00Z" as a string, yet is half a second later."""
    if len(earlier) == len(later) and earlier[-1] == "Z" and later[-1] == "Z":
        return earlier < later
    return datetime.fromisoformat(earlier) < datetime.fromisoformat(later)


def apply(
    state: State, event: events.InteractionEvent, position: int, genres_of: GenresOf
) -> State:
    """Fold one event into the state (mutating and returning it)."""
    if event.originator_version <= state["stream_version"]:
        return state
    kind = event.event_type
    state["counts"][kind] += 1
    at = iso(event.timestamp)
    first, last = state["first_event_at"], state["last_event_at"]
    if first is None or _before(at, first):
        state["first_event_at"] = at
    if last is None or _before(last, at):
        state["last_event_at"] = at
    movie_id: str | None = None
    if isinstance(event, events.Searched):
        state["recent_searches"] = _to_front(state["recent_searches"], event.query, RECENT_SEARCHES)
        if event.clicked_movie_id:
            movie_id = event.clicked_movie_id
            _add_genres(state, genres_of, movie_id, signals.SEARCH_CLICK_WEIGHT)
    elif isinstance(event, MOVIE_SIGNALS):
        movie_id = event.movie_id
        item = _item(state, movie_id)
        before = _movie_weight(item)
        if isinstance(event, events.Watched):
            state["watch_seconds"] += event.watched_seconds or 0
            state["progress_sum"] += event.progress
            if signals.is_completed(event.progress):
                state["completed"] += 1
            item["progress"] = max(item.get("progress", 0.0), event.progress)
        elif isinstance(event, events.Rated):
            state["rating_sum"] += event.rating
            item["rating"] = event.rating
        elif isinstance(event, events.Favorited):
            added = event.action == "add"
            favorites = [m for m in state["favorites"] if m != movie_id]
            state["favorites"] = [movie_id, *favorites] if added else favorites
            item["favorite"] = added
        elif isinstance(event, events.FeedbackGiven):
            item["feedback"] = event.action
        # The newest signal time, as training keeps it (events may arrive out of time
        # order; ISO strings with and without fractions do not compare as times).
        if "at" not in item or _before(item["at"], at):
            item["at"] = at
        _add_genres(state, genres_of, movie_id, _movie_weight(item) - before)
    if movie_id is not None:
        state["recent_movies"] = _to_front(state["recent_movies"], movie_id, RECENT_MOVIES)
    state["stream_version"] = event.originator_version
    state["position"] = position
    return state


def top_genres(weights: Mapping[str, float], limit: int = TOP_GENRES) -> list[dict[str, Any]]:
    """The `limit` heaviest genres with positive weight, heaviest first (ties by name),
    each as its share of all positive weight. Ranked as (-weight, genre) tuples, which
    sort in C: a key function called per genre was a fifth of building a document."""
    total = sum(w for w in weights.values() if w > 0)
    ranked = sorted([(-w, g) for g, w in weights.items() if w > 0])[:limit]
    return [{"genre": g, "weight": round(-w / total, 4)} for w, g in ranked]


def document(state: State, updated_at: str) -> dict[str, Any]:
    """The feature document clients read (and that goes to processed_features);
    `updated_at` as `iso` writes it (encoded once for a whole batch)."""
    counts = state["counts"]
    watches, ratings = counts["watch"], counts["rating"]
    return {
        "user_id": state["user_id"],
        "stream_version": state["stream_version"],
        "position": state["position"],
        "event_counts": dict(counts),
        "watch": {
            "count": watches,
            "total_seconds": state["watch_seconds"],
            "mean_progress": round(state["progress_sum"] / watches, 4) if watches else 0.0,
            "completed_count": state["completed"],
        },
        "ratings": {
            "count": ratings,
            "mean": round(state["rating_sum"] / ratings, 4) if ratings else None,
        },
        "favorites": list(state["favorites"]),
        "recent_movies": list(state["recent_movies"]),
        "top_genres": top_genres(state["genre_weights"]),
        "recent_searches": list(state["recent_searches"]),
        "first_event_at": state["first_event_at"],
        "last_event_at": state["last_event_at"],
        "updated_at": updated_at,
    }
