"""bench/synthetic_movielens writes what it promises: seeded, MovieLens-format, ordered."""

from __future__ import annotations

import csv
import itertools
import re
from pathlib import Path

import numpy as np
import pytest

from bench.synthetic_movielens import generate, main
from model.movielens import load_movies, load_ratings

PART = re.compile(r"^Saga (\d+) Part (\d+) ")


def test_same_seed_same_bytes_and_readable(tmp_path: Path) -> None:
    first = generate(tmp_path / "a", ["series"], seed=3)[0]
    second = generate(tmp_path / "b", ["series"], seed=3)[0]
    other = generate(tmp_path / "c", ["series"], seed=4)[0]
    for name in ("movies.csv", "ratings.csv"):
        assert (first / name).read_bytes() == (second / name).read_bytes()
    assert (first / "ratings.csv").read_bytes() != (other / "ratings.csv").read_bytes()
    ratings = load_ratings(first)
    movies = {m.movie_id for m in load_movies(first)}
    assert set(ratings.items.tolist()) <= movies
    assert ratings.ratings.min() >= 0.5 and ratings.ratings.max() <= 5.0


def test_series_viewers_watch_the_next_part_next(tmp_path: Path) -> None:
    folder = generate(tmp_path, ["series"], seed=13)[0]
    parts: dict[str, tuple[int, int]] = {}
    with (folder / "movies.csv").open(newline="") as handle:
        for row in csv.DictReader(handle):
            if match := PART.match(row["title"]):
                parts[row["movieId"]] = (int(match[1]), int(match[2]))
    with (folder / "ratings.csv").open(newline="") as handle:
        rows = [(r["userId"], int(r["timestamp"]), r["movieId"]) for r in csv.DictReader(handle)]
    rows.sort()
    pairs = next_part = 0
    for (user, _, a), (other, _, b) in itertools.pairwise(rows):
        if user == other and a in parts:
            pairs += 1
            next_part += parts.get(b) == (parts[a][0], parts[a][1] + 1)
    assert next_part > 0.5 * pairs


def test_sparse_scenario_from_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--out", str(tmp_path), "--scenario", "sparse", "--seed", "1"]) == 0
    assert "sparse: " in capsys.readouterr().out
    users = load_ratings(tmp_path / "sparse").users
    _, counts = np.unique(users, return_counts=True)
    assert (counts <= 8).mean() > 0.8  # most viewers are very sparse
