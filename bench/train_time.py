"""bench/train_time: how long training takes, tuning included, on a MovieLens folder.

Two measurements, each repeated (the box is shared: the minimum is the machine's
speed, the median what a run met; the load average is printed beside them):
- `store`: what `cinemate train` does after reading the store: `model.tuning.train_tuned`
  on every rating as an interaction in stream (time) order: holdout split, search,
  final fit on everything;
- `protocol`: the service row of `cinemate evaluate`: the search on the validation split
  of TRAIN, then the fit on TRAIN (its `train_seconds`).

    python -m bench.train_time [--data ../shared/data/ml-latest-small] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from model.interactions import Interaction
from model.movielens import load_ratings
from model.protocol import load_variant, protocol_split, validation_split
from model.service_ranker import ServiceRanker, validation_of
from model.tuning import describe, train_tuned, tune

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "ml-latest-small"


def store_run(data: Path) -> Callable[[], str]:
    ratings = load_ratings(data)
    order = np.lexsort((ratings.items, ratings.users, ratings.timestamps))
    records = [
        Interaction(str(u), str(m), "rating", float(r), float(t))
        for u, m, r, t in zip(
            ratings.users[order].tolist(),
            ratings.items[order].tolist(),
            ratings.ratings[order].tolist(),
            ratings.timestamps[order].tolist(),
            strict=True,
        )
    ]

    def run() -> str:
        tuned = train_tuned(records)
        return describe(tuned.params)

    return run


def protocol_run(data: Path) -> Callable[[], str]:
    split = protocol_split(load_variant(data, "all"))

    def run() -> str:
        params, _ = tune(validation_of(validation_split(split)))
        ServiceRanker(params).fit(split.train)
        return describe(params)

    return run


def measure(run: Callable[[], str], repeat: int) -> dict[str, object]:
    walls, cpus, chosen = [], [], ""
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        chosen = run()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return {
        "wall_min": round(min(walls), 2),
        "wall_median": round(statistics.median(walls), 2),
        "cpu_median": round(statistics.median(cpus), 2),
        "load_average": round(os.getloadavg()[0], 2),
        "chosen": chosen,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.train_time", description=__doc__)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    for name, make in (("store", store_run), ("protocol", protocol_run)):
        print(json.dumps({"run": name, **measure(make(args.data), args.repeat)}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
