"""similar_by_genres: the fallback of /similar when no model knows the movie."""

from __future__ import annotations

from query_side.recommend import similar_by_genres

GENRES = {
    "x": ("Comedy", "Romance"),
    "both": ("Romance", "Comedy"),
    "comedy-a": ("Comedy",),
    "comedy-b": ("Comedy",),
    "drama": ("Drama",),
    "bare": (),
}


def genres_of(movie: str) -> tuple[str, ...]:
    return GENRES.get(movie, ())


def members_of(genre: str) -> list[str]:
    return [m for m, gs in GENRES.items() if genre in gs]


def test_shared_genres_rank_first_and_trend_breaks_ties() -> None:
    ranked = similar_by_genres("x", genres_of, members_of, ["drama", "comedy-b"], 10)
    assert ranked == [("both", 1.0), ("comedy-b", 0.5), ("comedy-a", 0.5), ("drama", 0.0)]


def test_a_movie_without_genres_gets_the_trending_list_without_itself() -> None:
    ranked = similar_by_genres("bare", genres_of, members_of, ["bare", "drama", "x"], 1)
    assert ranked == [("drama", 0.0)]
