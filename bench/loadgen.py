"""A small HTTP/1.1 load generator on raw asyncio streams (keep-alive, no pipelining).

Two modes: as fast as possible over N connections (closed loop), or a fixed total rate
(open loop), where latency counts from the moment a request was due, not when it was
sent, so a stalled server cannot hide its queueing delay (no coordinated omission).
Run it in its own process, apart from the server it measures.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field

BodyFactory = Callable[[int], bytes]


@dataclass
class Result:
    requests: int = 0
    errors: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def summary(self) -> dict[str, float | int | dict[int, int]]:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "statuses": self.statuses,
            "rps": self.requests / self.seconds if self.seconds else 0.0,
            "p50_ms": self.percentile(0.50) * 1000,
            "p99_ms": self.percentile(0.99) * 1000,
        }


def get_bytes(host: str, path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()


def request_bytes(host: str, path: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes) -> int:
    writer.write(data)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    if length:
        await reader.readexactly(length)
    return status


async def run(
    host: str,
    port: int,
    path: str,
    make_body: BodyFactory,
    *,
    connections: int,
    seconds: float,
    rate: float | None = None,
    get_users: int | None = None,
) -> Result:
    """POST bodies from `make_body`, or with `get_users`, GET `path` with "{n}" replaced by
    a user number from 1 to get_users."""
    result = Result()
    counter = itertools.count()
    started = time.perf_counter()
    deadline = started + seconds

    async def connection(index: int) -> None:
        reader, writer = await asyncio.open_connection(host, port)
        interval = connections / rate if rate else 0.0
        due = started + index * (interval / connections if rate else 0.0)
        try:
            while True:
                if rate:
                    now = time.perf_counter()
                    if due > now:
                        await asyncio.sleep(due - now)
                    begin = due
                    due += interval
                else:
                    begin = time.perf_counter()
                if begin >= deadline:
                    return
                n = next(counter)
                if get_users:
                    data = get_bytes(host, path.replace("{n}", str(n % get_users + 1)))
                else:
                    data = request_bytes(host, path, make_body(n))
                try:
                    status = await _one(reader, writer, data)
                except (OSError, asyncio.IncompleteReadError):
                    result.errors += 1
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
                    continue
                result.latencies.append(time.perf_counter() - begin)
                result.requests += 1
                result.statuses[status] = result.statuses.get(status, 0) + 1
        finally:
            writer.close()

    await asyncio.gather(*(connection(i) for i in range(connections)))
    result.seconds = time.perf_counter() - started
    return result


def watch_body(n: int) -> bytes:
    return b'{"user_id":"u%d","movie_id":"m%d","progress":0.5,"watched_seconds":1200}' % (
        n % 20_000,
        n % 997,
    )


def batch_body(size: int) -> BodyFactory:
    def make(n: int) -> bytes:
        items = b",".join(
            b'{"type":"rating","user_id":"b%d","movie_id":"m%d","rating":4.0}'
            % ((n * size + i) % 50_000, i % 997)
            for i in range(size)
        )
        return b'{"events":[' + items + b"]}"

    return make


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/api/v1/events/watch")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rate", type=float, help="requests/s in total (open loop)")
    parser.add_argument("--batch", type=int, help="POST batches of this many events")
    parser.add_argument(
        "--get-users", type=int, help='GET --path instead, "{n}" in it replaced by 1..N in turn'
    )
    args = parser.parse_args()
    make = batch_body(args.batch) if args.batch else watch_body

    import uvloop

    result = uvloop.run(
        run(
            args.host,
            args.port,
            args.path,
            make,
            connections=args.connections,
            seconds=args.seconds,
            rate=args.rate,
            get_users=args.get_users,
        )
    )
    print(json.dumps(result.summary()))


if __name__ == "__main__":
    main()
