"""bench/freshness: how long from "POST accepted" until GET /features shows the event.

Starts `cinemate serve` (projections in its supervised worker process, as a user runs it) on
a fresh data dir.
Probes: each probe POSTs a watch for a new user and polls GET /api/v1/features/{user}
until the document appears; the time from the POST's answer to the first answer showing
it is the freshness. Measured twice in one run: idle (the baseline), then under a steady
background load of batched events from a separate process (bench/loadgen.py, open loop).

    python -m bench.freshness [--rate 5000] [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.ingest import ROOT, free_port, start, stop, wait_ready
from bench.machine import IoStall
from devtools.kafka_broker import KafkaBroker

BATCH = 50


async def probe(http: httpx.AsyncClient, user: str) -> float:
    body = {"user_id": user, "movie_id": "m1", "progress": 0.5}
    answer = await http.post("/api/v1/events/watch", json=body)
    answer.raise_for_status()
    accepted = time.perf_counter()
    while True:
        seen = await http.get(f"/api/v1/features/{user}")
        if seen.status_code == 200:
            return time.perf_counter() - accepted
        await asyncio.sleep(0.002)


async def probes(port: int, label: str, count: int, interval: float) -> list[float]:
    results: list[float] = []
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
        tasks = []
        for i in range(count):
            tasks.append(asyncio.create_task(probe(http, f"probe-{label}-{i}")))
            await asyncio.sleep(interval)
        results = list(await asyncio.gather(*tasks))
    return results


def wait_projecting(port: int, timeout: float = 60) -> None:
    """Until health shows every projection running (a worker takes a moment to start)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        report = httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=5).json()
        states = [p["state"] for p in report["components"]["projections"]["detail"]["projections"]]
        if states and all(state == "running" for state in states):
            return
        time.sleep(0.2)
    raise SystemExit("projections did not start")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=5000, help="background events/s")
    parser.add_argument("--seconds", type=float, default=20, help="length of the loaded phase")
    parser.add_argument("--probes", type=int, default=200)
    parser.add_argument(
        "--layout",
        choices=["serve", "worker", "kafka"],
        default="serve",
        help="projections as plain `cinemate serve` runs them (the default: in the worker "
        "process it supervises), or in a separate "
        "`cinemate worker` beside an API started with ENABLE_CONSUMERS=false, or "
        "through Kafka: the API's relay publishes, `cinemate worker --source kafka` "
        "consumes (a real broker is started for the run)",
    )
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="cinemate-fresh-"))
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "REDIS_URL", "KAFKA_BOOTSTRAP_SERVERS")
    }
    env.update(CINEMATE_DATA_DIR=str(work / "data"), LOG_LEVEL="WARNING")
    port = free_port()
    worker = None
    broker = None
    worker_command = [sys.executable, "-m", "cinemate.cli", "worker"]
    if args.layout in ("worker", "kafka"):
        env["ENABLE_CONSUMERS"] = "false"
    if args.layout == "kafka":
        broker = KafkaBroker(work / "kafka")
        env["KAFKA_BOOTSTRAP_SERVERS"] = broker.start()
        worker_command += ["--source", "kafka"]
    service = start(
        [sys.executable, "-m", "cinemate.cli", "serve", "--port", str(port)],
        env,
        work / "serve.log",
    )
    try:
        wait_ready(f"http://127.0.0.1:{port}/api/v1/health/ready")
        if args.layout in ("worker", "kafka"):
            worker = start(worker_command, env, work / "worker.log")
        interval = args.seconds * 0.8 / args.probes
        asyncio.run(probes(port, "warmup", 10, 0.05))  # first-use costs are not freshness
        idle = asyncio.run(probes(port, "idle", args.probes // 2, 0.02))
        load = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.loadgen",
                "--port",
                str(port),
                "--path",
                "/api/v1/events/batch",
                "--batch",
                str(BATCH),
                "--connections",
                "16",
                "--rate",
                str(args.rate / BATCH),
                "--seconds",
                str(args.seconds),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        time.sleep(args.seconds * 0.1)
        stalls = IoStall()
        loaded = asyncio.run(probes(port, "load", args.probes, interval))
        stalled = stalls.describe()
        out, _ = load.communicate(timeout=args.seconds + 60)
        background = json.loads(out.strip().splitlines()[-1])
    finally:
        if worker is not None:
            stop(worker)
        stop(service)
        if broker is not None:
            broker.stop()
    print(f"layout: projections {args.layout}")
    events_per_s = background["rps"] * BATCH
    print(
        f"background load: {events_per_s:,.0f} events/s in batches of {BATCH} "
        f"(non-2xx: {sum(n for s, n in background['statuses'].items() if s[0] != '2')}), "
        f"batch p99 {background['p99_ms']:.0f} ms"
    )
    print(f"{'freshness (accepted -> visible)':<34} {'p50':>8} {'p99':>8}  probes")
    print(
        f"{'idle (baseline)':<34} {pct(idle, 0.5):>6.0f}ms {pct(idle, 0.99):>6.0f}ms  {len(idle)}"
    )
    print(
        f"{f'under {events_per_s:,.0f} events/s':<34} {pct(loaded, 0.5):>6.0f}ms "
        f"{pct(loaded, 0.99):>6.0f}ms  {len(loaded)}"
    )
    print(
        f"p99 under load / idle: {pct(loaded, 0.99) / pct(idle, 0.99):.1f} x "
        f"(target: p99 <= 200 ms under 5,000 events/s)"
    )
    print(f"while probing under load: {stalled}")
    for log in ("serve.log", "worker.log"):
        warnings = (
            [
                line
                for line in (work / log).read_text().splitlines()
                if '"warning"' in line or '"error"' in line
            ]
            if (work / log).exists()
            else []
        )
        if warnings:
            print(f"{log}: {len(warnings)} warnings/errors, first: {warnings[0][:300]}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
