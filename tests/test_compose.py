"""compose.yaml runs the whole service with the seed's host names and settings."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import yaml

from cinemate.embedded import POSTGRES_SETTINGS

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
        "prometheus",
        "grafana",
    }
    for name in ("interaction-db", "cinemate-redis", "cinemate-broker", "api"):
        assert services[name]["healthcheck"]["test"], name
    assert services["interaction-db"]["image"].startswith("postgres:16")
    assert services["cinemate-redis"]["image"].startswith("redis:7")
    broker = services["cinemate-broker"]
    assert broker["image"].startswith("apache/kafka:4")
    assert broker["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"


def test_the_database_runs_with_the_embedded_servers_settings() -> None:
    command = compose()["services"]["interaction-db"]["command"]
    assert command[0] == "postgres" and command[1::2] == ["-c"] * len(POSTGRES_SETTINGS)
    assert dict(arg.split("=", 1) for arg in command[2::2]) == POSTGRES_SETTINGS


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


def test_prometheus_scrapes_the_api_and_grafana_is_provisioned() -> None:
    services = compose()["services"]
    config = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    [job] = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    [target] = [t for group in job["static_configs"] for t in group["targets"]]
    host, port = target.split(":")
    assert host in services and host == "api"
    assert services["api"]["command"][-2:] == ["--port", port]
    mounted = {v.split(":")[0]: v.split(":")[1] for v in services["prometheus"]["volumes"]}
    assert mounted["./deploy/prometheus.yml"] == "/etc/prometheus/prometheus.yml"
    grafana = {v.split(":")[0]: v.split(":")[1] for v in services["grafana"]["volumes"]}
    provisioning = ROOT / "deploy" / "grafana" / "provisioning"
    [source] = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())[
        "datasources"
    ]
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    assert "9090:9090" in services["prometheus"]["ports"]
    [provider] = yaml.safe_load((provisioning / "dashboards" / "cinemate.yml").read_text())[
        "providers"
    ]
    assert grafana["./deploy/grafana/dashboards"] == provider["options"]["path"]
    assert grafana["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"


def dashboard_metrics() -> set[str]:
    board = json.loads((ROOT / "deploy" / "grafana" / "dashboards" / "cinemate.json").read_text())
    assert board["panels"]
    names: set[str] = set()
    for panel in board["panels"]:
        assert panel["datasource"]["uid"] == "prometheus", panel["title"]
        found = {n for t in panel["targets"] for n in re.findall(r"cinemate_\w+", t["expr"])}
        assert found, panel["title"]
        names |= found
    return names


async def test_every_dashboard_metric_is_exported(client: httpx.AsyncClient) -> None:
    # One of each kind of request first, so every labelled series has samples.
    watch = {"user_id": "u1", "movie_id": "m1", "progress": 0.9}
    assert (await client.post("/api/v1/events/watch", json=watch)).status_code == 202
    assert (await client.get("/api/v1/recommend/u1")).status_code == 200
    exported = {
        line.split("{")[0].split(" ")[0]
        for line in (await client.get("/metrics")).text.splitlines()
        if line and not line.startswith("#")
    }
    exported |= {
        line.split(" ")[2]
        for line in (await client.get("/metrics")).text.splitlines()
        if line.startswith("# TYPE")
    }
    missing = dashboard_metrics() - exported
    assert not missing, sorted(missing)
