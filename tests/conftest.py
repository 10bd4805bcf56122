"""Real servers for the tests: embedded PostgreSQL and Redis unless URLs are given.

Each test gets a database of its own, copied from a migrated template (fast, isolated).
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from pathlib import Path

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis

from cinemate import database
from cinemate.app import Services, build_app, open_services
from cinemate.infrastructure import Infrastructure
from cinemate.settings import Settings
from devtools.kafka_broker import KafkaBroker
from tests.redis_helpers import PrivateRedis

TEMPLATE = "cinemate_test_template"
_counter = itertools.count()


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cinemate-data")


@pytest.fixture(scope="session")
def infrastructure(data_dir: Path) -> Iterator[Infrastructure]:
    settings = Settings.from_env({**os.environ, "CINEMATE_DATA_DIR": str(data_dir)})
    infra = Infrastructure.start(settings)
    yield infra
    infra.stop()


def url_for_database(url: str, name: str) -> str:
    """The same server, another database."""
    head, sep, query = database.asyncpg_dsn(url).partition("?")
    base = head.rsplit("/", 1)[0]
    return f"{base}/{name}{sep}{query}"


@pytest.fixture(scope="session")
async def template_database(infrastructure: Infrastructure) -> str:
    admin = await asyncpg.connect(database.asyncpg_dsn(infrastructure.database_url))
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {TEMPLATE} WITH (FORCE)")
        await admin.execute(f"CREATE DATABASE {TEMPLATE}")
    finally:
        await admin.close()
    conn = await asyncpg.connect(url_for_database(infrastructure.database_url, TEMPLATE))
    try:
        await database.migrate(conn)
    finally:
        await conn.close()
    return TEMPLATE


@pytest.fixture
async def database_url(infrastructure: Infrastructure, template_database: str) -> str:
    name = f"cinemate_test_{os.getpid()}_{next(_counter)}"
    admin = await asyncpg.connect(database.asyncpg_dsn(infrastructure.database_url))
    try:
        await admin.execute(f"CREATE DATABASE {name} TEMPLATE {template_database}")
    finally:
        await admin.close()
    return url_for_database(infrastructure.database_url, name)


@pytest.fixture
async def settings(data_dir: Path, database_url: str, infrastructure: Infrastructure) -> Settings:
    # Databases are per test; the Redis server is shared, so each test starts it empty.
    redis = aioredis.from_url(infrastructure.redis_url)
    await redis.flushall()
    await redis.aclose()
    return Settings.from_env(
        {
            "CINEMATE_DATA_DIR": str(data_dir),
            "DATABASE_URL": database_url,
            "REDIS_URL": infrastructure.redis_url,
        }
    )


@pytest.fixture
async def services(settings: Settings) -> AsyncIterator[Services]:
    assert settings.database_url and settings.redis_url
    async with AsyncExitStack() as stack:
        yield await open_services(settings, settings.database_url, settings.redis_url, stack)


@pytest.fixture
async def settings_without_projectors(settings: Settings) -> AsyncIterator[Services]:
    """A service whose projections run elsewhere (a worker process, or not at all)."""
    assert settings.database_url and settings.redis_url
    async with AsyncExitStack() as stack:
        yield await open_services(
            settings, settings.database_url, settings.redis_url, stack, run_projections=False
        )


@pytest.fixture
async def client(services: Services) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=build_app(services))
    async with httpx.AsyncClient(transport=transport, base_url="http://cinemate") as http:
        yield http


@pytest.fixture
async def admin_client(services: Services) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the app with ADMIN_TOKEN set, to "s3cret"."""
    secured = dataclasses.replace(
        services, settings=dataclasses.replace(services.settings, admin_token="s3cret")
    )
    transport = httpx.ASGITransport(app=build_app(secured))
    async with httpx.AsyncClient(transport=transport, base_url="http://cinemate") as http:
        yield http


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(database_url)
    yield conn
    await conn.close()


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker | None]:
    """The real broker the Kafka tests share: KAFKA_BOOTSTRAP_SERVERS if set, else one
    started here (KRaft, jars fetched once into the cache)."""
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield None
        return
    broker = KafkaBroker(tmp_path_factory.mktemp("kafka"))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_broker: KafkaBroker | None) -> str:
    return os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or _owned(kafka_broker).bootstrap_servers


@pytest.fixture
def own_broker(kafka_broker: KafkaBroker | None) -> KafkaBroker:
    """For tests that stop the broker: only one this run started (CI always does)."""
    if kafka_broker is None:
        pytest.skip("KAFKA_BOOTSTRAP_SERVERS names a broker these tests cannot stop")
    return kafka_broker


def _owned(broker: KafkaBroker | None) -> KafkaBroker:
    assert broker is not None
    return broker


@pytest.fixture
async def private_redis(tmp_path: Path) -> AsyncIterator[PrivateRedis]:
    """A Redis server of the test's own, to stop, freeze and restart."""
    server = PrivateRedis(tmp_path / "redis")
    server.start()
    yield server
    server.stop()
