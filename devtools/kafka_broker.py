"""A real Apache Kafka broker (4.x, KRaft mode, no ZooKeeper) for development and tests.

No Docker: the broker jars are fetched once with Maven (``mvn``) into a cache directory and
the broker runs as a plain ``java`` subprocess with a single combined broker/controller node.

Layout of a broker data dir::

    server.properties    generated on every start
    log4j2.properties    logging config (broker logs go to kafka.log, never to the console)
    kafka.log            broker log (log4j2)
    broker.out           JVM stdout/stderr (crashes, OOM, ...)
    broker.json          persisted cluster id and ports (a restart reuses the same ports)
    broker.pid           pid of the running broker (its own process group)
    kraft/               KRaft metadata log and topic data (formatted once)

Python::

    with KafkaBroker(Path("/tmp/k")) as broker:
        print(broker.bootstrap_servers)     # "127.0.0.1:PORT"

CLI::

    python -m devtools.kafka_broker fetch
    python -m devtools.kafka_broker start [--data-dir DIR] [--port N]   # foreground
    python -m devtools.kafka_broker stop  [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import concurrent.futures
import contextlib
import fcntl
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType

DEFAULT_VERSION = "4.1.1"
# Kafka 4.x logs through slf4j 1.7 and ships log4j2 (api + core) but no slf4j binding;
# without log4j-slf4j-impl nothing is logged at all.
LOG4J_VERSION = "2.24.3"
MAVEN_DEPENDENCY_PLUGIN_VERSION = "3.8.1"
NODE_ID = 1
DEFAULT_HEAP = "512m"
HOST = "127.0.0.1"

CACHE_ENV = "CINEMATE_KAFKA_CACHE"
DATA_ENV = "CINEMATE_KAFKA_DATA"

_MARKER = ".fetched"


class KafkaBrokerError(RuntimeError):
    """The broker could not be fetched, formatted, started or stopped."""


def cache_root() -> Path:
    """Root of the jar cache: $CINEMATE_KAFKA_CACHE or ~/.cache/cinemate/kafka."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "cinemate" / "kafka"


def default_data_dir() -> Path:
    """Data dir used by the CLI: $CINEMATE_KAFKA_DATA or ~/.local/state/cinemate/kafka."""
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".local" / "state" / "cinemate" / "kafka"


def _pom(version: str) -> str:
    deps = [
        ("org.apache.kafka", "kafka_2.13", version),
        ("org.apache.logging.log4j", "log4j-api", LOG4J_VERSION),
        ("org.apache.logging.log4j", "log4j-core", LOG4J_VERSION),
        ("org.apache.logging.log4j", "log4j-slf4j-impl", LOG4J_VERSION),
    ]
    dep_xml = "\n".join(
        f"    <dependency><groupId>{g}</groupId><artifactId>{a}</artifactId>"
        f"<version>{v}</version></dependency>"
        for g, a, v in deps
    )
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<project>
  <modelVersion>4.0.0</modelVersion>
  <groupId>cinemate</groupId>
  <artifactId>kafka-broker-libs</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
{dep_xml}
  </dependencies>
  <build>
    <plugins>
      <plugin>
        <groupId>org.apache.maven.plugins</groupId>
        <artifactId>maven-dependency-plugin</artifactId>
        <version>{MAVEN_DEPENDENCY_PLUGIN_VERSION}</version>
      </plugin>
    </plugins>
  </build>
</project>
"""


def fetch_kafka(version: str = DEFAULT_VERSION) -> Path:
    """Download kafka_2.13:<version> and its runtime deps with mvn; return the libs dir.

    Cached: once the marker file exists, nothing is done. Safe against concurrent callers.
    """
    vdir = cache_root() / version
    libs = vdir / "libs"
    marker = vdir / _MARKER
    if marker.exists():
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise KafkaBrokerError("mvn not found on PATH (needed once to fetch the Kafka jars)")
    vdir.mkdir(parents=True, exist_ok=True)
    with open(vdir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists():
            return libs
        shutil.rmtree(libs, ignore_errors=True)
        (vdir / "pom.xml").write_text(_pom(version))
        cmd = [
            mvn, "-q", "-B", "-f", str(vdir / "pom.xml"),
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={libs}",
        ]  # fmt: skip
        res = subprocess.run(cmd, cwd=vdir, capture_output=True, text=True)
        if res.returncode != 0 or not any(libs.glob("kafka_2.13-*.jar")):
            out = (res.stdout + res.stderr).strip().splitlines()[-30:]
            raise KafkaBrokerError(
                f"fetching Kafka {version} with mvn failed (rc={res.returncode}):\n"
                + "\n".join(out)
            )
        marker.write_text(f"{version}\n")
    return libs


def free_port(host: str = HOST) -> int:
    """A port nothing uses, below the kernel's ephemeral range when there is room: a port
    bind(0) picks comes from that range, where any outgoing connection may take it before
    the server meant to listen there binds (a busy shared machine: a load generator opens
    a thousand connections a second)."""
    low = _ephemeral_low()
    candidates = range(10_000, low) if low > 11_000 else range(0)
    for port in random.sample(candidates, min(64, len(candidates))):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def port_is_free(port: int, host: str = HOST) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def _tcp_open(port: int, host: str = HOST) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _random_cluster_id() -> str:
    # Kafka's Uuid string form: url-safe base64 of 16 bytes without padding.
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


def _pid_is_broker(pid: int, config: Path) -> bool:
    """True if pid is alive and is the Kafka broker JVM of ``config`` (guards against pid reuse)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"kafka.Kafka" in cmdline and os.fsencode(config) in cmdline


def _metadata_ready(bootstrap: str, timeout: float) -> bool:
    """aiokafka admin round-trips: the broker is in the cluster metadata (i.e. unfenced) and
    every existing partition has a leader again (after a restart, leaders are re-elected
    shortly after the broker is unfenced)."""

    async def probe() -> bool:
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(
            bootstrap_servers=bootstrap,
            client_id="cinemate-kafka-probe",
            request_timeout_ms=int(timeout * 1000),
        )
        try:
            await admin.start()
            info = await admin.describe_cluster()
            if not any(b["node_id"] == NODE_ID for b in info["brokers"]):
                return False
            topics = await admin.describe_topics()
            return all(
                t["error_code"] == 0
                and all(p["error_code"] == 0 and p["leader"] == NODE_ID for p in t["partitions"])
                for t in topics
            )
        except Exception:
            return False
        finally:
            with contextlib.suppress(Exception):
                await admin.close()

    # Own thread + event loop: works whether or not the caller runs an event loop.
    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        return ex.submit(asyncio.run, probe()).result()


class KafkaBroker:
    """One combined KRaft broker/controller on 127.0.0.1, data in ``data_dir``."""

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        version: str = DEFAULT_VERSION,
        *,
        heap: str = DEFAULT_HEAP,
        extra_config: Mapping[str, str] | None = None,
    ) -> None:
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.version = version
        self.heap = heap
        self.extra_config = dict(extra_config or {})
        self._proc: subprocess.Popen[bytes] | None = None
        self.returncode: int | None = None  # exit code of the last broker this object started
        state = self._read_state()
        cid = state.get("cluster_id")
        self.cluster_id: str = cid if isinstance(cid, str) and cid else _random_cluster_id()
        saved_port = state.get("port")
        self.port: int = port or (saved_port if isinstance(saved_port, int) else 0) or free_port()
        cport = state.get("controller_port")
        if not isinstance(cport, int) or not cport or cport == self.port:
            cport = free_port()
        self.controller_port: int = cport

    # -- paths ---------------------------------------------------------------------------
    @property
    def log_file(self) -> Path:
        return self.data_dir / "kafka.log"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "broker.pid"

    @property
    def _state_file(self) -> Path:
        return self.data_dir / "broker.json"

    @property
    def _server_properties(self) -> Path:
        return self.data_dir / "server.properties"

    @property
    def _kraft_dir(self) -> Path:
        return self.data_dir / "kraft"

    @property
    def bootstrap_servers(self) -> str:
        return f"{HOST}:{self.port}"

    # -- lifecycle -----------------------------------------------------------------------
    def fetch(self) -> Path:
        return fetch_kafka(self.version)

    def start(self, timeout: float = 60) -> str:
        """Start the broker (fetch + format if needed), wait until ready, return bootstrap."""
        if self.is_running():
            raise KafkaBrokerError(f"a broker already runs for {self.data_dir} (pid {self.pid})")
        libs = self.fetch()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not port_is_free(self.port):
            raise KafkaBrokerError(f"port {self.port} on {HOST} is already in use")
        if not port_is_free(self.controller_port):
            self.controller_port = free_port()
        self._write_state()
        self._write_configs()
        self._format(libs)

        out = open(self.data_dir / "broker.out", "ab")
        try:
            self._proc = subprocess.Popen(
                [*self._java(libs), "kafka.Kafka", str(self._server_properties)],
                cwd=self.data_dir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: Ctrl-C in the terminal spares it
            )
        finally:
            out.close()
        self.pid_file.write_text(f"{self._proc.pid}\n")
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.kill()
            raise
        return self.bootstrap_servers

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM (clean shutdown), wait up to ``timeout`` s, then SIGKILL."""
        pid = self.pid
        if pid is None:
            return
        self._signal(pid, signal.SIGTERM)
        if not self._wait_exit(pid, timeout):
            self._signal(pid, signal.SIGKILL)
            self._wait_exit(pid, 10)
        self._forget()

    def kill(self) -> None:
        """SIGKILL the broker (simulates a crash); the data dir stays usable."""
        pid = self.pid
        if pid is None:
            return
        self._signal(pid, signal.SIGKILL)
        self._wait_exit(pid, 10)
        self._forget()

    def restart(self, timeout: float = 60) -> str:
        """Clean stop, then start again on the same port and data dir."""
        self.stop()
        return self.start(timeout)

    def is_running(self) -> bool:
        return self.pid is not None

    @property
    def pid(self) -> int | None:
        """Pid of the running broker, started by this object or found in the pid file."""
        if self._proc is not None:
            if self._proc.poll() is None:
                return self._proc.pid
            self._forget()
            return None
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _pid_is_broker(pid, self._server_properties) else None

    def __enter__(self) -> KafkaBroker:
        if not self.is_running():
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def log_tail(self, lines: int = 30) -> str:
        parts = []
        for f in (self.data_dir / "broker.out", self.log_file):
            with contextlib.suppress(OSError):
                text = f.read_text(errors="replace").strip()
                if text:
                    parts.append(f"--- {f.name} ---\n" + "\n".join(text.splitlines()[-lines:]))
        return "\n".join(parts) or "(no broker output)"

    # -- internals -----------------------------------------------------------------------
    def _java(self, libs: Path) -> list[str]:
        java = shutil.which("java")
        if java is None:
            raise KafkaBrokerError("java not found on PATH (Java 17+ is needed)")
        return [
            java,
            f"-Xmx{self.heap}",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={self.data_dir}",
            "-cp",
            f"{libs}/*",
        ]

    def _read_state(self) -> dict[str, object]:
        try:
            state = json.loads(self._state_file.read_text())
        except (OSError, ValueError):
            return {}
        return state if isinstance(state, dict) else {}

    def _write_state(self) -> None:
        state = {
            "cluster_id": self.cluster_id,
            "port": self.port,
            "controller_port": self.controller_port,
            "version": self.version,
        }
        self._state_file.write_text(json.dumps(state, indent=2) + "\n")

    def _config(self) -> dict[str, str]:
        cfg = {
            "process.roles": "broker,controller",
            "node.id": str(NODE_ID),
            "listeners": f"PLAINTEXT://{HOST}:{self.port},CONTROLLER://{HOST}:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{HOST}:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "controller.quorum.voters": f"{NODE_ID}@{HOST}:{self.controller_port}",
            "log.dirs": str(self._kraft_dir),
            "num.partitions": "3",
            "auto.create.topics.enable": "true",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "5",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            # After a crash (SIGKILL) the restarted broker has to wait for its old registration
            # session to expire before it is unfenced: 9 s by default, ~2 s with these.
            "broker.session.timeout.ms": "3000",
            "broker.heartbeat.interval.ms": "1000",
        }
        cfg.update(self.extra_config)
        return cfg

    def _write_configs(self) -> None:
        props = "".join(f"{k}={v}\n" for k, v in self._config().items())
        self._server_properties.write_text(props)
        (self.data_dir / "log4j2.properties").write_text(
            f"""status = error
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = {self.log_file}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.file.ref = FILE
logger.raft.name = kafka.server.KafkaRaftServer
logger.raft.level = INFO
logger.broker.name = kafka.server.BrokerServer
logger.broker.level = INFO
logger.controller.name = kafka.server.ControllerServer
logger.controller.level = INFO
"""
        )

    def _format(self, libs: Path) -> None:
        """Format the KRaft storage once per data dir."""
        if (self._kraft_dir / "meta.properties").exists():
            return
        cmd = [
            *self._java(libs), "kafka.tools.StorageTool", "format",
            "--ignore-formatted",
            "--cluster-id", self.cluster_id,
            "--config", str(self._server_properties),
        ]  # fmt: skip
        res = subprocess.run(cmd, cwd=self.data_dir, capture_output=True, text=True)
        if res.returncode != 0:
            raise KafkaBrokerError(
                f"formatting KRaft storage failed (rc={res.returncode}):\n{res.stdout}{res.stderr}"
            )

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            proc = self._proc
            if proc is None or proc.poll() is not None:
                rc = None if proc is None else proc.returncode
                raise KafkaBrokerError(
                    f"Kafka broker exited during startup (rc={rc}).\n{self.log_tail()}"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise KafkaBrokerError(
                    f"Kafka broker not ready on {self.bootstrap_servers} after {timeout:.0f}s.\n"
                    f"{self.log_tail()}"
                )
            if _tcp_open(self.port) and _metadata_ready(
                self.bootstrap_servers, min(5.0, max(remaining, 1.0))
            ):
                return
            time.sleep(0.2)

    def _signal(self, pid: int, sig: signal.Signals) -> None:
        # The broker leads its own process group (start_new_session); signal the group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)

    def _wait_exit(self, pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        proc = self._proc if self._proc is not None and self._proc.pid == pid else None
        while time.monotonic() < deadline:
            if proc is not None:
                if proc.poll() is not None:
                    return True
            elif not _pid_is_broker(pid, self._server_properties):
                return True
            time.sleep(0.05)
        return False

    def _forget(self) -> None:
        if self._proc is not None:
            with contextlib.suppress(Exception):
                self._proc.wait(timeout=1)
            self.returncode = self._proc.returncode
        self._proc = None
        with contextlib.suppress(OSError):
            self.pid_file.unlink()


@contextlib.contextmanager
def running_broker(
    data_dir: Path, port: int | None = None, version: str = DEFAULT_VERSION
) -> Iterator[KafkaBroker]:
    """Start a broker for the duration of the block, stop it afterwards."""
    broker = KafkaBroker(data_dir, port=port, version=version)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


# -- CLI ---------------------------------------------------------------------------------
def _cmd_fetch(args: argparse.Namespace) -> int:
    t0 = time.monotonic()
    libs = fetch_kafka(args.version)
    jars = list(libs.glob("*.jar"))
    size = sum(j.stat().st_size for j in jars) / 1e6
    print(f"{libs}  ({len(jars)} jars, {size:.0f} MB, {time.monotonic() - t0:.1f}s)")
    return 0


def _cmd_start(args: argparse.Namespace) -> int:
    broker = KafkaBroker(args.data_dir, port=args.port, version=args.version, heap=args.heap)
    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        bootstrap = broker.start(timeout=args.timeout)
    except KafkaBrokerError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(bootstrap, flush=True)
    while not stopping and broker.is_running():
        time.sleep(0.2)
    if stopping:
        broker.stop()
        return 0
    if broker.returncode in (0, 143, -signal.SIGTERM):  # stopped from another shell
        print("Kafka broker stopped.", file=sys.stderr)
        return 0
    print(f"Kafka broker exited (rc={broker.returncode}).\n{broker.log_tail()}", file=sys.stderr)
    return 1


def _cmd_stop(args: argparse.Namespace) -> int:
    broker = KafkaBroker(args.data_dir, version=args.version)
    if not broker.is_running():
        print(f"no broker running for {broker.data_dir}")
        return 0
    broker.stop(timeout=args.timeout)
    print(f"stopped broker on {broker.bootstrap_servers}")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    broker = KafkaBroker(args.data_dir, version=args.version)
    if broker.is_running():
        print(f"running pid={broker.pid} bootstrap={broker.bootstrap_servers}")
        return 0
    print("stopped")
    return 3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.kafka_broker",
        description="Real Apache Kafka broker (KRaft, single node, no Docker) for dev and tests. "
        f"Jars are fetched once with mvn into ${CACHE_ENV} (default ~/.cache/cinemate/kafka).",
        epilog="examples:\n"
        "  python -m devtools.kafka_broker fetch\n"
        "  python -m devtools.kafka_broker start --data-dir /tmp/kafka --port 9092\n"
        "  python -m devtools.kafka_broker stop --data-dir /tmp/kafka   # from another shell\n"
        "  python -m devtools.kafka_broker --version 4.0.0 fetch",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", default=DEFAULT_VERSION, help="Kafka version (%(default)s)")
    sub = parser.add_subparsers(dest="command", required=True)

    def data_dir_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--data-dir",
            type=Path,
            default=default_data_dir(),
            help=f"broker data dir (default ${DATA_ENV} or %(default)s)",
        )

    p = sub.add_parser("fetch", help="download the Kafka jars with mvn (cached)")
    p.set_defaults(func=_cmd_fetch)

    p = sub.add_parser(
        "start",
        help="run a broker in the foreground until SIGTERM/Ctrl-C; prints the bootstrap address",
    )
    data_dir_arg(p)
    p.add_argument(
        "--port", type=int, default=None, help="PLAINTEXT port (default: last used or a free one)"
    )
    p.add_argument("--heap", default=DEFAULT_HEAP, help="JVM max heap (%(default)s)")
    p.add_argument("--timeout", type=float, default=60, help="startup timeout in s (%(default)s)")
    p.set_defaults(func=_cmd_start)

    p = sub.add_parser("stop", help="stop the broker of a data dir (e.g. from another shell)")
    data_dir_arg(p)
    p.add_argument("--timeout", type=float, default=20, help="SIGTERM grace period in s")
    p.set_defaults(func=_cmd_stop)

    p = sub.add_parser("status", help="exit 0 if a broker runs for the data dir, else 3")
    data_dir_arg(p)
    p.set_defaults(func=_cmd_status)

    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
