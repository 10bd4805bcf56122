"""The `cinemate` command."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import logging
import signal
import socket
import sys
import time
import warnings
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from cinemate import database, logs
from cinemate.embedded import EmbeddedServerError
from cinemate.infrastructure import Infrastructure
from cinemate.settings import Settings, SettingsError
from schema import topics

if TYPE_CHECKING:
    from cinemate.app import Services
    from cinemate.read_models import ReadModels

log = logging.getLogger("cinemate.cli")


def _listen(host: str, port: int) -> socket.socket:
    """Bind before starting anything, so a busy port is reported at once and clearly."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise SystemExit(
            f"cinemate: could not listen on {host}:{port}: {exc.strerror} "
            "(is another cinemate serving there? use --port)"
        ) from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


@asynccontextmanager
async def _running(
    settings: Settings,
    *,
    run_projections: bool | None,
    run_relay: bool | None = False,
    serving: bool = False,
) -> AsyncIterator[Services]:
    """The servers (embedded or configured) and the open services, closed on the way out."""
    from cinemate.app import open_services

    async with _servers(settings) as infra, AsyncExitStack() as stack:
        yield await open_services(
            settings,
            infra.database_url,
            infra.redis_url,
            stack,
            run_projections=run_projections,
            run_relay=run_relay,
            load_model=serving,
        )


@asynccontextmanager
async def _read_models(settings: Settings) -> AsyncIterator[ReadModels]:
    """The servers and the read models alone, for the commands that only project or
    relay: they import nothing of the web app or the model."""
    from cinemate.read_models import open_read_models

    async with _servers(settings) as infra, AsyncExitStack() as stack:
        yield await open_read_models(settings, infra.database_url, infra.redis_url, stack)


@asynccontextmanager
async def _servers(settings: Settings) -> AsyncIterator[Infrastructure]:
    """PostgreSQL and Redis: embedded ones started (or joined) and left on the way out."""
    infra = await asyncio.to_thread(Infrastructure.start, settings)
    try:
        yield infra
    finally:
        await asyncio.to_thread(infra.stop)


async def _serve(settings: Settings, host: str, port: int) -> None:
    from cinemate.app import build_app
    from cinemate.server import HttpLimits
    from cinemate.server import server as http_server
    from cinemate.supervisor import WorkerProcess

    sock = _listen(host, port)
    child = settings.enable_consumers and not settings.projections_in_process
    run_here = False if child else None
    async with _running(
        settings, run_projections=run_here, run_relay=run_here, serving=True
    ) as services:
        # Started once the embedded servers run, so the child shares them.
        worker = WorkerProcess(["--relay"] if settings.kafka_on else []) if child else None
        if worker is not None:
            worker.start()
        limits = HttpLimits(
            header_timeout=settings.http_header_timeout,
            request_timeout=settings.http_request_timeout,
            keepalive_timeout=settings.http_keepalive_timeout,
            max_connections=settings.http_max_connections,
        )
        server = http_server(build_app(services), host, port, limits)
        freeze_startup_heap()
        log.info("serving", extra={"host": host, "port": port, "projection_worker": child})
        try:
            await server.serve(sockets=[sock])
        finally:
            if worker is not None:
                await worker.stop()


def freeze_startup_heap() -> None:
    """Everything made so far (modules, classes, the catalog, the model) lives as long as
    the process: out of the collector's sight, a full collection no longer walks ~100k
    objects of numpy, scipy, pydantic and friends (a 30-90 ms pause of every request or
    batch in flight, several times a minute under load)."""
    gc.collect()
    gc.freeze()


async def _worker(settings: Settings, source: str | None, relay: bool = False) -> None:
    """Projections only (and the Kafka relay with `relay`), from the store or from Kafka,
    until SIGTERM/SIGINT."""
    if source == "kafka" and not settings.kafka_bootstrap_servers:
        raise SystemExit("cinemate: worker --source kafka needs KAFKA_BOOTSTRAP_SERVERS")
    if source is not None:
        settings = dataclasses.replace(settings, projection_source=source)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    from cinemate.read_models import start_projectors, start_relay

    async with _read_models(settings) as read_models:
        start_projectors(read_models)
        if relay:
            start_relay(read_models)
        freeze_startup_heap()
        log.info(
            "projecting",
            extra={
                "projections": list(read_models.projections),
                "source": settings.projection_source,
            },
        )
        await stop.wait()


async def _relay(settings: Settings) -> None:
    """Kafka publishing only, until SIGTERM/SIGINT."""
    if not settings.kafka_bootstrap_servers:
        raise SystemExit("cinemate: KAFKA_BOOTSTRAP_SERVERS is not set")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    from cinemate.read_models import start_relay

    async with _read_models(settings) as read_models:
        start_relay(read_models)
        log.info("relaying", extra={"brokers": settings.kafka_bootstrap_servers})
        await stop.wait()


async def _replay(settings: Settings, names: list[str]) -> None:
    from tqdm import tqdm

    from projections.rebuild import rebuild_all

    async with _read_models(settings) as read_models:
        unknown = sorted(set(names) - set(read_models.projections))
        if unknown:
            raise SystemExit(
                f"cinemate: unknown projection(s) {', '.join(unknown)}; "
                f"known: {', '.join(read_models.projections)}"
            )
        chosen = names or list(read_models.projections)
        # One pass over the store feeds every chosen projection.
        with tqdm(desc=f"replay {', '.join(chosen)}", unit="ev", unit_scale=True) as bar:

            def show(done: int, total: int) -> None:
                bar.total = total
                bar.update(done - bar.n)

            started = time.perf_counter()
            # This process does nothing else: the garbage collector's passes over every
            # state and record a replay holds (young ones included; rebuild_all postpones
            # only full ones, as it may run in a serving process) are pure cost here, and
            # a replay makes no cycles worth collecting before it exits.
            gc.disable()
            try:
                applied = await rebuild_all(
                    read_models.pool, [read_models.projections[n] for n in chosen], progress=show
                )
            finally:
                gc.enable()
        seconds = time.perf_counter() - started
        print(
            f"{', '.join(chosen)}: {applied} store events in {seconds:.2f} s "
            f"({applied / max(seconds, 1e-9):,.0f} events/s, each projection), swapped in"
        )


async def _import(settings: Settings, data_dir: Path) -> None:
    from tqdm import tqdm

    from cinemate.movielens import import_movielens

    for name in ("movies.csv", "ratings.csv"):
        if not (data_dir / name).is_file():
            raise SystemExit(f"cinemate: {data_dir / name} not found (a MovieLens-format folder)")
    async with _running(settings, run_projections=False) as services:
        with tqdm(desc="import ratings", unit="ev", unit_scale=True) as bar:
            counts = await import_movielens(services.pool, services.committer, data_dir, bar.update)
    print(
        f"imported {counts['movies']} movies; ratings: {counts['accepted']} stored, "
        f"{counts['duplicate']} already there (re-running an import is safe)"
    )


async def _demo(settings: Settings) -> None:
    from tqdm import tqdm

    from cinemate.demo import load_demo

    async with _running(settings, run_projections=False) as services:
        with tqdm(desc="demo events", unit="ev", unit_scale=True) as bar:
            counts = await load_demo(services.pool, services.committer, bar.update)
    print(
        f"demo catalog: {counts['movies']} movies; events: {counts['accepted']} stored, "
        f"{counts['duplicate']} already there"
    )
    await _train(settings, None)
    print("now: cinemate serve, then GET /api/v1/recommend/viewer1")


async def _train(settings: Settings, output: Path | None) -> None:
    from tqdm import tqdm

    from cinemate.movielens import read_interactions
    from model.artifacts import save_model
    from model.tuning import describe, train_tuned
    from query_side.model_serving import record_trained

    async with _running(settings, run_projections=False) as services:
        with tqdm(desc="read store", unit="ev", unit_scale=True) as bar:
            interactions, position = await read_interactions(services.pool, bar.update)
        if not interactions:
            raise SystemExit("cinemate: the store holds no interactions to train on")
        started = time.perf_counter()
        tuned = await asyncio.to_thread(train_tuned, interactions, data_position=position)
        seconds = time.perf_counter() - started
        model, metrics = tuned.model, tuned.model.metadata["metrics"]
        version = model.metadata["version"]
        target = output or settings.data_dir / "models" / f"{version}.npz"
        target.parent.mkdir(parents=True, exist_ok=True)
        saved = await asyncio.to_thread(save_model, model, target)
        # The service unpickles only artifacts whose digest was recorded (or pinned).
        async with services.pool.acquire() as conn:
            await record_trained(conn, saved, version)
    print(
        f"trained {version} on {len(interactions)} interactions (store position {position}) "
        f"in {seconds:.1f} s including tuning ({len(tuned.trials)} trials, "
        f"{tuned.tune_seconds:.1f} s): {model.n_items} items -> {saved}"
    )
    print(f"chosen: {describe(tuned.params)}")
    if metrics:
        shown = ", ".join(f"{k}={metrics[k]}" for k in ("ndcg", "recall", "hit_rate", "mrr"))
        print(f"offline, newest 20% per user held out: {shown}")


def _evaluate(data: Path, variant: str, json_path: Path | None) -> None:
    import json

    from model.evaluation import format_table, run_evaluation

    rows = run_evaluation(data, variant)
    print(format_table(rows))
    if json_path is not None:
        json_path.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")


async def _migrate(settings: Settings) -> None:
    infra = await asyncio.to_thread(Infrastructure.start, settings)
    try:
        pool = await database.create_pool(infra.database_url, min_size=1, max_size=1)
        try:
            async with pool.acquire() as conn:
                applied = await database.migrate(conn)
        finally:
            await pool.close()
        print(f"applied {len(applied)} migration(s): {', '.join(applied) or 'none needed'}")
    finally:
        await asyncio.to_thread(infra.stop)


def _run(coro_factory: object) -> None:
    import uvloop

    uvloop.run(coro_factory)  # type: ignore[arg-type]


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="cinemate",
        description=(
            "Event-sourced interaction store and recommendation service. Without "
            "DATABASE_URL / REDIS_URL it runs real PostgreSQL and Redis servers from "
            "CINEMATE_DATA_DIR (default ./.cinemate), shared by every cinemate command there."
        ),
    )
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = sub.add_parser(
        "serve",
        help="run the HTTP API, with the projections in a supervised worker process",
        description="Run the HTTP API until SIGTERM/SIGINT (then in-flight requests finish "
        "and embedded servers stop). Migrations are applied first. The projections (and, "
        "with KAFKA_BOOTSTRAP_SERVERS set, the relay to Kafka) run in a `cinemate worker` "
        "child process that serve starts, restarts if it dies and stops with itself "
        "(CINEMATE_PROJECTIONS_IN_PROCESS=true runs them on the API's own loop instead; "
        "ENABLE_CONSUMERS=false runs none: then run `cinemate worker` beside it). It serves "
        "MODEL_PATH, else the newest model in CINEMATE_DATA_DIR/models, and picks up a newer "
        "one written there (`cinemate train`, `demo`) within seconds. Once it runs: "
        "http://HOST:PORT/api/v1/health (health), /docs (API docs), /metrics.",
    )
    serve.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default %(default)s: this machine only; 0.0.0.0 for all)",
    )
    serve.add_argument(
        "--port", type=int, default=8000, help="TCP port to listen on (default %(default)s)"
    )
    sub.add_parser("migrate", help="apply database migrations and exit")
    worker = sub.add_parser(
        "worker",
        help="run the projections only (no HTTP), from the event store or Kafka",
        description="Run every projection until SIGTERM. With --source store (the default) "
        "it follows the event store; with --source kafka it joins the consumer group "
        f"cinemate-projections on {topics.INTERACTIONS}, sharing the partitions with the "
        f"other workers; unreadable or failing messages go to {topics.DEAD_LETTERS}. "
        "Any mix of workers is safe beside `cinemate serve`: each batch holds the "
        "projections' lock and skips events already applied.",
    )
    worker.add_argument(
        "--source",
        choices=["store", "kafka"],
        default=None,
        help="where to read events (default: CINEMATE_PROJECTION_SOURCE, else store)",
    )
    worker.add_argument(
        "--relay",
        action="store_true",
        help="also publish the store to Kafka (what `serve` asks of its own worker)",
    )
    replay = sub.add_parser(
        "replay",
        aliases=["rebuild"],
        help="rebuild read models by replaying the event store, then swap them in",
        description="Replay the whole event store into fresh copies of the read-model "
        "tables and swap them in atomically once caught up. A running service keeps "
        "answering meanwhile.",
    )
    sub.add_parser(
        "relay",
        help="publish the event store to Kafka (outbox relay) only",
        description="Publish every stored event, in store order, to the "
        f"{topics.INTERACTIONS} topic (feedback also to {topics.FEEDBACK}), advancing the "
        "checkpoint in PostgreSQL only after Kafka acknowledged. Needs KAFKA_BOOTSTRAP_SERVERS.",
    )
    importer = sub.add_parser(
        "import",
        help="load a MovieLens-format folder: catalog, then ratings as events",
        description="Load movies.csv into the catalog and ratings.csv as rating events "
        "through the batch command path. Event ids are derived from each row, so an "
        "interrupted import can simply be run again.",
    )
    importer.add_argument(
        "--movielens",
        type=Path,
        required=True,
        metavar="DIR",
        help="folder with movies.csv and ratings.csv",
    )
    sub.add_parser(
        "demo",
        help="load a generated catalog and viewers, then train: recommendations at once",
        description="Generate 300 movies and ~9,500 events (watches, ratings, favorites) of "
        "400 viewers with clear genre tastes, store them through the batch path "
        "(idempotent), and train a model into the data dir. Then `cinemate serve` "
        "recommends for viewer1..viewer400 (a running one picks the model up by itself).",
    )
    trainer = sub.add_parser(
        "train",
        help="train the recommender from the event store and write its artifact",
        description="Read every interaction from the event store, train, and write the "
        "model to CINEMATE_DATA_DIR/models (or --output; .npz, .pkl or .onnx by suffix). "
        "A running `cinemate serve` on the same data dir serves it within seconds by itself "
        "(unless MODEL_PATH pins another); POST /model/reload swaps at once.",
    )
    trainer.add_argument("--output", type=Path, help="artifact path (default: data dir)")
    evaluate = sub.add_parser(
        "evaluate",
        help="offline evaluation (EVAL.md): popularity, EASE and the service's model",
        description="Run the ml-small-temporal-u20-v1 protocol on a MovieLens-format "
        "folder and print one row per model.",
    )
    evaluate.add_argument(
        "--data",
        type=Path,
        required=True,
        metavar="DIR",
        help="MovieLens-format folder with ratings.csv and movies.csv (e.g. ml-latest-small)",
    )
    evaluate.add_argument(
        "--variant",
        choices=["all", "pos35"],
        default="all",
        help="which ratings count as interactions: all of them, or only those >= 3.5 "
        "(default %(default)s; EVAL.md)",
    )
    evaluate.add_argument("--json", type=Path, metavar="FILE", help="also write the rows here")
    replay.add_argument(
        "projections",
        nargs="*",
        metavar="PROJECTION",
        help="user_features, item_stats, audit, model_feedback (default: all)",
    )
    return top


def main(argv: Sequence[str] | None = None) -> None:
    args = parser().parse_args(argv)
    # pgserver asks platformdirs for a runtime dir, which warns on every start when
    # XDG_RUNTIME_DIR is unset (as for root); the fallback it takes is fine.
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        sys.exit(f"cinemate: configuration error: {exc}")
    logs.configure(settings.log_level)
    try:
        if args.command == "serve":
            _run(_serve(settings, args.host, args.port))
        elif args.command == "migrate":
            _run(_migrate(settings))
        elif args.command == "worker":
            _run(_worker(settings, args.source, args.relay))
        elif args.command in ("replay", "rebuild"):
            _run(_replay(settings, args.projections))
        elif args.command == "relay":
            _run(_relay(settings))
        elif args.command == "import":
            _run(_import(settings, args.movielens))
        elif args.command == "demo":
            _run(_demo(settings))
        elif args.command == "train":
            _run(_train(settings, args.output))
        elif args.command == "evaluate":
            _evaluate(args.data, args.variant, args.json)
    except EmbeddedServerError as exc:
        sys.exit(f"cinemate: {exc}")
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
