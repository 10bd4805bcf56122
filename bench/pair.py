"""bench/pair: two commits of the service measured at the same moment, side by side.

This machine's speed changes by up to 2x within minutes (other work on the host), so
two benchmark runs a minute apart can disagree by more than a change is worth. Here
both commits serve at once, each from its own git worktree on a fresh data dir, and two
wrk processes (or load generators, for batches) load them at the same time: whatever
the host does meanwhile hits both alike. What each event cost each part of each stack
(CPU from /proc, per process) is printed per round, and the catch-up of the projections
after the load.

    python -m bench.pair BEFORE AFTER [--rounds 3] [--seconds 15] [--connections 32]
                                      [--batch]

BEFORE and AFTER are anything `git rev-parse` takes (e.g. `HEAD~1 HEAD`). The
worktrees share this checkout's .venv; they are removed at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bench.ingest import (
    ROOT,
    CpuMeter,
    free_port,
    per_event,
    run_wrk,
    start,
    stop,
    wait_ready,
)
from bench.ingest import batch_load as ingest_batches
from bench.recommend import caught_up

PARTS = ("api", "worker", "postgres", "redis")


@dataclass
class Side:
    """One commit's serve: its worktree, data dir, port and process."""

    label: str
    tree: Path
    data: Path
    port: int
    process: subprocess.Popen[bytes] | None = None
    rows: list[dict[str, float]] = field(default_factory=list)

    @property
    def meter(self) -> CpuMeter:
        assert self.process is not None
        return CpuMeter(self.process.pid, self.data)


@contextmanager
def worktree(revision: str, into: Path) -> Iterator[Path]:
    """A detached worktree of `revision`, with this checkout's .venv and the /docs assets
    (which setup fetches, outside git)."""
    subprocess.run(
        ["git", "worktree", "add", "--quiet", "--detach", str(into), revision],
        cwd=ROOT,
        check=True,
    )
    try:
        (into / ".venv").symlink_to(ROOT / ".venv")
        static = ROOT / "cinemate" / "static"
        if static.is_dir() and not (into / "cinemate" / "static").exists():
            shutil.copytree(static, into / "cinemate" / "static")
        yield into
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(into)], cwd=ROOT, check=False)


def serve(side: Side, log: Path) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "REDIS_URL", "KAFKA_BOOTSTRAP_SERVERS", "PYTHONPATH")
    }
    # The worktree's packages first: the .venv's editable install points at this checkout.
    env.update(CINEMATE_DATA_DIR=str(side.data), LOG_LEVEL="WARNING", PYTHONPATH=str(side.tree))
    side.process = start(
        [sys.executable, "-m", "cinemate.cli", "serve", "--port", str(side.port)],
        env,
        log,
        cwd=side.tree,
    )


def at_once(sides: list[Side], load: Callable[[int], dict[str, float]]) -> list[dict[str, float]]:
    """`load(port)` on every side at the same time: their answers, and what each event
    cost each part of each stack, and how long each took to catch up after it."""
    meters = [side.meter for side in sides]
    before = [meter.read() for meter in meters]
    with ThreadPoolExecutor(len(sides)) as pool:
        answers = list(pool.map(load, [side.port for side in sides]))
        started = time.monotonic()

        def catch_up(port: int) -> float:
            caught_up(port, poll=0.05)
            return time.monotonic() - started

        behind = list(pool.map(catch_up, [side.port for side in sides]))
    rows = []
    for answer, first, late, meter in zip(answers, before, behind, meters, strict=True):
        events = answer["events"]
        cost = per_event(first, meter.read(), events)
        rows.append(
            {
                "rate": answer["rate"],
                "behind_s": late,
                **{f"{part}_us": cost[part] for part in PARTS},
                "stack_us": sum(cost[part] for part in PARTS),
            }
        )
    return rows


def single_load(connections: int, seconds: float) -> Callable[[int], dict[str, float]]:
    def load(port: int) -> dict[str, float]:
        result = run_wrk(port, "/api/v1/events/watch", connections, seconds)
        return {"rate": result["rps"], "events": result["rps"] * seconds}

    return load


def batch_load(connections: int, seconds: float) -> Callable[[int], dict[str, float]]:
    def load(port: int) -> dict[str, float]:
        result = ingest_batches(port, seconds, connections)
        return {"rate": result["rps"] * 1000, "events": result["rps"] * 1000 * seconds}

    return load


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--connections", type=int, default=32, help="per side (default 32)")
    parser.add_argument(
        "--batch", action="store_true", help="1,000-event batches from 2 connections per side"
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None and not args.batch:
        raise SystemExit("bench.pair needs wrk for single POSTs (apt-get install wrk)")
    load = (
        batch_load(2, args.seconds) if args.batch else single_load(args.connections, args.seconds)
    )
    work = Path(tempfile.mkdtemp(prefix="cinemate-pair-"))
    with (
        worktree(args.before, work / "before") as before,
        worktree(args.after, work / "after") as after,
    ):
        sides = [
            Side(f"{args.before} (before)", before, work / "data-before", free_port()),
            Side(f"{args.after} (after)", after, work / "data-after", free_port()),
        ]
        try:
            for side in sides:
                serve(side, work / f"{side.tree.name}.log")
            for side in sides:
                wait_ready(f"http://127.0.0.1:{side.port}/api/v1/health/ready")
            at_once(sides, single_load(args.connections, 2))  # warm both
            for round_ in range(1, args.rounds + 1):
                # Each round starts the other side's load first: what comes of being
                # first (or second) falls on both alike.
                order = sides if round_ % 2 else sides[::-1]
                for side, row in zip(order, at_once(order, load), strict=True):
                    side.rows.append(row)
                    print(
                        f"round {round_} {side.label:<24} {row['rate']:>9,.0f} events/s  "
                        f"stack {row['stack_us']:>5.0f} us/event  "
                        + "  ".join(f"{part} {row[f'{part}_us']:>4.0f}" for part in PARTS)
                        + f"  caught up {row['behind_s']:.1f} s after",
                        flush=True,
                    )
        finally:
            for side in sides:
                if side.process is not None:
                    stop(side.process)
    print("\nmean over rounds (us of CPU per event; lower is better)")
    for side in sides:
        means = {key: sum(r[key] for r in side.rows) / len(side.rows) for key in side.rows[0]}
        print(
            f"  {side.label:<24} {means['rate']:>9,.0f} events/s  stack {means['stack_us']:.0f}  "
            + "  ".join(f"{part} {means[f'{part}_us']:.0f}" for part in PARTS)
            + f"  caught up {means['behind_s']:.1f} s"
        )
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
