"""Reading MovieLens-format folders (ratings.csv, movies.csv)."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Ratings:
    """Column arrays of a ratings table; one row per rating."""

    users: np.ndarray  # int64
    items: np.ndarray  # int64 movieId
    ratings: np.ndarray  # float64
    timestamps: np.ndarray  # int64 seconds

    def __len__(self) -> int:
        return len(self.users)

    def subset(self, mask: np.ndarray) -> Ratings:
        return Ratings(
            self.users[mask], self.items[mask], self.ratings[mask], self.timestamps[mask]
        )


@dataclass(frozen=True)
class Movie:
    movie_id: int
    title: str
    genres: tuple[str, ...]


def load_ratings(data_dir: Path) -> Ratings:
    """Read ratings.csv (userId,movieId,rating,timestamp)."""
    path = Path(data_dir) / "ratings.csv"
    if not path.is_file():
        raise FileNotFoundError(f"no ratings.csv in {data_dir}")
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        expected = ["userId", "movieId", "rating", "timestamp"]
        if header is None or [h.strip() for h in header[:4]] != expected:
            raise ValueError(f"{path}: expected header {','.join(expected)}, got {header}")
        rows = [row for row in reader if row]
    table = np.asarray(rows, dtype=str).reshape(-1, len(header))
    return Ratings(
        users=table[:, 0].astype(np.int64),
        items=table[:, 1].astype(np.int64),
        ratings=table[:, 2].astype(np.float64),
        timestamps=table[:, 3].astype(np.float64).astype(np.int64),
    )


def load_movies(data_dir: Path) -> list[Movie]:
    """Read movies.csv (movieId,title,genres with '|' separated genres)."""
    path = Path(data_dir) / "movies.csv"
    movies: list[Movie] = []
    with path.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            genres = row.get("genres") or ""
            movies.append(
                Movie(
                    movie_id=int(row["movieId"]),
                    title=row.get("title") or "",
                    # MovieLens spells "no genre" as a pseudo-genre; an empty tuple says it.
                    genres=tuple(g for g in genres.split("|") if g and g != "(no genres listed)"),
                )
            )
    return movies
