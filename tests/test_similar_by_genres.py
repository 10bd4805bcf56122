"""`GenreIndex.similar` (bit masks, numpy) answers exactly what `similar_by_genres` does.

Random catalogs with genres differing only in case, repeated genres, movies without
genres, trending lists holding movies outside the catalog and repeats, query movies in
and outside the catalog; and a catalog with more genres than one mask holds.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

import pytest

from query_side.recommend import MAX_MASKED_GENRES, GenreIndex, similar_by_genres

BASE_GENRES = ["Comedy", "comedy", "Drama", "Horror", "Sci-Fi", "War", "Film-Noir", "Crime"]


def reference(
    movies: Mapping[str, Sequence[str]], movie: str, trending: list[str], k: int
) -> list[tuple[str, float]]:
    by_genre: dict[str, set[str]] = {}
    for m, genres in movies.items():
        for g in genres:
            by_genre.setdefault(g.lower(), set()).add(m)
    return similar_by_genres(
        movie,
        lambda m: movies.get(m, ()),
        lambda g: frozenset(by_genre.get(g.lower(), set())),
        trending,
        k,
    )


def random_catalog(rng: random.Random, size: int, names: list[str]) -> dict[str, tuple[str, ...]]:
    return {
        f"{rng.choice(['', 'm', 'tt'])}{i}": tuple(
            rng.choice(names) for _ in range(rng.choice([0, 1, 1, 2, 3, 4]))
        )
        for i in range(size)
    }


@pytest.mark.parametrize("seed", range(6))
def test_random_catalogs_answer_alike(seed: int) -> None:
    rng = random.Random(seed)
    movies = random_catalog(rng, rng.choice([5, 60, 800]), BASE_GENRES)
    ids = list(movies)
    index = GenreIndex(movies)
    assert index.usable
    for _ in range(40):
        trending = rng.sample(ids, min(len(ids), rng.randint(0, 50)))
        trending += [f"outside{rng.randrange(5)}" for _ in range(rng.randint(0, 4))]
        trending += rng.sample(trending, min(len(trending), 2))  # repeats
        movie = rng.choice([*ids, "outside1", "nowhere"])
        k = rng.randint(1, 100)
        assert index.similar(movie, trending, k) == reference(movies, movie, trending, k)


def test_a_catalog_with_more_genres_than_a_mask_answers_alike() -> None:
    rng = random.Random(3)
    names = [f"G{i}" for i in range(MAX_MASKED_GENRES + 6)]
    movies = random_catalog(rng, 200, names)
    index = GenreIndex(movies)
    assert not index.usable
    trending = list(movies)[:30]
    for movie in list(movies)[:20]:
        assert index.similar(movie, trending, 15) == reference(movies, movie, trending, 15)


def test_trend_ranks_follow_a_new_trending_list() -> None:
    movies = {"a": ("X",), "b": ("X",), "c": ("X",)}
    index = GenreIndex(movies)
    assert [m for m, _ in index.similar("a", ["b", "c"], 2)] == ["b", "c"]
    assert [m for m, _ in index.similar("a", ["c", "b"], 2)] == ["c", "b"]
