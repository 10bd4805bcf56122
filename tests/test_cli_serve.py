"""`cinemate serve` as a user runs it: a real process, embedded servers, SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import psutil

from devtools import kafka_broker


def free_port() -> int:
    """Outside the ephemeral range, where clients' connections cannot take it first."""
    return kafka_broker.free_port()


def call(method: str, url: str, body: object | None = None) -> tuple[int, dict[str, Any]]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def serve(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env["CINEMATE_DATA_DIR"] = str(data_dir)
    return subprocess.Popen(
        [sys.executable, "-m", "cinemate.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def wait_ready(port: int, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stdout.read().decode()  # type: ignore[union-attr]
        try:
            status, _ = call("GET", f"http://127.0.0.1:{port}/api/v1/health/ready")
            if status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError("service did not become ready")


def postgres_running(data_dir: Path) -> bool:
    pgdata = str(data_dir / "postgres")
    for proc in psutil.process_iter(["name", "cmdline"]):
        if proc.info["name"] == "postgres" and pgdata in " ".join(proc.info["cmdline"] or []):
            return True
    return False


def test_serve_shares_embedded_servers_and_stops_them_on_sigterm(tmp_path: Path) -> None:
    port, other_port = free_port(), free_port()
    first = serve(tmp_path, port)
    second = None
    try:
        wait_ready(port, first)
        status, answer = call(
            "POST",
            f"http://127.0.0.1:{port}/api/v1/events/rating",
            {"user_id": "cli", "movie_id": "m1", "rating": 4},
        )
        assert status == 202, answer

        clash = serve(tmp_path, port)
        output = clash.communicate(timeout=60)[0].decode()
        assert clash.returncode != 0
        assert "could not listen" in output

        second = serve(tmp_path, other_port)
        wait_ready(other_port, second)
        status, stream = call("GET", f"http://127.0.0.1:{other_port}/api/v1/users/cli/events")
        assert status == 200
        assert [e["payload"]["rating"] for e in stream["events"]] == [4.0]

        second.send_signal(signal.SIGTERM)
        assert second.wait(30) == 0
        assert postgres_running(tmp_path), "the first service still uses the database"
        status, _ = call("GET", f"http://127.0.0.1:{port}/api/v1/users/cli/events")
        assert status == 200
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(30)
    assert first.returncode == 0
    deadline = time.monotonic() + 10
    while postgres_running(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not postgres_running(tmp_path)


def worker_children(process: subprocess.Popen[bytes]) -> list[psutil.Process]:
    found = []
    for child in psutil.Process(process.pid).children():
        try:
            if child.status() != psutil.STATUS_ZOMBIE and "worker" in child.cmdline():
                found.append(child)
        except psutil.Error:
            pass  # ended meanwhile
    return found


def features_version(port: int, user: str) -> int:
    status, document = call("GET", f"http://127.0.0.1:{port}/api/v1/features/{user}")
    return int(document["stream_version"]) if status == 200 else 0


def wait_until(check: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_serve_projects_in_a_supervised_worker_process(tmp_path: Path) -> None:
    """The projections run in a child `cinemate worker` (a second core); killed, it is
    started again and catches up; SIGTERM to serve stops it too."""
    port = free_port()
    service = serve(tmp_path, port)
    try:
        wait_ready(port, service)
        wait_until(lambda: len(worker_children(service)) == 1)
        (first,) = worker_children(service)
        body = {"user_id": "sup", "movie_id": "m1", "progress": 0.5}
        assert call("POST", f"http://127.0.0.1:{port}/api/v1/events/watch", body)[0] == 202
        wait_until(lambda: features_version(port, "sup") == 1)
        first.kill()
        assert call("POST", f"http://127.0.0.1:{port}/api/v1/events/watch", body)[0] == 202
        wait_until(lambda: [c.pid for c in worker_children(service)] not in ([], [first.pid]))
        wait_until(lambda: features_version(port, "sup") == 2)
        (second,) = worker_children(service)
        service.send_signal(signal.SIGTERM)
        assert service.wait(60) == 0
        assert not second.is_running() or second.status() == psutil.STATUS_ZOMBIE
    finally:
        if service.poll() is None:
            service.kill()
            service.wait(30)
