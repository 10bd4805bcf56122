"""bench/ingest: durable single-event POSTs and batch ingest, against an echo baseline.

Starts `cinemate serve` on a fresh data dir (embedded PostgreSQL, fsync on), the same
HTTP stack answering a validated echo without a database, and that echo committing its
row to the same PostgreSQL before answering (bench/durable_echo.py: a commit per
request, then one writer grouping them), then loads each from a separate process: wrk
when it is installed (C, cheap on CPU), else bench/loadgen.py. Prints the spec's
figures and their ratios to those baselines, measured in this same run: the echo is
what the HTTP stack answers, the durable echoes what it acknowledges durably with
nothing of the service's work. The half-rate latency (open loop: oha when installed, else
vegeta, whose own CPU per request is 2-3x oha's on a machine the service shares) is
measured for the durable echoes too, at the service's half rate: the p99 this disk and
stack give without the service.
Batches (1,000 events a request, 4 connections) have a durable baseline too: the durable
echo committing each batch's rows in one INSERT, loaded the same way.
Beside each half-rate run it prints how busy the machine's cores were (the load
generator's included) and, for the service, its CPU per event there against at full
load: small groups and batches cost more per event, so half the rate can still fill a
small machine, and then the p99 is its queue.

    python -m bench.ingest [--seconds 10] [--connections 64] [--warm 2] [--history N]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psutil
from tqdm import tqdm

from bench.machine import HostBusy, IoStall
from cinemate.settings import Settings

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as answer:
                if answer.status in (200, 404, 405):
                    return
        except urllib.error.HTTPError as exc:
            if exc.code in (404, 405):
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"server at {url} did not come up")


def start(
    args: list[str], env: dict[str, str], log: Path, cwd: Path = ROOT
) -> subprocess.Popen[bytes]:
    handle = open(log, "wb")
    return subprocess.Popen(
        args, env=env, stdout=handle, stderr=subprocess.STDOUT, cwd=cwd, start_new_session=True
    )


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if match is None:
        raise SystemExit(f"cannot read wrk latency {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def run_wrk(port: int, path: str, connections: int, seconds: float) -> dict[str, float]:
    script = HERE / "post_events.lua"
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{int(seconds)}s",
            "--latency",
            "-s",
            str(script),
            f"http://127.0.0.1:{port}{path}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return {
        "rps": rps,
        "p50_ms": p50,
        "p99_ms": p99,
        "errors": float(non2xx.group(1)) if non2xx else 0.0,
    }


def run_loadgen(port: int, *extra: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.loadgen", "--port", str(port), *extra],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout
    summary = json.loads(out.strip().splitlines()[-1])
    bad = sum(n for status, n in summary["statuses"].items() if not str(status).startswith("2"))
    return {
        "rps": summary["rps"],
        "p50_ms": summary["p50_ms"],
        "p99_ms": summary["p99_ms"],
        "errors": float(bad + summary["errors"]),
    }


def _cpu(process: psutil.Process) -> float:
    try:
        times = process.cpu_times()
    except psutil.Error:  # gone meanwhile
        return 0.0
    return float(times.user + times.system)


class CpuMeter:
    """CPU seconds used by each part of the stack between two readings: the API process
    (`serve`), its children (the projection worker), the PostgreSQL and Redis servers
    under the data dir, and this script's children (the load generator). Divided by the
    events answered, that is what each event costs each part, which the machine's cores
    bound: unlike a rate, it hardly depends on what else runs on the machine."""

    def __init__(self, service_pid: int, data_dir: Path) -> None:
        self.service = psutil.Process(service_pid)
        self.data_dir = str(data_dir)

    def _servers(self) -> dict[str, list[psutil.Process]]:
        found: dict[str, list[psutil.Process]] = {"postgres": [], "redis": []}
        for process in psutil.process_iter(["cmdline", "name"]):
            command = " ".join(process.info["cmdline"] or [])
            name = process.info["name"] or ""
            if "postgres" in name and self.data_dir in command:
                found["postgres"] += [process, *process.children()]
            elif "redis" in name and self.data_dir in command:
                found["redis"].append(process)
        return found

    def read(self) -> dict[str, float]:
        children = self.service.children(recursive=True)
        servers = self._servers()
        load = resource.getrusage(resource.RUSAGE_CHILDREN)
        return {
            "api": _cpu(self.service),
            "worker": sum(_cpu(c) for c in children),
            "postgres": sum(_cpu(p) for p in servers["postgres"]),
            "redis": sum(_cpu(p) for p in servers["redis"]),
            "load generator": load.ru_utime + load.ru_stime,
        }


def per_event(before: dict[str, float], after: dict[str, float], events: float) -> dict[str, float]:
    """Microseconds of CPU per event, per part."""
    return {part: (after[part] - before[part]) / events * 1e6 for part in before}


def service_cost(cost: dict[str, float]) -> float:
    """The service's own CPU per event: every part but the load generator."""
    return sum(us for part, us in cost.items() if part != "load generator")


WRK_USERS = 5000  # post_events.lua's users: u0_0 .. u0_4999 (one wrk thread)


def give_history(port: int, per_user: int) -> None:
    """Ratings of `per_user` distinct movies for each of the users wrk will post for, so
    the run folds into states of that size (MovieLens users rated 165 movies on average,
    the busiest 2,698): a state holds every movie the user touched."""
    events = (
        {"type": "rating", "user_id": f"u0_{user}", "movie_id": f"h{movie}", "rating": 4}
        for user in range(WRK_USERS)
        for movie in range(per_user)
    )
    total = WRK_USERS * per_user
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
        with tqdm(total=total, desc="history", unit="ev", leave=False) as bar:
            while batch := list(itertools.islice(events, 1000)):
                client.post("/api/v1/events/batch", json={"events": batch}).raise_for_status()
                bar.update(len(batch))


OHA_INSTALL = "cargo install oha --locked"
# Who the fixed-rate runs' events are for, whichever generator sends them.
HALF_USERS = [f"half-{n}" for n in range(5000)]
HALF_MOVIES = [f"m{n}" for n in range(997)]


def oha_path() -> str | None:
    """oha (Rust) from PATH or cargo's default install dir, if installed."""
    found = shutil.which("oha")
    if found:
        return found
    home = Path(os.environ.get("CARGO_HOME", Path.home() / ".cargo")) / "bin" / "oha"
    return str(home) if home.exists() else None


def run_oha(oha: str, port: int, rate: float, seconds: float, connections: int) -> dict[str, float]:
    """Single watch POSTs at `rate` from oha: each request's latency counts from when it
    was due (`--latency-correction`), so a stalled server shows its queueing delay as an
    open-loop generator would, for about 90 us of CPU a request against vegeta's 220
    (each driving the echo at 2,000/s, this host)."""
    from bench import recommend  # it imports this module: not at the top

    count = int(rate * seconds) + 1
    with tempfile.TemporaryDirectory(prefix="cinemate-half-") as work:
        bodies = Path(work) / "watch.bodies"
        # One body a line, sent in turn: the same events vegeta's targets would carry.
        bodies.write_text("\n".join(recommend.watch_bodies(count, HALF_USERS, HALF_MOVIES, 7)))
        host = HostBusy()
        out = subprocess.run(
            [
                oha,
                "--no-tui",
                "--output-format",
                "json",
                "-z",
                f"{seconds:.0f}s",
                "-q",
                f"{rate:.0f}",
                "--latency-correction",
                "-c",
                str(connections),
                "-t",
                "5s",
                "-m",
                "POST",
                "-H",
                "content-type: application/json",
                "-Z",
                str(bodies),
                f"http://127.0.0.1:{port}/api/v1/events/watch",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        busy = host.share()
    report = json.loads(out)
    codes: dict[str, int] = report.get("statusCodeDistribution") or {}
    # Requests still running when the duration ends are cut off, not failed.
    errors = {
        k: n for k, n in (report.get("errorDistribution") or {}).items() if "deadline" not in k
    }
    return {
        "rps": report["summary"]["requestsPerSec"],
        "p50_ms": report["latencyPercentiles"]["p50"] * 1000,
        "p99_ms": report["latencyPercentiles"]["p99"] * 1000,
        "errors": float(
            sum(n for code, n in codes.items() if not code.startswith("2")) + sum(errors.values())
        ),
        "host_busy": busy,
    }


def fixed_rate_tool() -> tuple[str, str | None]:
    """The generator `fixed_rate` uses (oha, else vegeta, else bench/loadgen.py) and its
    path."""
    from bench import recommend  # it imports this module: not at the top

    oha = oha_path()
    if oha is not None:
        return "oha", oha
    try:
        return "vegeta", recommend.vegeta_path()
    except SystemExit:
        return "bench/loadgen.py", None


def fixed_rate_loader() -> str:
    """Which generator `fixed_rate` uses, and how to get the cheaper one when missing."""
    name, _ = fixed_rate_tool()
    if name == "oha":
        return name
    return f"{name}; `{OHA_INSTALL}` for oha, under half vegeta's CPU a request"


def fixed_rate(port: int, rate: float, seconds: float, connections: int) -> dict[str, float]:
    """Single watch POSTs at a steady `rate`, open loop: from oha when it is installed
    (the cheapest of these on CPU, which a 2-core machine shares with the service), else
    vegeta (Go: each request leaves when due), else bench/loadgen.py, whose own Python
    scheduling adds to what it measures."""
    from bench import recommend  # it imports this module: not at the top

    name, tool = fixed_rate_tool()
    if name == "oha" and tool is not None:
        return run_oha(tool, port, rate, seconds, connections)
    if tool is None:
        host = HostBusy()
        run = run_loadgen(
            port,
            "--connections",
            str(connections),
            "--seconds",
            str(seconds),
            "--rate",
            str(rate),
        )
        return {**run, "host_busy": host.share()}
    vegeta = tool
    count = int(rate * seconds) + 1
    with tempfile.TemporaryDirectory(prefix="cinemate-half-") as work:
        targets = Path(work) / "watch.targets"
        targets.write_text(
            recommend.event_targets(f"http://127.0.0.1:{port}", count, HALF_USERS, HALF_MOVIES, 7)
        )
        host = HostBusy()
        attack = subprocess.run(
            [
                vegeta,
                "attack",
                "-format=json",
                f"-targets={targets}",
                f"-rate={rate:.0f}/1s",
                f"-duration={seconds:.0f}s",
                f"-timeout={recommend.TIMEOUT}",
            ],
            capture_output=True,
            check=True,
        )
        busy = host.share()
        report = json.loads(
            subprocess.run(
                [vegeta, "report", "-type=json"],
                input=attack.stdout,
                capture_output=True,
                check=True,
            ).stdout
        )
    codes: dict[str, int] = report.get("status_codes") or {}
    return {
        "rps": report["throughput"],
        "p50_ms": report["latencies"]["50th"] / 1e6,
        "p99_ms": report["latencies"]["99th"] / 1e6,
        "errors": float(sum(n for code, n in codes.items() if not code.startswith("2"))),
        "host_busy": busy,
    }


def max_rate(port: int, connections: int, seconds: float, use_wrk: bool) -> dict[str, float]:
    path = "/api/v1/events/watch"
    if use_wrk:
        return run_wrk(port, path, connections, seconds)
    return run_loadgen(port, "--connections", str(connections), "--seconds", str(seconds))


DURABLE_KINDS = {
    "per request": "one INSERT committed per request",
    "grouped": "one writer commits all waiting rows at once",
}


@contextmanager
def durable_echo(kind: str, env: dict[str, str], work: Path) -> Iterator[tuple[int, int]]:
    """bench/durable_echo of this kind on the data dir's PostgreSQL, running: its port
    and pid."""
    port = free_port()
    flags = ["--grouped"] if kind == "grouped" else []
    process = start(
        [sys.executable, "-m", "bench.durable_echo", "--port", str(port), *flags],
        env,
        work / f"durable_echo_{port}.log",
    )
    try:
        wait_ready(f"http://127.0.0.1:{port}/")
        yield port, process.pid
    finally:
        stop(process)


def durable_baseline(
    kind: str, env: dict[str, str], work: Path, connections: int, seconds: float, use_wrk: bool
) -> tuple[dict[str, float], dict[str, float]]:
    """A durable echo's run at its highest rate, and its CPU per request."""
    with durable_echo(kind, env, work) as (port, pid):
        max_rate(port, connections, 2, use_wrk)
        meter = CpuMeter(pid, work / "data")
        before = meter.read()
        run = max_rate(port, connections, seconds, use_wrk)
        return run, per_event(before, meter.read(), run["rps"] * seconds)


def batch_load(port: int, seconds: float, connections: int = 4) -> dict[str, float]:
    """1,000-event batches (bench/loadgen.py builds the bodies)."""
    return run_loadgen(
        port,
        "--path",
        "/api/v1/events/batch",
        "--batch",
        "1000",
        "--connections",
        str(connections),
        "--seconds",
        str(seconds),
    )


def durable_batch_baseline(
    env: dict[str, str], work: Path, seconds: float
) -> tuple[dict[str, float], dict[str, float]]:
    """The durable echo answering the same batches, each committed in one INSERT of its
    rows: the least a durable batch costs on this stack. Its run and CPU per event."""
    with durable_echo("per request", env, work) as (port, pid):
        batch_load(port, 2)
        meter = CpuMeter(pid, work / "data")
        before = meter.read()
        run = batch_load(port, seconds)
        return run, per_event(before, meter.read(), run["rps"] * 1000 * seconds)


def durable_at_rate(
    kind: str, env: dict[str, str], work: Path, rate: float, seconds: float, connections: int
) -> dict[str, float]:
    """A durable echo's latency at a fixed rate: what this disk and stack allow there."""
    with durable_echo(kind, env, work) as (port, _):
        fixed_rate(port, rate, 2, connections)
        return fixed_rate(port, rate, seconds, connections)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--loadgen", action="store_true", help="use bench/loadgen.py, not wrk")
    parser.add_argument(
        "--warm",
        type=float,
        default=2,
        metavar="SECONDS",
        help="single POSTs before measuring (default 2); 40 or more reaches the steady "
        "state of a long run (PostgreSQL's checkpoints, WAL segments recycled)",
    )
    parser.add_argument(
        "--history",
        type=int,
        default=0,
        metavar="N",
        help="first give each user wrk posts for N rated movies (MovieLens mean: 165)",
    )
    args = parser.parse_args()
    use_wrk = shutil.which("wrk") is not None and not args.loadgen
    from bench import recommend  # it imports this module: not at the top

    work = Path(tempfile.mkdtemp(prefix="cinemate-bench-"))
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "REDIS_URL", "KAFKA_BOOTSTRAP_SERVERS")
    }
    env.update(CINEMATE_DATA_DIR=str(work / "data"), LOG_LEVEL="WARNING")
    # With ENABLE_CONSUMERS=false nothing projects: nothing to wait for.
    projecting = Settings.from_env(env).enable_consumers

    def settle(port: int) -> None:
        if projecting:
            recommend.caught_up(port, poll=0.05)

    service_port, echo_port = free_port(), free_port()
    service = start(
        [sys.executable, "-m", "cinemate.cli", "serve", "--port", str(service_port)],
        env,
        work / "serve.log",
    )
    echo = start(
        [sys.executable, "-m", "bench.echo_server", "--port", str(echo_port)],
        env,
        work / "echo.log",
    )
    try:
        wait_ready(f"http://127.0.0.1:{service_port}/api/v1/health/ready")
        wait_ready(f"http://127.0.0.1:{echo_port}/")
        loader = "wrk" if use_wrk else "bench/loadgen.py"
        print(
            f"load from a separate process ({loader}; at a fixed rate {fixed_rate_loader()}), "
            f"{args.connections} connections, {args.seconds:.0f} s per run",
            flush=True,
        )
        if args.history:
            give_history(service_port, args.history)
            settle(service_port)
            print(f"each of wrk's {WRK_USERS:,} users has rated {args.history} movies", flush=True)
        # Warm both (connections, prepared statements), then measure.
        max_rate(echo_port, args.connections, 2, use_wrk)
        max_rate(service_port, args.connections, args.warm, use_wrk)
        settle(service_port)
        echo_process = psutil.Process(echo.pid)
        load_before, echo_before = resource.getrusage(resource.RUSAGE_CHILDREN), _cpu(echo_process)
        echo_run = max_rate(echo_port, args.connections, args.seconds, use_wrk)
        load_after, echo_after = resource.getrusage(resource.RUSAGE_CHILDREN), _cpu(echo_process)
        echo_answers = echo_run["rps"] * args.seconds
        echo_cost = {
            "echo": (echo_after - echo_before) / echo_answers * 1e6,
            "load generator": (
                load_after.ru_utime
                + load_after.ru_stime
                - load_before.ru_utime
                - load_before.ru_stime
            )
            / echo_answers
            * 1e6,
        }
        meter = CpuMeter(service.pid, work / "data")
        # Once the service is up, so they join the PostgreSQL server it started.
        durables = {
            kind: durable_baseline(kind, env, work, args.connections, args.seconds, use_wrk)
            for kind in DURABLE_KINDS
        }
        before = meter.read()
        stalls = IoStall()
        single = max_rate(service_port, args.connections, args.seconds, use_wrk)
        stalled = stalls.describe()
        # The worker may still be folding the last events: its cost counts, and the
        # half-rate run must not share the machine with that backlog. A rate that the
        # projections only caught up with later is not one the stack sustains.
        ended = time.monotonic()
        settle(service_port)
        behind = time.monotonic() - ended
        cost = per_event(before, meter.read(), single["rps"] * args.seconds)
        half_before = meter.read()
        half = fixed_rate(service_port, single["rps"] / 2, args.seconds, args.connections)
        settle(service_port)
        half_cost = per_event(half_before, meter.read(), half["rps"] * args.seconds)
        # The same rate answered by the durable echoes: the latency this disk and HTTP
        # stack give when nothing of the service runs.
        halves = {
            kind: durable_at_rate(
                kind, env, work, single["rps"] / 2, args.seconds, args.connections
            )
            for kind in DURABLE_KINDS
        }
        batch_before = meter.read()
        batch = batch_load(service_port, args.seconds)
        # Acknowledged is durable, but the read models fold each event later: how long
        # they took to catch up tells what rate the whole stack sustains.
        batch_answered = meter.read()
        ended = time.monotonic()
        settle(service_port)
        batch_behind = time.monotonic() - ended
        batch_caught_up = meter.read()
        durable_batch, durable_batch_cost = durable_batch_baseline(env, work, args.seconds)
    finally:
        stop(service)
        stop(echo)

    batch_events = batch["rps"] * 1000
    batch_total = batch_events * args.seconds
    batch_cost = per_event(batch_before, batch_answered, batch_total)
    batch_cost_all = per_event(batch_before, batch_caught_up, batch_total)
    rows = [
        (
            "echo baseline (no database)",
            f"{echo_run['rps']:,.0f} req/s",
            f"p50 {echo_run['p50_ms']:.1f} ms, p99 {echo_run['p99_ms']:.1f} ms",
            "",
        ),
        *(
            (
                f"durable echo baseline ({DURABLE_KINDS[kind]})",
                f"{run['rps']:,.0f} req/s",
                f"p50 {run['p50_ms']:.1f} ms, p99 {run['p99_ms']:.1f} ms",
                f"{run['rps'] / echo_run['rps']:.2f} x echo",
            )
            for kind, (run, _) in durables.items()
        ),
        (
            "durable single-event POSTs",
            f"{single['rps']:,.0f} events/s",
            f"p50 {single['p50_ms']:.1f} ms, p99 {single['p99_ms']:.1f} ms",
            f"{single['rps'] / echo_run['rps']:.2f} x echo (target >= 0.6; >= 10,000/s); "
            + ", ".join(
                f"{single['rps'] / run['rps']:.2f} x durable echo {kind}"
                for kind, (run, _) in durables.items()
            ),
        ),
        (
            f"  the same, until the projections caught up ({behind:.1f} s after)",
            f"{single['rps'] * args.seconds / (args.seconds + behind):,.0f} events/s",
            "",
            "sustained: events / (run + catch-up)",
        ),
        (
            f"  at half that rate ({single['rps'] / 2:,.0f}/s, open loop)",
            f"{half['rps']:,.0f} events/s",
            f"p50 {half['p50_ms']:.1f} ms, p99 {half['p99_ms']:.1f} ms",
            f"target p99 <= 20 ms; the cores {half['host_busy']:.0%} busy; the service "
            f"{service_cost(half_cost):,.0f} us of CPU an event, {service_cost(cost):,.0f} "
            f"at full load; the load generator {half_cost['load generator']:,.0f} us",
        ),
        *(
            (
                f"    durable echo at that rate ({kind})",
                f"{run['rps']:,.0f} req/s",
                f"p50 {run['p50_ms']:.1f} ms, p99 {run['p99_ms']:.1f} ms",
                f"service's p99 {half['p99_ms'] / run['p99_ms']:.2f} x this; "
                f"the cores {run['host_busy']:.0%} busy",
            )
            for kind, run in halves.items()
        ),
        (
            "batch ingest (1,000 per request)",
            f"{batch_events:,.0f} events/s",
            f"p50 {batch['p50_ms']:.0f} ms per batch",
            f"{batch_events / single['rps']:.1f} x single (target >= 50,000/s)",
        ),
        (
            f"  the same, until the projections caught up ({batch_behind:.1f} s after)",
            f"{batch_events * args.seconds / (args.seconds + batch_behind):,.0f} events/s",
            "",
            "sustained: events / (run + catch-up)",
        ),
        (
            "  durable echo, the same batches (one INSERT of each batch's rows)",
            f"{durable_batch['rps'] * 1000:,.0f} events/s",
            f"p50 {durable_batch['p50_ms']:.0f} ms per batch",
            f"service's batches {batch['rps'] / durable_batch['rps']:.2f} x this",
        ),
    ]
    if not projecting:  # nothing caught up: no sustained rate to tell
        rows = [row for row in rows if "caught up" not in row[0]]
    width = max(len(r[0]) for r in rows)
    for name, rate, latency, ratio in rows:
        print(f"{name:<{width}}  {rate:>18}  {latency:<28}  {ratio}")
    runs = {
        "echo": echo_run,
        **{f"durable echo {kind}": run for kind, (run, _) in durables.items()},
        "single": single,
        "half rate": half,
        **{f"durable echo {kind} at half rate": run for kind, run in halves.items()},
        "batch": batch,
        "durable echo batches": durable_batch,
    }
    errors = ", ".join(f"{name} {run['errors']:.0f}" for name, run in runs.items())
    print(f"non-2xx answers or socket errors: {errors}")
    print(f"during the single-event run: {stalled}")
    cores = os.cpu_count() or 1
    print(f"\nCPU per single-event POST, microseconds (this machine: {cores} cores)")
    for part, micros in cost.items():
        print(f"  {part:<16} {micros:>6.0f} us")
    total = sum(cost.values())
    print(
        f"  {'all':<16} {total:>6.0f} us -> at most {cores / total * 1e6:,.0f} events/s "
        f"on {cores} cores"
    )
    print("\nCPU per batch event, microseconds: while answering / until caught up")
    for part in batch_cost:
        print(f"  {part:<16} {batch_cost[part]:>6.1f} / {batch_cost_all[part]:>6.1f} us")
    batch_echo = {"durable echo": durable_batch_cost["api"], **durable_batch_cost}
    del batch_echo["api"], batch_echo["worker"]
    print(
        "  durable echo, the same batches: "
        + " + ".join(f"{us:.1f} us {part}" for part, us in batch_echo.items())
        + f" = {sum(batch_echo.values()):.1f} us"
    )
    for kind, (_, durable_cost) in durables.items():
        parts = {f"echo {kind}": durable_cost["api"], **durable_cost}
        del parts["api"], parts["worker"]
        durable_total = sum(parts.values())
        print(
            f"  durable echo baseline, {kind}: "
            + " + ".join(f"{us:.0f} us {part}" for part, us in parts.items())
            + f" = {durable_total:.0f} us -> {cores / durable_total * 1e6:,.0f} requests/s at most"
        )
    echo_total = sum(echo_cost.values())
    print(
        f"  echo baseline: {echo_cost['echo']:.0f} us in its process + "
        f"{echo_cost['load generator']:.0f} us of load generator = {echo_total:.0f} us "
        f"-> {cores / echo_total * 1e6:,.0f} requests/s at most"
    )
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
