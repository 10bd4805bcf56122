"""Offline evaluation `ml-small-temporal-u20-v1` (see EVAL.md): one row per model.

Usage: python -m model.evaluation --data DIR [--variant all|pos35] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from model.baselines import EaseRanker, PopularityRanker
from model.metrics import evaluate_rankings
from model.movielens import Ratings
from model.params import Params
from model.protocol import (
    CUTOFF,
    PROTOCOL,
    VARIANTS,
    load_variant,
    protocol_split,
    validation_split,
)
from model.service_ranker import ServiceRanker, validation_of
from model.tuning import Space, describe, tune

Log = Callable[[str], None]
COLUMNS = ("ndcg", "recall", "precision", "hit_rate", "mrr", "coverage", "train_seconds")


class Ranker(Protocol):
    name: str

    def fit(self, train: Ratings) -> None: ...

    def recommend(self, users: Sequence[int], k: int) -> dict[int, list[int]]: ...


def stderr_log() -> Log:
    started = time.perf_counter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f}s] {message}", file=sys.stderr, flush=True)

    return log


def run_evaluation(
    data_dir: Path,
    variant: str = "all",
    *,
    space: Space | None = None,
    base: Params | None = None,
    log: Log | None = None,
) -> list[dict[str, Any]]:
    """Run the protocol and return one row per model (popularity, ease, service).

    The service row's train_seconds include its tuning on the validation split: that is
    what it costs to train this model on a new data set.
    """
    say = log or stderr_log()
    say(f"{PROTOCOL} variant={variant}: loading {data_dir}")
    ratings = load_variant(Path(data_dir), variant)
    split = protocol_split(ratings)
    say(
        f"{len(ratings)} interactions, TRAIN {len(split.train)}, "
        f"{len(split.candidates)} candidates, {len(split.truth)} test users"
    )
    say("tuning the service model on the validation split")
    started = time.perf_counter()
    params, trials = tune(validation_of(validation_split(split)), base, space, say)
    tune_seconds = time.perf_counter() - started
    best = max(trial.ndcg for trial in trials) if trials else float("nan")
    say(
        f"chosen {describe(params)} (val NDCG@10 {best:.4f}, {len(trials)} trials, "
        f"{tune_seconds:.2f}s)"
    )
    rankers: list[Ranker] = [PopularityRanker(), EaseRanker(l2=200.0), ServiceRanker(params)]
    extra = {"service": tune_seconds}
    users = sorted(split.truth)
    rows: list[dict[str, Any]] = []
    for ranker in rankers:
        say(f"fitting {ranker.name} on TRAIN")
        started = time.perf_counter()
        ranker.fit(split.train)
        seconds = time.perf_counter() - started + extra.get(ranker.name, 0.0)
        say(f"scoring {ranker.name} on TEST ({seconds:.2f}s to train)")
        report = evaluate_rankings(
            ranker.recommend(users, CUTOFF), split.truth, len(split.candidates), CUTOFF
        )
        rows.append(
            {
                "model": ranker.name,
                "ndcg": report.ndcg,
                "recall": report.recall,
                "precision": report.precision,
                "hit_rate": report.hit_rate,
                "mrr": report.mrr,
                "coverage": report.coverage,
                "train_seconds": seconds,
            }
        )
    return rows


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """A Markdown table, metrics at 10 with four decimals."""
    header = [
        "model",
        "NDCG@10",
        "Recall@10",
        "Precision@10",
        "HR@10",
        "MRR@10",
        "Cov@10",
        "train s",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [str(row["model"])]
        cells += [f"{float(row[c]):.4f}" for c in COLUMNS[:-1]]
        cells.append(f"{float(row['train_seconds']):.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m model.evaluation",
        description=(
            f"Offline evaluation protocol {PROTOCOL}: per-user temporal split (last 20% "
            "of each user's interactions are TEST), metrics at 10 for popularity, EASE "
            "(lambda=200) and the service's model, whose hyper-parameters are chosen on "
            "a validation split of TRAIN (its train seconds include that tuning)."
        ),
    )
    parser.add_argument(
        "--data",
        type=Path,
        required=True,
        help="MovieLens-format folder with ratings.csv (userId,movieId,rating,timestamp)",
    )
    parser.add_argument(
        "--variant",
        choices=VARIANTS,
        default="all",
        help="'all': every rating is an interaction; 'pos35': only ratings >= 3.5",
    )
    parser.add_argument("--json", type=Path, help="also write the rows as a JSON list here")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    rows = run_evaluation(args.data, args.variant)
    print(format_table(rows))
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
