"""The demo data: deterministic, valid commands, viewers with visible tastes."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

from cinemate.demo import demo_catalog, demo_events
from schema.commands import RatingCommand

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def test_demo_is_deterministic_and_in_time_order() -> None:
    catalog = demo_catalog()
    first, again = demo_events(catalog, now=NOW), demo_events(catalog, now=NOW)
    assert [c.event_id for c in first] == [c.event_id for c in again]
    assert len({c.event_id for c in first}) == len(first) > 5000
    times = [c.occurred_at for c in first]
    assert times == sorted(times) and max(t for t in times if t) < NOW  # type: ignore[type-var]


def test_viewers_rate_their_genres_higher() -> None:
    catalog = demo_catalog()
    genres = {movie_id: movie.genres for movie_id, movie in catalog}
    ratings = [c for c in demo_events(catalog, now=NOW) if isinstance(c, RatingCommand)]
    favourite: dict[str, Counter[str]] = {}
    for rating in ratings:
        if rating.rating >= 4:
            favourite.setdefault(rating.user_id, Counter()).update(genres[rating.movie_id])
    top = {user: counts.most_common(1)[0][0] for user, counts in favourite.items()}
    high = [r.rating for r in ratings if top.get(r.user_id) in genres[r.movie_id]]
    other = [r.rating for r in ratings if top.get(r.user_id) not in genres[r.movie_id]]
    assert sum(high) / len(high) > sum(other) / len(other) + 0.5
