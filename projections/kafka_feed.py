"""The interactions topic as a feed of stored records: the message format, both ways.

A message is keyed by user id (so each user's stream stays in order on one partition).
Its value is the spec's envelope; its headers repeat the event id and carry the store
transaction id, so a consumer can place the event exactly where the store has it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

import aiokafka
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAlreadyExistsError
from eventsourcing.utils import get_topic

from event_store.feed import StoredRecord
from schema import events, topics

log = logging.getLogger("cinemate.kafka")
T = TypeVar("T")

# While a broker is unreachable aiokafka logs every reconnect attempt (about 20 lines a
# second); each of its messages is let through once per this many seconds, with the
# count of those held back.
AIOKAFKA_LOG_EVERY_SECONDS = 30.0
# Kafka work taking longer than this is an outage worth one line of ours.
SLOW_SECONDS = 5.0


class RateLimited(logging.Filter):
    """One record per logger and message template per `every` seconds; the next one let
    through says how many were held back (its `suppressed` field)."""

    def __init__(self, every: float) -> None:
        super().__init__()
        self.every = every
        self._last: dict[tuple[str, str], float] = {}
        self._held: dict[tuple[str, str], int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, str(record.msg))
        now = time.monotonic()
        if now - self._last.get(key, float("-inf")) < self.every:
            self._held[key] = self._held.get(key, 0) + 1
            return False
        self._last[key] = now
        if held := self._held.pop(key, 0):
            record.suppressed = held
        return True


def _rate_limit_aiokafka() -> None:
    limit = RateLimited(AIOKAFKA_LOG_EVERY_SECONDS)
    names = [aiokafka.__name__] + [
        name for name in logging.root.manager.loggerDict if name.startswith("aiokafka.")
    ]
    for name in names:
        logging.getLogger(name).addFilter(limit)


_rate_limit_aiokafka()


class Outage:
    """One warning when a Kafka client (the relay, say) finds Kafka unreachable (saying
    what waits and how it retries), one when Kafka answers again: not one per attempt."""

    def __init__(self) -> None:
        self.since: float | None = None

    def begin(self, message: str, *args: object, **extra: object) -> None:
        if self.since is None:
            self.since = time.monotonic()
            log.warning(message, *args, extra=extra)

    def end(self) -> None:
        if self.since is not None:
            log.warning("kafka reachable again after %.1f s", time.monotonic() - self.since)
            self.since = None


async def patiently(work: Awaitable[T], outage: Outage, doing: str, retry: str) -> T:
    """Await Kafka work; if it takes longer than SLOW_SECONDS (a broker unreachable:
    aiokafka retries inside, quietly now), the outage begins (see Outage), and ends when
    work completes."""
    task = asyncio.ensure_future(work)
    try:
        result = await asyncio.wait_for(asyncio.shield(task), SLOW_SECONDS)
    except TimeoutError:
        outage.begin(
            "kafka unreachable: %s has waited %.0f s; %s", doing, SLOW_SECONDS, retry, doing=doing
        )
        try:
            result = await task
        except BaseException:
            task.cancel()
            raise
    outage.end()
    return result


Headers = Sequence[tuple[str, bytes]]


class PoisonMessage(ValueError):
    """A message no projection can read; it goes to the dead-letter topic."""


def to_message(record: StoredRecord) -> tuple[bytes, list[tuple[str, bytes]]]:
    event = record.decode()
    value = orjson.dumps(
        {
            "event_id": str(record.event_id),
            "type": record.event_type,
            # The payload is the current class's (older rows are upcast when read).
            "schema_version": events.schema_version(event),
            "user_id": record.user_id,
            "stream_version": record.stream_version,
            "position": record.position,
            "occurred_at": event.timestamp,
            "recorded_at": record.recorded_at,
            "payload": events.payload_of(event),
        },
        # Times as the HTTP answers write them: `Z`, not `+00:00`.
        option=orjson.OPT_UTC_Z,
    )
    headers = [
        ("event_id", str(record.event_id).encode()),
        ("event_type", record.event_type.encode()),
        ("schema_version", str(events.schema_version(event)).encode()),
        ("position", str(record.position).encode()),
        ("tx_id", str(record.tx_id).encode()),
    ]
    return value, headers


# Per event type the payload fields a current message carries, with what its stored row
# has (the class, its schema version, the topic): the messages read directly.
_CURRENT = {
    kind: (cls, events.schema_version_of(cls), get_topic(cls), events.payload_fields(kind))
    for kind, cls in events.EVENT_CLASSES.items()
}
_TRANSCODED = b'"_type_"'


def from_message(value: bytes | None, headers: Headers) -> StoredRecord:
    """The stored record a message carries; PoisonMessage if it carries none.

    A message of the current schema version carrying exactly its type's fields, with
    nothing that looks transcoded (what the relay writes), is read here directly: its
    stored row written as the transcoder writes it, and its event built as the store's
    direct decoding builds it (`events.decode`), without encoding the row only to
    decode it again. Any other message goes the reference way (`read_message`); a
    test holds the two identical, record and event."""
    if value is None:
        raise PoisonMessage("no value")
    if _TRANSCODED in value:
        return read_message(value, headers)
    try:
        envelope: dict[str, Any] = orjson.loads(value)
        kind, version, payload = envelope["type"], envelope["schema_version"], envelope["payload"]
        user_id, stream_version = envelope["user_id"], envelope["stream_version"]
        position = envelope["position"]
        found = _CURRENT.get(kind)
        if (
            found is None
            or type(version) is not int
            or version != found[1]
            or type(payload) is not dict
            or payload.keys() != found[3]
            or type(user_id) is not str
            or type(stream_version) is not int
            or type(position) is not int
        ):
            return read_message(value, headers)
        cls, _, topic, _ = found
        occurred_at = datetime.fromisoformat(envelope["occurred_at"])
        state = {**payload, "timestamp": events.timestamp_state(occurred_at)}
        if version > 1:
            state["class_version"] = version
        event = events.revived(cls, {**payload, "timestamp": occurred_at}, user_id, stream_version)
        return StoredRecord(
            position,
            int(dict(headers)["tx_id"]),
            UUID(envelope["event_id"]),
            user_id,
            stream_version,
            kind,
            topic,
            version,
            orjson.dumps(state),
            datetime.fromisoformat(envelope["recorded_at"]),
            event,
        )
    except (KeyError, TypeError, ValueError, AttributeError):
        return read_message(value, headers)  # says what is wrong with it


def read_message(value: bytes, headers: Headers) -> StoredRecord:
    """`from_message` the reference way: the row encoded by eventsourcing's transcoder
    from the payload (older schema versions upcast on the way), then decoded."""
    try:
        envelope: dict[str, Any] = orjson.loads(value)
        tx_id = int(dict(headers)["tx_id"])
        stored, event = events.stored_from_payload(
            envelope["type"],
            int(envelope["schema_version"]),
            str(envelope["user_id"]),
            int(envelope["stream_version"]),
            datetime.fromisoformat(envelope["occurred_at"]),
            dict(envelope["payload"]),
        )
        return StoredRecord(
            position=int(envelope["position"]),
            tx_id=tx_id,
            event_id=UUID(envelope["event_id"]),
            user_id=str(stored.originator_id),
            stream_version=stored.originator_version,
            event_type=envelope["type"],
            topic=stored.topic,
            schema_version=int(envelope["schema_version"]),
            state=stored.state,
            recorded_at=datetime.fromisoformat(envelope["recorded_at"]),
            decoded=event,
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise PoisonMessage(f"{type(exc).__name__}: {exc}") from exc


def new_producer(bootstrap: str, **options: Any) -> AIOKafkaProducer:
    """Idempotent, acks from every in-sync replica: retries never duplicate or reorder."""
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        enable_idempotence=True,
        acks="all",
        linger_ms=5,
        request_timeout_ms=10_000,
        retry_backoff_ms=200,
        **options,
    )


async def ensure_topics(
    bootstrap: str,
    partitions: Mapping[str, int] = topics.PARTITIONS,
    configs: Mapping[str, Mapping[str, str]] = topics.CONFIGS,
) -> None:
    """Create the service's topics that do not exist yet, with their configs, and give
    existing ones (say, created by an older version without configs) the configs they
    lack: compaction and retention are what make a forget complete in Kafka."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        brokers = len((await admin.describe_cluster()).get("brokers") or [None])
        missing = [
            NewTopic(name, count, min(3, brokers), topic_configs=dict(configs.get(name, {})))
            for name, count in partitions.items()
            if name not in existing
        ]
        if missing:
            try:
                await admin.create_topics(missing)
            except TopicAlreadyExistsError:
                pass  # another process created it meanwhile
        present = [name for name in partitions if name in existing and configs.get(name)]
        try:
            await _reconcile_configs(admin, present, configs)
        except Exception as exc:  # publishing goes on; the operator must see this
            log.error("kafka topic configs not checked or not set", extra={"error": repr(exc)})
    finally:
        await admin.close()


async def _reconcile_configs(
    admin: AIOKafkaAdminClient, names: Sequence[str], configs: Mapping[str, Mapping[str, str]]
) -> None:
    if not names:
        return
    actual = await topic_configs(admin, names)
    stale = [
        ConfigResource(ConfigResourceType.TOPIC, name, dict(configs[name]))
        for name in names
        if any(actual[name].get(k) != v for k, v in configs[name].items())
    ]
    if not stale:
        return
    # AlterConfigs sets a topic's whole dynamic config: these topics are the service's.
    for response in await admin.alter_configs(stale):
        for error_code, error_message, _, name in (r[:4] for r in response.resources):
            if error_code:
                raise RuntimeError(f"alter configs of {name}: {error_code} {error_message}")
    log.warning("kafka topic configs updated", extra={"topics": [r.name for r in stale]})


async def topic_configs(
    admin: AIOKafkaAdminClient, names: Sequence[str]
) -> dict[str, dict[str, str]]:
    """Each topic's effective configs, as the broker reports them."""
    found: dict[str, dict[str, str]] = {}
    for response in await admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
    ):
        for error_code, error_message, _, name, entries in (r[:5] for r in response.resources):
            if error_code:
                raise RuntimeError(f"describe configs of {name}: {error_code} {error_message}")
            found[name] = {entry[0]: entry[1] for entry in entries}
    return found


async def stop_quietly(*clients: AIOKafkaProducer | AIOKafkaConsumer) -> None:
    """Stop Kafka clients on the way out, whatever state a failure left them in."""
    for client in clients:
        try:
            async with asyncio.timeout(5):
                await client.stop()
        except Exception as exc:
            log.debug("kafka client did not stop cleanly: %r", exc)
