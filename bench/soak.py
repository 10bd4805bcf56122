"""bench/soak: the service's memory through a long run of mixed ingest and recommend load.

Imports ml-latest-small into a fresh data dir, trains, starts `cinemate serve` (the default
layout), then drives it with vegeta (open loop) at a steady total rate for `--minutes`,
in 30 s rounds; after each round it prints the round's answers and the resident memory
(RSS) of the service's processes: `cinemate serve` and its children (the projection
worker), and apart from them the embedded PostgreSQL and Redis (their PSS). Target (SPEC, issue 12):
the service's processes stay below 1 GB and level off.

The mix, per request (seeded): recommend for a known user with a random limit and one
excluded movie (40%), for a soak user who is posting events (10%), with the largest
exclude list the API takes (100 ids of 64 characters, 3%); single watch (30%), rating (10%),
feedback (2%) events, for the 610 known users and 100,000 new ones, so the per-user caches
fill to their bounds; similar (3%) and popular (2%).

    python -m bench.soak [--minutes 10] [--rate 1000] [--every 30]
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import shutil
import string
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from bench.ingest import ROOT, stop
from bench.recommend import read_catalog, trained_service, tree_rss, vegeta_path

NEW_USERS = 100_000


def _post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    return {
        "method": "POST",
        "url": url,
        "body": base64.b64encode(json.dumps(body).encode()).decode(),
        "header": {"Content-Type": ["application/json"]},
    }


def mixed_targets(
    base: str, count: int, users: list[str], movies: list[str], genres: list[str], seed: int
) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    long_ids = ",".join(
        "".join(rng.choice(string.ascii_letters) for _ in range(64)) for _ in range(100)
    )
    out: list[dict[str, Any]] = []
    for _ in range(count):
        roll = rng.random()
        limit = rng.randint(5, 40)
        movie = rng.choice(movies)
        known = rng.choice(users)
        soaker = f"soak{rng.randrange(NEW_USERS)}"
        someone = known if rng.random() < 0.3 else soaker
        if roll < 0.40:
            url = f"{base}/api/v1/recommend/{known}?limit={limit}&exclude={movie}"
            out.append({"method": "GET", "url": url})
        elif roll < 0.50:
            url = f"{base}/api/v1/recommend/{soaker}?limit={limit}&exclude={movie}"
            out.append({"method": "GET", "url": url})
        elif roll < 0.53:
            url = f"{base}/api/v1/recommend/{known}?limit={limit}&exclude={long_ids}"
            out.append({"method": "GET", "url": url})
        elif roll < 0.83:
            body = {"user_id": someone, "movie_id": movie, "progress": round(rng.random(), 3)}
            out.append(_post(f"{base}/api/v1/events/watch", body))
        elif roll < 0.93:
            body = {"user_id": someone, "movie_id": movie, "rating": rng.randint(1, 10) / 2}
            out.append(_post(f"{base}/api/v1/events/rating", body))
        elif roll < 0.95:
            body = {
                "user_id": someone,
                "movie_id": movie,
                "recommendation_id": f"r{rng.randrange(10**9)}",
                "action": rng.choice(["click", "like", "dismiss"]),
            }
            out.append(_post(f"{base}/api/v1/feedback", body))
        elif roll < 0.98:
            out.append({"method": "GET", "url": f"{base}/api/v1/movies/{movie}/similar"})
        else:
            genre = f"&genre={rng.choice(genres)}" if rng.random() < 0.5 else ""
            out.append({"method": "GET", "url": f"{base}/api/v1/popular?limit={limit}{genre}"})
    return out


def stores_pss(work: Path) -> dict[str, int]:
    """Proportional set size (shared pages split among their sharers) of the embedded
    PostgreSQL and Redis processes of this data dir: PostgreSQL's backends all map its
    shared buffers, so a sum of their RSS would count those once per backend."""
    found = {"postgres": 0, "redis": 0}
    for proc in psutil.process_iter(["cmdline", "cwd", "name"]):
        try:
            text = " ".join(proc.info["cmdline"] or []) + " " + (proc.info["cwd"] or "")
            if str(work) not in text:
                continue
            name = proc.info["name"] or ""
            for kind in found:
                if kind in name:
                    found[kind] += proc.memory_full_info().pss
        except (psutil.Error, TypeError):
            continue
    return found


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/ml-latest-small")
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--rate", type=float, default=1000, help="requests/s, all kinds")
    parser.add_argument("--every", type=float, default=30, help="seconds per round")
    parser.add_argument("--seed", type=int, default=12)
    args = parser.parse_args()
    vegeta = vegeta_path()
    work = Path(tempfile.mkdtemp(prefix="cinemate-soak-"))
    users, movies, genres = read_catalog(args.data)
    service, port = trained_service(args.data, work)
    base = f"http://127.0.0.1:{port}"
    targets = work / "mixed.targets"
    lines = mixed_targets(base, int(args.rate * 60), users, movies, genres, args.seed)
    targets.write_text("".join(json.dumps(t) + "\n" for t in lines))
    rounds = max(1, round(args.minutes * 60 / args.every))
    print(
        f"vegeta, open loop, {args.rate:,.0f} mixed requests/s for {args.minutes:g} min; "
        f"RSS every {args.every:g} s",
        flush=True,
    )
    print(
        f"{'t':>6} {'answers':>8} {'non-2xx':>8} {'p50':>8} {'p99':>8}   "
        f"{'serve+worker RSS':>16} {'largest':>8} {'postgres PSS':>12} {'redis PSS':>9}",
        flush=True,
    )
    began = time.monotonic()
    peak = 0
    try:
        for n in range(rounds):
            results = work / f"round{n}.bin"
            subprocess.run(
                [
                    vegeta,
                    "attack",
                    "-format=json",
                    f"-targets={targets}",
                    f"-rate={args.rate:.0f}/1s",
                    f"-duration={args.every}s",
                    "-timeout=5s",
                    f"-output={results}",
                ],
                check=True,
            )
            report = json.loads(
                subprocess.run(
                    [vegeta, "report", "-type=json", str(results)],
                    check=True,
                    capture_output=True,
                    text=True,
                ).stdout
            )
            results.unlink()
            codes: dict[str, int] = report.get("status_codes") or {}
            # 422: the soak's 100-id excludes of 64 characters are valid, so none expected.
            bad = sum(c for code, c in codes.items() if not code.startswith("2"))
            service_rss = tree_rss(service.pid)
            total = sum(service_rss.values())
            peak = max(peak, total)
            stores = stores_pss(work)
            lat = report["latencies"]
            print(
                f"{time.monotonic() - began:>5.0f}s {report['requests']:>8,} {bad:>8,} "
                f"{lat['50th'] / 1e6:>6.1f}ms {lat['99th'] / 1e6:>6.1f}ms   "
                f"{total / 2**20:>13,.0f} MB {max(service_rss.values()) / 2**20:>5,.0f} MB "
                f"{stores['postgres'] / 2**20:>9,.0f} MB {stores['redis'] / 2**20:>6,.0f} MB",
                flush=True,
            )
            if bad and codes:
                print(f"       status codes: {codes}", flush=True)
    finally:
        stop(service)
    verdict = "below" if peak < 2**30 else "ABOVE"
    print(f"peak RSS of serve and its children: {peak / 2**20:,.0f} MB ({verdict} the 1 GB target)")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
