"""Configuration, read once from the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class SettingsError(ValueError):
    pass


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise SettingsError(f"{name}={raw!r}: expected true or false")


PROJECTION_SOURCES = ("store", "kafka")


def _source(raw: str, brokers: str | None) -> str:
    source = raw.strip().lower()
    if source not in PROJECTION_SOURCES:
        raise SettingsError(f"CINEMATE_PROJECTION_SOURCE={raw!r}: expected store or kafka")
    if source == "kafka" and not brokers:
        raise SettingsError("CINEMATE_PROJECTION_SOURCE=kafka needs KAFKA_BOOTSTRAP_SERVERS")
    return source


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: str | None
    redis_url: str | None
    kafka_bootstrap_servers: str | None
    enable_kafka: bool
    enable_consumers: bool
    model_path: Path | None
    admin_token: str | None
    log_level: str
    group_commit_concurrency: int
    max_pending_events: int
    projection_batch_size: int
    # Where projection workers read events: the store itself, or the interactions topic
    # as a Kafka consumer group (several machines sharing the partitions).
    projection_source: str = "store"
    # `serve` runs the projections (and the Kafka relay) in a supervised child process, so
    # the API and the projections each get a core; true keeps them on the API's loop.
    projections_in_process: bool = False
    # SHA-256 digests of `.pkl` artifacts the operator vouches for (MODEL_SHA256, comma
    # or space separated), beside those `cinemate train` recorded.
    model_sha256: frozenset[str] = frozenset()
    # HTTP connection limits (cinemate.server.HttpLimits): seconds for a request's
    # headers, for the whole request, for an idle kept-alive connection; connections.
    http_header_timeout: float = 10.0
    http_request_timeout: float = 30.0
    http_keepalive_timeout: int = 5
    http_max_connections: int = 1000

    @property
    def kafka_on(self) -> bool:
        """Publish to Kafka: brokers are configured and ENABLE_KAFKA is not false."""
        return self.enable_kafka and self.kafka_bootstrap_servers is not None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        kafka = env.get("KAFKA_BOOTSTRAP_SERVERS") or None
        model_path = env.get("MODEL_PATH") or None
        return cls(
            data_dir=Path(env.get("CINEMATE_DATA_DIR") or "./.cinemate").resolve(),
            database_url=env.get("DATABASE_URL") or None,
            redis_url=env.get("REDIS_URL") or None,
            kafka_bootstrap_servers=kafka,
            enable_kafka=_flag(env, "ENABLE_KAFKA", default=kafka is not None),
            enable_consumers=_flag(env, "ENABLE_CONSUMERS", default=True),
            model_path=Path(model_path) if model_path else None,
            admin_token=env.get("ADMIN_TOKEN") or None,
            log_level=(env.get("LOG_LEVEL") or "INFO").upper(),
            group_commit_concurrency=int(env.get("CINEMATE_COMMIT_CONCURRENCY") or 2),
            max_pending_events=int(env.get("CINEMATE_MAX_PENDING_EVENTS") or 50_000),
            projection_batch_size=int(env.get("CINEMATE_PROJECTION_BATCH") or 1000),
            projection_source=_source(env.get("CINEMATE_PROJECTION_SOURCE") or "store", kafka),
            projections_in_process=_flag(env, "CINEMATE_PROJECTIONS_IN_PROCESS", default=False),
            http_header_timeout=float(env.get("CINEMATE_HTTP_HEADER_TIMEOUT") or 10.0),
            http_request_timeout=float(env.get("CINEMATE_HTTP_REQUEST_TIMEOUT") or 30.0),
            http_keepalive_timeout=int(env.get("CINEMATE_HTTP_KEEPALIVE_TIMEOUT") or 5),
            http_max_connections=int(env.get("CINEMATE_HTTP_MAX_CONNECTIONS") or 1000),
            model_sha256=frozenset(
                d.lower() for d in (env.get("MODEL_SHA256") or "").replace(",", " ").split()
            ),
        )
