"""compose.yaml runs the whole service with the seed's host names and settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent


def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return document


def test_services_and_health_checks() -> None:
    services = compose()["services"]
    assert set(services) == {
        "interaction-db",
        "cinemate-redis",
        "cinemate-broker",
        "api",
        "worker",
        "relay",
    }
    for name in ("interaction-db", "cinemate-redis", "cinemate-broker", "api"):
        assert services[name]["healthcheck"]["test"], name
    assert services["interaction-db"]["image"].startswith("postgres:16")
    assert services["cinemate-redis"]["image"].startswith("redis:7")
    broker = services["cinemate-broker"]
    assert broker["image"].startswith("apache/kafka:4")
    assert broker["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"


def test_the_apps_point_at_the_seed_host_names() -> None:
    services = compose()["services"]
    for name in ("api", "worker", "relay"):
        env = services[name]["environment"]
        assert "@interaction-db:5432/" in env["DATABASE_URL"]
        assert env["DATABASE_URL"].startswith("postgresql+asyncpg://")
        assert env["REDIS_URL"].startswith("redis://cinemate-redis:6379")
        assert env["KAFKA_BOOTSTRAP_SERVERS"] == "cinemate-broker:9092"
        assert set(services[name]["depends_on"]) == {
            "interaction-db",
            "cinemate-redis",
            "cinemate-broker",
        }
    assert services["api"]["environment"]["ENABLE_CONSUMERS"] == "false"
    assert services["worker"]["command"] == ["cinemate", "worker", "--source", "kafka"]
    assert services["worker"]["deploy"]["replicas"] >= 2
    assert "ENABLE_KAFKA" not in services["api"]["environment"]  # forgetting sends tombstones
    assert services["relay"]["command"] == ["cinemate", "relay"]


def test_dockerfile_is_pinned_and_non_root() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    for base in (line for line in dockerfile.splitlines() if line.startswith("FROM ")):
        assert ":" in base and "latest" not in base
    assert "\nUSER cinemate" in dockerfile
