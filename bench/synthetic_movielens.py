"""bench/synthetic_movielens: seeded MovieLens-format folders with known structure.

Each scenario writes `movies.csv` (movieId,title,genres) and `ratings.csv`
(userId,movieId,rating,timestamp) into OUT/<scenario>/, ready for
`cinemate evaluate --data OUT/<scenario>`. They exist to check that the service's model
adapts to the data it is given (EVAL.md, "Beyond one data set"):

- `tastes`: stationary genre tastes with a popularity skew; the order in which a viewer
  watches is random, so there is no sequence signal at all (plain EASE territory).
- `series`: franchises of 2-10 parts watched in order, interleaved with a few standalone
  films; what comes next is mostly the next part (strong order).
- `mixture`: the same catalog shape, but each viewer has their own share of series
  watching versus taste-driven picks (order matters for some viewers, not others).
- `sparse`: the `tastes` catalog, but most viewers have only 2-8 ratings and a few heavy
  viewers carry the co-occurrence (cold-ish users).

The same seed always writes the same bytes. Output goes wherever --out says (a temporary
directory, never the repository): the folders are generated, not shipped.

    python -m bench.synthetic_movielens --out /tmp/synthetic [--scenario all] [--seed 13]
"""

from __future__ import annotations

import argparse
import csv
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

GENRES = (
    "Action",
    "Adventure",
    "Animation",
    "Children",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)
START = 1_262_304_000  # 2010-01-01, any epoch works: only the order of timestamps matters
DAY = 86_400


@dataclass(frozen=True)
class Catalog:
    """Movie ids 1..n; `genres[j]` are genre indices; `series[j]` is -1 for standalone
    films, else the franchise index, with `part[j]` its 0-based position."""

    genres: list[tuple[int, ...]]
    popularity: np.ndarray
    series: np.ndarray
    part: np.ndarray

    @property
    def n_movies(self) -> int:
        return len(self.genres)


@dataclass(frozen=True)
class Log:
    users: list[int]
    movies: list[int]
    ratings: list[float]
    timestamps: list[int]

    def extend(
        self, user: int, movies: Sequence[int], ratings: Sequence[float], timestamps: Sequence[int]
    ) -> None:
        self.users.extend([user] * len(movies))
        self.movies.extend(movies)
        self.ratings.extend(ratings)
        self.timestamps.extend(timestamps)


def _movie_genres(rng: np.random.Generator) -> tuple[int, ...]:
    # Like MovieLens: most films have one to three genres, Drama and Comedy are common.
    prior = np.ones(len(GENRES))
    prior[[GENRES.index("Drama"), GENRES.index("Comedy")]] = 4.0
    prior[[GENRES.index("Action"), GENRES.index("Thriller")]] = 2.0
    count = int(rng.choice([1, 2, 2, 3]))
    return tuple(sorted(rng.choice(len(GENRES), size=count, replace=False, p=prior / prior.sum())))


def standalone_catalog(rng: np.random.Generator, n_movies: int) -> Catalog:
    """Films with a heavy-tailed popularity (log-normal, a few blockbusters)."""
    genres = [_movie_genres(rng) for _ in range(n_movies)]
    popularity = np.exp(rng.normal(0.0, 1.3, n_movies))
    minus = np.full(n_movies, -1)
    return Catalog(genres, popularity, minus, minus.copy())


def series_catalog(rng: np.random.Generator, n_series: int, n_standalone: int) -> Catalog:
    """Franchises first (parts share genres, later parts are less popular), then films."""
    genres: list[tuple[int, ...]] = []
    popularity: list[float] = []
    series: list[int] = []
    part: list[int] = []
    for s in range(n_series):
        length = int(np.clip(rng.geometric(0.25) + 1, 2, 10))
        shared = _movie_genres(rng)
        base = float(np.exp(rng.normal(0.0, 1.3)))
        for p in range(length):
            genres.append(shared)
            popularity.append(base * 0.8**p)
            series.append(s)
            part.append(p)
    films = standalone_catalog(rng, n_standalone)
    return Catalog(
        genres + films.genres,
        np.concatenate([np.asarray(popularity), films.popularity]),
        np.concatenate([np.asarray(series), films.series]),
        np.concatenate([np.asarray(part), films.part]),
    )


def _genre_matrix(catalog: Catalog) -> np.ndarray:
    matrix = np.zeros((catalog.n_movies, len(GENRES)))
    for j, gs in enumerate(catalog.genres):
        matrix[j, list(gs)] = 1.0 / len(gs)
    return matrix


def _tastes(rng: np.random.Generator, n_users: int) -> np.ndarray:
    # A small concentration: each viewer cares about two or three genres.
    return rng.dirichlet(np.full(len(GENRES), 0.25), size=n_users)


def _affinity(taste: np.ndarray, genre_matrix: np.ndarray) -> np.ndarray:
    """How well each movie matches one viewer, scaled so the best genre match is ~1."""
    return (genre_matrix @ taste) / max(float(taste.max()), 1e-9)


def _sample_without_replacement(
    rng: np.random.Generator, weights: np.ndarray, n: int
) -> np.ndarray:
    """n distinct indices drawn with probability proportional to `weights`, in draw
    order (Gumbel top-k)."""
    keys = np.log(np.maximum(weights, 1e-300)) + rng.gumbel(size=len(weights))
    n = min(n, int(np.count_nonzero(weights > 0)))
    top = np.argpartition(-keys, n - 1)[:n] if n < len(keys) else np.arange(len(keys))
    return top[np.argsort(-keys[top], kind="stable")]


def _ratings(rng: np.random.Generator, affinity: np.ndarray) -> list[float]:
    """Half-star ratings that rise with the genre match, plus noise."""
    raw = 2.5 + 2.2 * affinity + rng.normal(0.0, 0.8, len(affinity))
    return (np.clip(np.round(raw * 2) / 2, 0.5, 5.0)).tolist()


def _history_length(rng: np.random.Generator, low: int, median: float, cap: int) -> int:
    return int(np.clip(low + rng.lognormal(np.log(median), 0.8), low, cap))


def _timestamps(rng: np.random.Generator, n: int) -> list[int]:
    """Increasing times in sessions: a few films an evening, days between evenings."""
    start = START + int(rng.integers(0, 3 * 365 * DAY))
    gaps = np.where(rng.random(n) < 0.3, rng.exponential(4 * DAY, n), rng.exponential(1800, n))
    return (start + np.cumsum(gaps + 60).astype(np.int64)).tolist()


def generate_tastes(
    rng: np.random.Generator, n_users: int = 3000, n_movies: int = 2500, sparse: bool = False
) -> tuple[Catalog, Log]:
    """Stationary tastes: each history is drawn at once, then shuffled, so the order of a
    viewer's films carries no information beyond the set."""
    catalog = standalone_catalog(rng, n_movies)
    genre_matrix = _genre_matrix(catalog)
    tastes = _tastes(rng, n_users)
    log = Log([], [], [], [])
    for u in range(n_users):
        affinity = _affinity(tastes[u], genre_matrix)
        if sparse and rng.random() < 0.9:
            n = int(rng.integers(2, 9))
        else:
            n = _history_length(rng, 10, 40, 400)
        chosen = _sample_without_replacement(rng, catalog.popularity * affinity**2.5, n)
        chosen = rng.permutation(chosen)
        log.extend(
            u + 1,
            (chosen + 1).tolist(),
            _ratings(rng, affinity[chosen]),
            _timestamps(rng, len(chosen)),
        )
    return catalog, log


def generate_series(
    rng: np.random.Generator,
    n_users: int = 2500,
    n_series: int = 500,
    n_standalone: int = 800,
    series_share: tuple[float, float] = (0.85, 0.85),
) -> tuple[Catalog, Log]:
    """Viewers pick franchises by taste and popularity and watch the parts in order
    (sometimes dropping out), with standalone films in between.

    `series_share` bounds the per-viewer probability that the next pick starts a
    franchise; (0.85, 0.85) is the strong-order log, (0.0, 1.0) the mixture.
    """
    catalog = series_catalog(rng, n_series, n_standalone)
    genre_matrix = _genre_matrix(catalog)
    tastes = _tastes(rng, n_users)
    firsts = np.flatnonzero(catalog.part == 0)
    films = np.flatnonzero(catalog.series < 0)
    starts = np.r_[0, np.flatnonzero(np.diff(catalog.series) != 0) + 1]
    first_index = {int(catalog.series[s]): int(s) for s in starts if catalog.series[s] >= 0}
    log = Log([], [], [], [])
    for u in range(n_users):
        affinity = _affinity(tastes[u], genre_matrix)
        share = float(rng.uniform(*series_share))
        target = _history_length(rng, 8, 30, 300)
        franchise_order = _sample_without_replacement(
            rng, catalog.popularity[firsts] * affinity[firsts] ** 2.5, len(firsts)
        )
        film_order = _sample_without_replacement(
            rng, catalog.popularity[films] * affinity[films] ** 2.5, len(films)
        )
        next_franchise = next_film = 0
        watched: list[int] = []
        while len(watched) < target:
            if rng.random() < share and next_franchise < len(franchise_order):
                s = int(catalog.series[firsts[franchise_order[next_franchise]]])
                next_franchise += 1
                j = first_index[s]
                while j < catalog.n_movies and catalog.series[j] == s:
                    watched.append(j)
                    if rng.random() < 0.15:  # dropped the franchise
                        break
                    if rng.random() < 0.1 and next_film < len(film_order):
                        watched.append(int(films[film_order[next_film]]))
                        next_film += 1
                    j += 1
            elif next_film < len(film_order):
                watched.append(int(films[film_order[next_film]]))
                next_film += 1
            else:
                break
        chosen = np.asarray(watched[:target], dtype=np.int64)
        log.extend(
            u + 1,
            (chosen + 1).tolist(),
            _ratings(rng, affinity[chosen]),
            _timestamps(rng, len(chosen)),
        )
    return catalog, log


SCENARIOS: dict[str, Callable[[np.random.Generator], tuple[Catalog, Log]]] = {
    "tastes": lambda rng: generate_tastes(rng),
    "series": lambda rng: generate_series(rng),
    "mixture": lambda rng: generate_series(rng, n_users=3000, series_share=(0.0, 1.0)),
    "sparse": lambda rng: generate_tastes(rng, n_users=8000, n_movies=2000, sparse=True),
}


def _title(rng: np.random.Generator, catalog: Catalog, j: int) -> str:
    year = 1970 + int(rng.integers(0, 50))
    if catalog.series[j] >= 0:
        return f"Saga {int(catalog.series[j]) + 1} Part {int(catalog.part[j]) + 1} ({year})"
    return f"Film {j + 1} ({year})"


def write_folder(folder: Path, catalog: Catalog, log: Log, rng: np.random.Generator) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "movies.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["movieId", "title", "genres"])
        for j in range(catalog.n_movies):
            genres = "|".join(GENRES[g] for g in catalog.genres[j])
            writer.writerow([j + 1, _title(rng, catalog, j), genres])
    order = np.lexsort((np.asarray(log.timestamps), np.asarray(log.users)))
    with (folder / "ratings.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["userId", "movieId", "rating", "timestamp"])
        for i in order.tolist():
            writer.writerow(
                [log.users[i], log.movies[i], f"{log.ratings[i]:.1f}", log.timestamps[i]]
            )


def generate(out: Path, scenarios: Sequence[str], seed: int) -> list[Path]:
    written = []
    for offset, name in enumerate(SCENARIOS):
        if name not in scenarios:
            continue
        # One stream per scenario, so generating one alone writes the same bytes.
        rng = np.random.default_rng([seed, offset])
        catalog, log = SCENARIOS[name](rng)
        folder = out / name
        write_folder(folder, catalog, log, rng)
        written.append(folder)
    return written


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.synthetic_movielens",
        description=(
            "Write seeded synthetic MovieLens-format folders (movies.csv, ratings.csv) "
            "into OUT/<scenario>/: 'tastes' (stationary genre tastes, popularity skew, no "
            "order signal), 'series' (franchises watched in order), 'mixture' (both, a "
            "per-viewer share), 'sparse' (most viewers with 2-8 ratings)."
        ),
    )
    parser.add_argument(
        "--out",
        type=Path,
        required=True,
        help="output directory (use a temporary one, not the repository)",
    )
    parser.add_argument("--scenario", choices=[*SCENARIOS, "all"], default="all")
    parser.add_argument("--seed", type=int, default=13, help="same seed, same bytes")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    names = list(SCENARIOS) if args.scenario == "all" else [args.scenario]
    for folder in generate(args.out, names, args.seed):
        lines = sum(1 for _ in (folder / "ratings.csv").open()) - 1
        print(f"{folder}: {lines} ratings")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
