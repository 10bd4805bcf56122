"""bench/recommend: read latency at a steady 1,000 requests/s from an open-loop generator.

Imports a MovieLens-format folder (default: ../shared/data/ml-latest-small) into a fresh
data dir, trains from the store, starts `cinemate serve` (the default layout), waits for
the projections to catch up, then drives the server with vegeta (Go, open loop: a request
is sent when it is due, whether or not earlier ones have been answered, so a stalled
server shows its queueing delay). One run, one server, one phase after the other:

- baseline: GET /api/v1/health/live;
- recommend: GET /api/v1/recommend/{user} over the imported users, each request with a
  random `limit` (5-40) and a random catalog movie in `exclude`, so no answer cache can
  serve it (every answer is a fresh ranking);
- moving: the same while `--event-rate` (200) watch events/s arrive for the same users,
  so a share of the requests (~1 in 5) find a state they have not scored before;
- similar: GET /api/v1/movies/{movie}/similar, random catalog movie and limit;
- popular: GET /api/v1/popular, random limit, a random genre in half of the requests.

`--experiment` runs every phase with a 50/50 A/B experiment (PUT /api/v1/admin/experiment)
between the trained model and a variant of it read with other parameters
(`variant_model`): each recommend request then also picks its user's variant.

Targets (SPEC, Performance): recommend p99 <= 10 ms, similar and popular p99 <= 5 ms,
all at 1,000 req/s with 0 errors. `--items N` benches a generated catalog of N movies
instead (bench/synthetic_movielens.py's `tastes` viewers) with a model over all of them
(see `large_model`: `cinemate train` caps its vocabulary at 4,000 items).

    python -m bench.recommend [--data DIR | --items 20000] [--rate 1000] [--seconds 15]
                              [--experiment]

vegeta: `go install github.com/tsenart/vegeta/v12@v12.13.0` (found in PATH or ~/go/bin).
"""

from __future__ import annotations

import argparse
import base64
import csv
import json
import os
import random
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

VEGETA_INSTALL = "go install github.com/tsenart/vegeta/v12@v12.13.0"
TIMEOUT = "5s"
ADMIN_TOKEN = "bench-admin-token"


def vegeta_path() -> str:
    """vegeta from PATH or Go's default install dir; else how to get it."""
    found = shutil.which("vegeta")
    if found:
        return found
    home = Path(os.environ.get("GOPATH", Path.home() / "go")) / "bin" / "vegeta"
    if home.exists():
        return str(home)
    raise SystemExit(
        f"vegeta not found in PATH or {home.parent}: install it with `{VEGETA_INSTALL}` "
        "(needs Go >= 1.22), then run this again"
    )


def watch_bodies(count: int, users: list[str], movies: list[str], seed: int) -> list[str]:
    """Single watch event bodies (JSON) for random known users and movies."""
    rng = random.Random(seed)
    return [
        json.dumps({"user_id": rng.choice(users), "movie_id": rng.choice(movies), "progress": 0.5})
        for _ in range(count)
    ]


def event_targets(base: str, count: int, users: list[str], movies: list[str], seed: int) -> str:
    """JSON vegeta targets: `watch_bodies` POSTed to the watch endpoint."""
    lines = [
        json.dumps(
            {
                "method": "POST",
                "url": f"{base}/api/v1/events/watch",
                "body": base64.b64encode(body.encode()).decode(),
                "header": {"Content-Type": ["application/json"]},
            }
        )
        for body in watch_bodies(count, users, movies, seed)
    ]
    return "\n".join(lines) + "\n"


def attack(
    vegeta: str,
    work: Path,
    name: str,
    urls: list[str],
    rate: float,
    seconds: float,
    beside: tuple[str, float] | None = None,
) -> dict[str, Any]:
    """One open-loop vegeta run over `urls` (in order, cycling), vegeta's JSON report.
    `beside`: (JSON targets, rate) of a second vegeta run at the same time (not reported)."""
    targets = work / f"{name}.targets"
    targets.write_text("".join(json.dumps({"method": "GET", "url": u}) + "\n" for u in urls))
    results = work / f"{name}.bin"
    background = None
    if beside is not None:
        lines, beside_rate = beside
        (work / f"{name}.beside").write_text(lines)
        background = subprocess.Popen(
            [
                vegeta,
                "attack",
                "-format=json",
                f"-targets={work / f'{name}.beside'}",
                f"-rate={beside_rate:.0f}/1s",
                f"-duration={seconds}s",
                f"-timeout={TIMEOUT}",
                f"-output={work / f'{name}.beside.bin'}",
            ]
        )
    subprocess.run(
        [
            vegeta,
            "attack",
            "-format=json",
            f"-targets={targets}",
            f"-rate={rate:.0f}/1s",
            f"-duration={seconds}s",
            f"-timeout={TIMEOUT}",
            f"-output={results}",
        ],
        check=True,
    )
    if background is not None:
        background.wait()
    report = subprocess.run(
        [vegeta, "report", "-type=json", str(results)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    parsed: dict[str, Any] = json.loads(report)
    return parsed


def drained(base: str, timeout: float = 120) -> None:
    """Until the server answers /health/live at once again: a phase that overloaded it
    leaves a backlog (vegeta gave up on those requests, the server did not), which must
    not be charged to the next phase."""
    deadline = time.monotonic() + timeout
    quick = 0
    with httpx.Client(base_url=base, timeout=10) as http:
        while quick < 5 and time.monotonic() < deadline:
            began = time.perf_counter()
            try:
                http.get("/api/v1/health/live")
            except httpx.HTTPError:  # still swamped
                quick = 0
                continue
            quick = quick + 1 if time.perf_counter() - began < 0.01 else 0
            time.sleep(0.2)


def caught_up(port: int, timeout: float = 300, poll: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        report = httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=5).json()
        lags = [
            p["lag_events"] for p in report["components"]["projections"]["detail"]["projections"]
        ]
        if lags and all(lag == 0 for lag in lags):
            return
        time.sleep(poll)
    raise SystemExit("projections did not catch up")


def read_catalog(data: Path) -> tuple[list[str], list[str], list[str]]:
    """(user ids, movie ids, genres) of a MovieLens-format folder."""
    with open(data / "ratings.csv", newline="") as handle:
        users = sorted({row["userId"] for row in csv.DictReader(handle)}, key=int)
    with open(data / "movies.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    movies = [row["movieId"] for row in rows]
    genres = sorted({g for row in rows for g in row["genres"].split("|")} - {""})
    genres = [g for g in genres if g != "(no genres listed)"]
    return users, movies, genres


def target_urls(
    base: str,
    kind: str,
    count: int,
    users: list[str],
    movies: list[str],
    genres: list[str],
    seed: int,
) -> list[str]:
    """`count` seeded random requests of one kind (see the module docstring)."""
    rng = random.Random(seed)
    urls = []
    for _ in range(count):
        limit = rng.randint(5, 40)
        if kind == "live":
            urls.append(f"{base}/api/v1/health/live")
        elif kind in ("recommend", "moving"):
            urls.append(
                f"{base}/api/v1/recommend/{rng.choice(users)}?limit={limit}"
                f"&exclude={rng.choice(movies)}"
            )
        elif kind == "everyone":  # each user once, in turn
            urls.append(
                f"{base}/api/v1/recommend/{users[len(urls) % len(users)]}?limit={limit}"
                f"&exclude={rng.choice(movies)}"
            )
        elif kind == "similar":
            urls.append(f"{base}/api/v1/movies/{rng.choice(movies)}/similar?limit={limit}")
        elif kind == "popular":
            genre = f"&genre={rng.choice(genres)}" if rng.random() < 0.5 else ""
            urls.append(f"{base}/api/v1/popular?limit={limit}{genre}")
        else:
            raise ValueError(kind)
    return urls


def summary(report: dict[str, Any]) -> dict[str, float]:
    latencies = report["latencies"]
    codes: dict[str, int] = report.get("status_codes") or {}
    bad = sum(n for code, n in codes.items() if not code.startswith("2"))
    return {
        "requests": report["requests"],
        "rate": report["rate"],
        "p50_ms": latencies["50th"] / 1e6,
        "p99_ms": latencies["99th"] / 1e6,
        "max_ms": latencies["max"] / 1e6,
        "errors": bad,
    }


def settle(pgdata: Path) -> None:
    """What an operator does after a bulk import, before measuring: VACUUM ANALYZE and a
    CHECKPOINT in the embedded PostgreSQL, so that the runs do not share the machine
    with the import's aftermath (autovacuum of 100,000 new rows, the checkpoint writing
    them, hint bits set by the first reads)."""
    import asyncio

    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(host=str(pgdata), user="postgres", database="postgres")
        try:
            await conn.execute("VACUUM ANALYZE")
            await conn.execute("CHECKPOINT")
        finally:
            await conn.close()

    asyncio.run(run())


def trained_service(
    data: Path, work: Path, every_item: bool = False, variant: bool = False
) -> tuple[subprocess.Popen[bytes], int]:
    """`cinemate import` + `cinemate train` into a fresh data dir under `work` (or, with
    `every_item`, `large_model` instead of training), with `variant` also a
    `variant_model` of it, then `cinemate serve` on it (the default layout, ADMIN_TOKEN
    set), ready and caught up. (process, port)"""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "REDIS_URL", "KAFKA_BOOTSTRAP_SERVERS", "MODEL_PATH")
    }
    env.update(CINEMATE_DATA_DIR=str(work / "data"), LOG_LEVEL="WARNING", ADMIN_TOKEN=ADMIN_TOKEN)
    cli = [sys.executable, "-m", "cinemate.cli"]
    for step in (["import", "--movielens", str(data)], [] if every_item else ["train"]):
        if not step:
            began = time.monotonic()
            path = large_model(data, work / "data" / "models")
            print(f"model over every movie: {time.monotonic() - began:.0f} s; {path.name}")
            continue
        began = time.monotonic()
        done = subprocess.run([*cli, *step], env=env, cwd=ROOT, capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(done.stderr[-2000:])
        last = done.stdout.strip().splitlines()[-1]
        print(f"{' '.join(step[:2])}: {time.monotonic() - began:.0f} s; {last}", flush=True)
    if variant:
        made = variant_model(work / "data" / "models")
        print(f"experiment variant: {made.name}", flush=True)
    port = free_port()
    service = start([*cli, "serve", "--port", str(port)], env, work / "serve.log")
    try:
        wait_ready(
            f"http://127.0.0.1:{port}/api/v1/health/ready", timeout=600
        )  # a large model loads slowly
        wait_projecting(port)
        caught_up(port)
        began = time.monotonic()
        settle(work / "data" / "postgres")
        print(f"settled (VACUUM ANALYZE, CHECKPOINT): {time.monotonic() - began:.0f} s", flush=True)
    except BaseException:
        stop(service)
        raise
    return service, port


def prepare(args: argparse.Namespace, work: Path) -> Path:
    """The data folder to import: --data, or a generated catalog of --items movies
    (bench/synthetic_movielens' `tastes` viewers over that many films)."""
    if not args.items:
        data: Path = args.data
        return data
    import numpy as np

    from bench import synthetic_movielens as synthetic

    rng = np.random.default_rng(args.seed)
    catalog, log = synthetic.generate_tastes(rng, n_users=args.users, n_movies=args.items)
    out = work / "synthetic"
    synthetic.write_folder(out, catalog, log, rng)
    return out


def large_model(data: Path, models: Path) -> Path:
    """A model over every movie of `data`, written where `cinemate serve` looks.

    `cinemate train` caps its vocabulary (Params.max_items, 4,000: EASE inverts an
    items x items matrix, O(n^3)); serving cost depends only on the model's shape, so
    this one is one item x item block of normalised co-occurrences (cosine), as dense as
    a trained EASE block and read with the default history weights."""
    import numpy as np
    import scipy.sparse as sp

    from model.artifacts import save_model
    from model.params import Params
    from model.recommender import TrainedModel

    with open(data / "movies.csv", newline="") as handle:
        item_ids = [row["movieId"] for row in csv.DictReader(handle)]
    index = {m: i for i, m in enumerate(item_ids)}
    users: dict[str, int] = {}
    rows, cols = [], []
    with open(data / "ratings.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            rows.append(users.setdefault(row["userId"], len(users)))
            cols.append(index[row["movieId"]])
    n = len(item_ids)
    viewers = sp.csr_matrix(
        (np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(len(users), n)
    )
    matrix = (viewers.T @ viewers).toarray()
    counts = matrix.diagonal().copy()
    scale = 1.0 / np.sqrt(np.maximum(counts, 1.0))
    matrix *= scale[:, None]
    matrix *= scale[None, :]
    np.fill_diagonal(matrix, 0.0)
    params = Params(min_item_users=1, max_items=n, sequence_weight=0.0)
    version = f"cooccurrence-{n}"
    metadata = {
        "version": version,
        "algorithm": "seqease",
        "artifact_version": 2,
        "trained_at": "2026-01-01T00:00:00Z",
        "params": params.to_dict(),
        "data_position": None,
        "metrics": {},
        "n_items": n,
        "n_users": len(users),
        "n_interactions": len(rows),
        "format": "memory",
    }
    model = TrainedModel(item_ids, matrix, counts.astype(np.float32), params, metadata)
    return save_model(model, models / f"{version}.npz")


def variant_model(models: Path) -> Path:
    """A second model beside the newest artifact of `models`: the same matrix read with
    other history parameters (no recency decay, every movie +-1), as a variant of an A/B
    experiment. Its serving cost is the original's (same shape); its file is dated
    before the original, so the service still serves the original as its current model."""
    import dataclasses

    from model.artifacts import load_model, save_model
    from model.recommender import TrainedModel
    from query_side.model_serving import newest_artifact

    original = newest_artifact(models)
    assert original is not None, f"no artifact in {models}"
    model = load_model(original)
    params = dataclasses.replace(model.params, recency_tau=0.0, value_power=0.0)
    version = f"{model.metadata['version']}-variant"
    metadata = {**model.metadata, "version": version, "params": params.to_dict()}
    variant = TrainedModel(model.item_ids, model.matrix, model.popularity, params, metadata)
    path = save_model(variant, models / f"{version}{original.suffix}")
    older = original.stat().st_mtime - 60
    for file in (path, path.with_name(path.name + ".sha256"), path.with_name(path.name + ".json")):
        if file.exists():
            os.utime(file, (older, older))
    return path


def start_experiment(base: str, models: Path) -> dict[str, Any]:
    """A 50/50 experiment between the served model and its `variant_model`."""
    original = newest_artifact_name(models)
    variant = next(p.name for p in models.glob("*-variant.*") if p.suffix in (".npz", ".onnx"))
    answer = httpx.put(
        f"{base}/api/v1/admin/experiment",
        json={"variants": [{"model": original, "share": 0.5}, {"model": variant, "share": 0.5}]},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        timeout=60,
    )
    if answer.status_code != 200:
        raise SystemExit(f"experiment refused: {answer.status_code} {answer.text}")
    started: dict[str, Any] = answer.json()
    return started


def newest_artifact_name(models: Path) -> str:
    from query_side.model_serving import newest_artifact

    newest = newest_artifact(models)
    assert newest is not None
    return newest.name


def experiment_figures(base: str) -> str:
    answer = httpx.get(
        f"{base}/api/v1/admin/experiment",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        timeout=30,
    ).json()
    return "; ".join(
        f"{v['model_version']} {v['share']:.0%}: {v['users']:,} users, "
        f"{v['recommendations']:,} recommendations"
        for v in answer["variants"]
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/ml-latest-small")
    parser.add_argument(
        "--items",
        type=int,
        default=0,
        help="bench a generated catalog of this many movies (and a model over all of "
        "them) instead of --data",
    )
    parser.add_argument(
        "--users", type=int, default=3000, help="viewers of the generated catalog (--items)"
    )
    parser.add_argument("--rate", type=float, default=1000)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument(
        "--event-rate",
        type=float,
        default=200,
        help="watch events/s posted for the same users during the 'moving' phase",
    )
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument(
        "--experiment",
        action="store_true",
        help="run with a 50/50 A/B experiment between the trained model and a variant",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the work dir (data, logs, vegeta results)"
    )
    parser.add_argument(
        "--only",
        choices=["recommend", "moving", "similar", "popular"],
        action="append",
        help="run only these phases (besides the baseline); repeatable",
    )
    args = parser.parse_args()
    vegeta = vegeta_path()

    work = Path(tempfile.mkdtemp(prefix="cinemate-rec-"))
    data = prepare(args, work)
    users, movies, genres = read_catalog(data)
    service, port = trained_service(
        data, work, every_item=bool(args.items), variant=args.experiment
    )
    base = f"http://127.0.0.1:{port}"
    phases = ["live", *(args.only or ["recommend", "moving", "similar", "popular"])]
    count = int(args.rate * args.seconds)
    runs: dict[str, dict[str, float]] = {}
    busy: dict[str, dict[str, float]] = {}  # per phase: CPU % of one core, by role
    try:
        info = httpx.get(f"{base}/model/info", timeout=5).json()
        print(
            f"model {info['version']}: {info['items']:,} items; {len(users):,} users, "
            f"{len(movies):,} movies in the catalog",
            flush=True,
        )
        if args.experiment:
            started = start_experiment(base, work / "data" / "models")
            shown = ", ".join(v["model_version"] for v in started["variants"])
            print(f"experiment {started['id']}: 50/50 between {shown}", flush=True)
        for kind in phases:  # warm up: connections, prepared statements, caches of code
            if kind == "moving":
                continue  # the recommend phase warms it up
            urls = target_urls(base, kind, 400, users, movies, genres, args.seed + 1)
            seconds = 2.0
            if kind == "recommend":
                # Every user once: the phase then measures fresh rankings of states already
                # read (the "moving" phase measures states never read before).
                urls = target_urls(base, "everyone", len(users), users, movies, genres, 1)
                seconds = len(users) / 200
            drained(base)
            attack(vegeta, work, f"warm-{kind}", urls, 200, seconds)
        for kind in phases:
            seed = args.seed + 2 if kind == "moving" else args.seed
            urls = target_urls(base, kind, count, users, movies, genres, seed)
            drained(base)
            cpu = cpu_seconds(service.pid)
            shares = cpu_by_role(service.pid, work / "data" / "postgres")
            beside = None
            if kind == "moving":
                events = event_targets(base, count, users, movies, args.seed)
                beside = (events, args.event_rate)
            report = attack(vegeta, work, kind, urls, args.rate, args.seconds, beside)
            runs[kind] = summary(report)
            # The API process's own CPU per request (for "moving", per request of either
            # kind): unlike latency on a shared machine, it hardly depends on what else
            # runs there.
            answered = runs[kind]["requests"] + (args.event_rate * args.seconds if beside else 0)
            runs[kind]["cpu_us"] = (cpu_seconds(service.pid) - cpu) / answered * 1e6
            after = cpu_by_role(service.pid, work / "data" / "postgres")
            busy[kind] = {
                role: (after[role] - shares[role]) / (after["wall"] - shares["wall"]) * 100
                for role in ROLES
            }
        rss = service_rss_mb(service.pid)
        figures = experiment_figures(base) if args.experiment else ""
    finally:
        stop(service)
    names = {
        "live": "baseline: GET /api/v1/health/live",
        "recommend": "GET recommend (fresh ranking each)",
        "moving": f"  same, {args.event_rate:,.0f} events/s beside",
        "similar": "GET movies/{id}/similar",
        "popular": "GET popular",
    }
    targets = {"recommend": 10.0, "moving": 10.0, "similar": 5.0, "popular": 5.0}
    print(
        f"vegeta, open loop at {args.rate:,.0f}/s for {args.seconds:.0f} s each, timeout {TIMEOUT}"
    )
    print(
        f"{'':<36} {'rate':>7} {'p50':>9} {'p99':>9} {'max':>9} {'errors':>7} "
        f"{'API CPU/req':>11}  p99 / baseline"
    )
    live = runs["live"]
    for kind in phases:
        run = runs[kind]
        target = f"  (target p99 <= {targets[kind]:.0f} ms)" if kind in targets else ""
        print(
            f"{names[kind]:<36} {run['rate']:>7,.0f} {run['p50_ms']:>7.2f}ms "
            f"{run['p99_ms']:>7.2f}ms {run['max_ms']:>7.1f}ms {run['errors']:>7.0f} "
            f"{run['cpu_us']:>9.0f}us  "
            f"{run['p99_ms'] / live['p99_ms']:>6.1f} x{target}"
        )
    print(
        f"CPU during each phase, % of one core ({os.cpu_count()} cores): the machine, then "
        "serve, its projection worker, PostgreSQL, and the rest (vegeta, anything else)"
    )
    print(f"{'':<36} " + " ".join(f"{role:>8}" for role in (*ROLES, "rest")))
    for kind in phases:
        shares = busy[kind]
        rest = shares["machine"] - sum(shares[role] for role in ROLES[1:])
        print(
            f"{names[kind]:<36} "
            + " ".join(f"{shares[role]:>7.0f}%" for role in ROLES)
            + f" {rest:>7.0f}%"
        )
    print(f"service RSS after the run (serve and its children): {rss:,.0f} MB")
    if figures:
        print(f"experiment: {figures}")
    if args.keep:
        print(f"kept: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)


def tree_rss(pid: int) -> dict[int, int]:
    """Resident bytes of `pid` and each of its descendants (Linux /proc), by pid."""
    out: dict[int, int] = {}
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                out[current] = int(line.split()[1]) * 1024
        try:
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            children = []
        pending.extend(int(c) for c in children)
    return out


ROLES = ("machine", "serve", "worker", "postgres")


def cpu_by_role(service: int, pgdata: Path) -> dict[str, float]:
    """CPU seconds used so far by the whole machine (/proc/stat: every process of every
    user, all cores), by `cinemate serve` itself, by its children (the projection
    worker), by the embedded PostgreSQL (its postmaster and backends); and the monotonic
    clock ("wall"). A phase's difference shows whether a tail came with a busy machine,
    and whose work made it busy. Processes that end meanwhile are not counted."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    hz = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + fields[4]  # idle, iowait
    try:
        postmaster = int((pgdata / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        postmaster = 0
    children = [pid for pid in tree_rss(service) if pid != service]
    return {
        "wall": time.monotonic(),
        "machine": (sum(fields) - idle) / hz,
        "serve": cpu_seconds(service),
        "worker": sum(cpu_seconds(pid) for pid in children),
        "postgres": sum(cpu_seconds(pid) for pid in tree_rss(postmaster)) if postmaster else 0.0,
    }


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) one process has used so far (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def service_rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants, in MB."""
    return sum(tree_rss(pid).values()) / 2**20


if __name__ == "__main__":
    main()
