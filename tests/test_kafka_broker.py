"""Real Kafka broker (KRaft, via devtools.kafka_broker): produce, consume, restart, durability.

No mocks: the first run fetches the Kafka jars with mvn (cached afterwards).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from devtools.kafka_broker import KafkaBroker, KafkaBrokerError

TOPIC = "cinemate-test-events"
GROUP = "cinemate-test-group"


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    b = KafkaBroker(tmp_path_factory.mktemp("kafka"))
    b.start()
    try:
        yield b
    finally:
        b.stop()


async def _create_topic(bootstrap: str, name: str, partitions: int = 3) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
        # The controller answers once the topic is created; the broker's metadata, which
        # lists it, follows a moment later (an empty list was seen here under load).
        deadline = time.monotonic() + 10
        while name not in await admin.list_topics():
            assert time.monotonic() < deadline, f"{name} not listed 10 s after its creation"
            await asyncio.sleep(0.1)
    finally:
        await admin.close()


async def _produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all")
    await producer.start()
    try:
        for v in values:
            await producer.send_and_wait(topic, v, key=b"user-1")  # same key: one partition
    finally:
        await producer.stop()


async def _consume(bootstrap: str, topic: str, n: int, *, commit: bool) -> list[bytes]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=GROUP,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    got: list[bytes] = []
    try:
        deadline = time.monotonic() + 30
        while len(got) < n and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                got.extend(r.value for r in records if r.value is not None)
        if commit:
            await consumer.commit()
    finally:
        await consumer.stop()
    return got


async def _read_all(bootstrap: str, topic: str, partitions: int) -> list[bytes]:
    """Read a topic from the beginning without a group (checks durability, not offsets)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        end = await consumer.end_offsets(parts)
        got: list[bytes] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            positions = [await consumer.position(tp) for tp in parts]
            if all(pos >= end[tp] for pos, tp in zip(positions, parts, strict=True)):
                break
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                got.extend(r.value for r in records if r.value is not None)
    finally:
        await consumer.stop()
    return got


async def test_produce_consume_restart_durable(broker: KafkaBroker) -> None:
    bootstrap = broker.bootstrap_servers
    port = broker.port
    assert bootstrap == f"127.0.0.1:{port}"
    assert broker.is_running()
    assert broker.pid_file.exists()

    await _create_topic(bootstrap, TOPIC)
    await _produce(bootstrap, TOPIC, [b"rated:42:5", b"watched:7"])
    assert await _consume(bootstrap, TOPIC, 2, commit=True) == [b"rated:42:5", b"watched:7"]

    # Clean stop, then start again on the same port and data dir.
    broker.stop()
    assert not broker.is_running()
    assert not broker.pid_file.exists()
    assert broker.start() == bootstrap
    assert broker.port == port

    assert await _read_all(bootstrap, TOPIC, 3) == [b"rated:42:5", b"watched:7"]
    await _produce(bootstrap, TOPIC, [b"rated:43:4"])
    # The committed group offset survived the restart: only the new message is delivered.
    assert await _consume(bootstrap, TOPIC, 1, commit=True) == [b"rated:43:4"]


async def test_kill_and_restart_same_port(broker: KafkaBroker) -> None:
    """A crash (SIGKILL) loses no acknowledged message; the port stays the same."""
    bootstrap = broker.bootstrap_servers
    topic = "cinemate-test-crash"
    await _create_topic(bootstrap, topic, partitions=1)
    await _produce(bootstrap, topic, [b"before-crash"])

    broker.kill()
    assert not broker.is_running()
    assert broker.start() == bootstrap

    await _produce(bootstrap, topic, [b"after-crash"])
    assert await _read_all(bootstrap, topic, 1) == [b"before-crash", b"after-crash"]


def test_second_broker_on_same_data_dir_is_refused(broker: KafkaBroker) -> None:
    other = KafkaBroker(broker.data_dir)
    assert other.port == broker.port  # the port is persisted in the data dir
    assert other.is_running()  # found through the pid file
    with pytest.raises(KafkaBrokerError, match="already runs"):
        other.start()


def test_fetch_is_cached(broker: KafkaBroker) -> None:
    t0 = time.monotonic()
    libs = broker.fetch()
    assert time.monotonic() - t0 < 1
    assert any(libs.glob("kafka_2.13-*.jar"))
    assert any(libs.glob("log4j-slf4j-impl-*.jar"))


def test_cli_help() -> None:
    res = subprocess.run(
        [sys.executable, "-m", "devtools.kafka_broker", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    for cmd in ("fetch", "start", "stop"):
        assert cmd in res.stdout


def test_cli_start_and_stop_from_another_process(tmp_path: Path) -> None:
    data = tmp_path / "cli-kafka"
    cli = [sys.executable, "-m", "devtools.kafka_broker"]
    proc = subprocess.Popen(
        [*cli, "start", "--data-dir", str(data)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("127.0.0.1:"), proc.stderr.read() if proc.stderr else line
        assert asyncio.run(_broker_ids(line)) == [1]
        subprocess.run([*cli, "stop", "--data-dir", str(data)], check=True, timeout=60)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=30)


async def _broker_ids(bootstrap: str) -> list[int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        info = await admin.describe_cluster()
        return [b["node_id"] for b in info["brokers"]]
    finally:
        await admin.close()
