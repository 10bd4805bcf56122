"""bench/recommend: recommendation latency and throughput at a steady 1,000 requests/s.

Imports a MovieLens-format folder (default: ../shared/data/ml-latest-small) into a fresh
data dir, trains from the store, starts `cinemate serve`, waits for the projections to
catch up, then drives GET /api/v1/recommend/{user} at a fixed rate from a separate
process (open loop), over the imported users and as many unknown ones (cold start). The
baseline, in the same run and at the same rate, is GET /api/v1/health/live on the same
server.

    python -m bench.recommend [--data DIR] [--rate 1000] [--seconds 15]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.freshness import wait_projecting
from bench.ingest import ROOT, free_port, start, stop, wait_ready


def drive(port: int, path: str, rate: float, seconds: float, users: int) -> dict[str, Any]:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.loadgen",
            "--port",
            str(port),
            "--path",
            path,
            "--get-users",
            str(users),
            "--rate",
            str(rate),
            "--seconds",
            str(seconds),
            "--connections",
            "32",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout
    summary: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return summary


def caught_up(port: int, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        report = httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=5).json()
        lags = [
            p["lag_events"] for p in report["components"]["projections"]["detail"]["projections"]
        ]
        if lags and all(lag == 0 for lag in lags):
            return
        time.sleep(0.5)
    raise SystemExit("projections did not catch up")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/ml-latest-small")
    parser.add_argument("--rate", type=float, default=1000)
    parser.add_argument("--seconds", type=float, default=15)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="cinemate-rec-"))
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "REDIS_URL", "KAFKA_BOOTSTRAP_SERVERS", "MODEL_PATH")
    }
    env.update(CINEMATE_DATA_DIR=str(work / "data"), LOG_LEVEL="WARNING")
    cli = [sys.executable, "-m", "cinemate.cli"]
    for step in (["import", "--movielens", str(args.data)], ["train"]):
        done = subprocess.run([*cli, *step], env=env, cwd=ROOT, capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(done.stderr[-2000:])
        print(done.stdout.strip().splitlines()[-1])
    port = free_port()
    service = start([*cli, "serve", "--port", str(port)], env, work / "serve.log")
    try:
        wait_ready(f"http://127.0.0.1:{port}/api/v1/health/ready")
        wait_projecting(port)
        caught_up(port)
        users = 610
        drive(port, "/api/v1/recommend/{n}", 200, 2, users)  # warm up
        baseline = drive(port, "/api/v1/health/live?{n}", args.rate, args.seconds, users)
        known = drive(port, "/api/v1/recommend/{n}", args.rate, args.seconds, users)
        cold = drive(port, "/api/v1/recommend/new{n}", args.rate, args.seconds, users)
    finally:
        stop(service)
    print(
        f"{'GET at a steady ' + format(args.rate, ',.0f') + '/s':<36} {'rps':>7} "
        f"{'p50':>8} {'p99':>8}  non-2xx"
    )
    for name, run in (
        ("baseline: /api/v1/health/live", baseline),
        ("recommend, known users", known),
        ("recommend, unknown users (cold)", cold),
    ):
        bad = sum(n for s, n in run["statuses"].items() if not str(s).startswith("2"))
        print(
            f"{name:<36} {run['rps']:>7,.0f} {run['p50_ms']:>6.1f}ms {run['p99_ms']:>6.1f}ms  "
            f"{bad + run['errors']}"
        )
    print(
        f"p99 recommend / baseline: {known['p99_ms'] / baseline['p99_ms']:.1f} x "
        "(target: p99 <= 10 ms at 1,000 req/s)"
    )
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
