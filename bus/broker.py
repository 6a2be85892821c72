"""A real, local, single-node Apache Kafka (KRaft) broker, resolved from Maven Central.

Jars come from `mvn dependency:copy-dependencies` on `compose/kafka/pom.xml`
into a cache directory; storage is formatted with `kafka.tools.StorageTool`;
the broker runs as ``java -cp 'lib/*' kafka.Kafka server.properties`` bound to
127.0.0.1 only.  State (pid, ports, cluster id) lives in ``<data-dir>/broker.json``
so `up` is idempotent and the log survives `down`/`up`.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import socket
import subprocess
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from tamiyo.bus.processes import pid_alive, set_parent_death_signal, terminate

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_POM = REPO_ROOT / "compose" / "kafka" / "pom.xml"
DEFAULT_DATA_DIR = Path(".tamiyo") / "broker"
STATE_FILE = "broker.json"
KAFKA_MAIN = "kafka.Kafka"


class BrokerError(RuntimeError):
    """A one-line, user-facing reason the local broker cannot be started or stopped."""


@dataclass
class BrokerInfo:
    bootstrap: str
    pid: int
    kafka_version: str
    data_dir: str

    def to_json(self) -> str:
        return json.dumps(asdict(self))


def cache_dir() -> Path:
    return Path(os.environ.get("TAMIYO_CACHE", Path.home() / ".cache" / "tamiyo"))


def pom_path() -> Path:
    return Path(os.environ.get("TAMIYO_KAFKA_POM", DEFAULT_POM))


def pinned_kafka_version(pom: Path) -> str:
    m = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", pom.read_text())
    if not m:
        raise BrokerError(f"{pom} does not pin <kafka.version>")
    return m.group(1).strip()


def java_major_version(java: str) -> int:
    out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60)
    m = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not m:
        raise BrokerError(f"cannot tell the Java version from `{java} -version`")
    major = int(m.group(1))
    return int(m.group(2) or 0) if major == 1 else major


def find_java() -> str:
    java = shutil.which("java")
    if java is None:
        raise BrokerError("Java 17+ is required for the local Kafka broker, but `java` is not on PATH")
    major = java_major_version(java)
    if major < 17:
        raise BrokerError(f"Java 17+ is required for the local Kafka broker, found Java {major} at {java}")
    return java


def resolve_kafka(pom: Path | None = None, quiet: bool = True) -> tuple[Path, str]:
    """Ensure the Kafka jars are cached (Maven resolves them once); returns (lib dir, version)."""
    pom = pom or pom_path()
    if not pom.is_file():
        raise BrokerError(f"Kafka pom not found at {pom} (set TAMIYO_KAFKA_POM)")
    version = pinned_kafka_version(pom)
    lib = cache_dir() / f"kafka-{version}" / "lib"
    marker = lib / ".complete"
    if marker.exists():
        return lib, version
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerError(
            "Maven (`mvn`) is required once to fetch Apache Kafka from Maven Central, but it is not on PATH"
        )
    tmp = lib.with_name(f"lib.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    cmd = [mvn, "-B", "-f", str(pom), "dependency:copy-dependencies", f"-DoutputDirectory={tmp}"]
    if quiet:
        cmd.insert(1, "-q")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-5:]
        raise BrokerError("Maven could not resolve Apache Kafka: " + " | ".join(tail))
    if not list(tmp.glob("kafka_2.13-*.jar")):
        raise BrokerError(f"Maven finished but no kafka_2.13 jar is in {tmp}")
    (tmp / ".complete").write_text(version)
    shutil.rmtree(lib, ignore_errors=True)
    tmp.rename(lib)
    return lib, version


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _is_our_broker(pid: int, data_dir: Path) -> bool:
    """True if ``pid`` is a running Kafka started on this data dir (guards against pid reuse)."""
    if not pid_alive(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return True  # no /proc: trust the pid file
    return KAFKA_MAIN in cmdline and str(data_dir / "server.properties") in cmdline


def _server_properties(data_dir: Path, port: int, controller_port: int) -> str:
    return "\n".join(
        [
            "# Written by `tamiyo broker up`; regenerated on every start.",
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@127.0.0.1:{controller_port}",
            f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{port}",
            "controller.listener.names=CONTROLLER",
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "inter.broker.listener.name=PLAINTEXT",
            f"log.dirs={data_dir / 'logs'}",
            "num.partitions=1",
            "auto.create.topics.enable=false",
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=4",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            "group.initial.rebalance.delay.ms=0",
            f"message.max.bytes={64 << 20}",
            f"replica.fetch.max.bytes={64 << 20}",
            "log.cleaner.backoff.ms=5000",
            "",
        ]
    )


def _log4j2_properties(data_dir: Path) -> str:
    return "\n".join(
        [
            "status = warn",
            "appender.file.type = File",
            "appender.file.name = FILE",
            f"appender.file.fileName = {data_dir / 'broker.log'}",
            "appender.file.layout.type = PatternLayout",
            "appender.file.layout.pattern = [%d] %p %m (%c)%n",
            "rootLogger.level = info",
            "rootLogger.appenderRef.file.ref = FILE",
            "logger.kafka.name = kafka",
            "logger.kafka.level = warn",
            "logger.org.name = org.apache.kafka",
            "logger.org.level = warn",
            "logger.started.name = kafka.server.KafkaRaftServer",
            "logger.started.level = info",
            "",
        ]
    )


def _read_meta_cluster_id(log_dir: Path) -> str | None:
    meta = log_dir / "meta.properties"
    if not meta.exists():
        return None
    for line in meta.read_text().splitlines():
        if line.startswith("cluster.id="):
            return line.split("=", 1)[1].strip()
    return None


class LocalBroker:
    """Start, stop and inspect the local broker that owns ``data_dir``."""

    def __init__(self, data_dir: Path | str = DEFAULT_DATA_DIR, heap_mb: int = 512) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.heap_mb = heap_mb

    # ------------------------------------------------------------ state

    @property
    def state_path(self) -> Path:
        return self.data_dir / STATE_FILE

    def _load_state(self) -> dict | None:
        try:
            return json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            return None

    def _save_state(self, state: dict) -> None:
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self.state_path)

    def running_info(self) -> BrokerInfo | None:
        state = self._load_state()
        if state and state.get("pid") and _is_our_broker(int(state["pid"]), self.data_dir):
            return BrokerInfo(
                bootstrap=f"127.0.0.1:{state['port']}",
                pid=int(state["pid"]),
                kafka_version=str(state["kafka_version"]),
                data_dir=str(self.data_dir),
            )
        return None

    def status(self) -> dict:
        info = self.running_info()
        state = self._load_state() or {}
        return {
            "running": info is not None,
            "bootstrap": info.bootstrap if info else None,
            "pid": info.pid if info else None,
            "kafka_version": state.get("kafka_version"),
            "cluster_id": state.get("cluster_id"),
            "data_dir": str(self.data_dir),
        }

    # ------------------------------------------------------------ up / down

    def up(self, port: int | None = None, timeout_s: float = 90.0, die_with_parent: bool = False) -> BrokerInfo:
        running = self.running_info()
        if running is not None:
            if port is not None and running.bootstrap != f"127.0.0.1:{port}":
                raise BrokerError(f"the broker on {self.data_dir} is already running at {running.bootstrap}")
            return running
        java = find_java()
        lib, version = resolve_kafka()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log_dir = self.data_dir / "logs"
        state = self._load_state() or {}
        on_disk = _read_meta_cluster_id(log_dir)
        if on_disk is not None and on_disk != state.get("cluster_id"):
            raise BrokerError(
                f"data dir {self.data_dir} holds Kafka data of another cluster (cluster.id={on_disk}); "
                "use another --data-dir"
            )
        port = port if port is not None else int(state.get("port", 9092))
        if not port_is_free(port):
            raise BrokerError(f"port {port} on 127.0.0.1 is already in use; pick another with --port")
        controller_port = free_port()
        props = self.data_dir / "server.properties"
        props.write_text(_server_properties(self.data_dir, port, controller_port))
        log4j = self.data_dir / "log4j2.properties"
        log4j.write_text(_log4j2_properties(self.data_dir))
        classpath = f"{lib}/*"
        jvm = [java, f"-Xmx{self.heap_mb}m", f"-Xms{min(256, self.heap_mb)}m", "-XX:+UseG1GC"]
        jvm += ["-Djava.awt.headless=true", f"-Dlog4j2.configurationFile={log4j}"]
        if on_disk is None:
            cluster_id = state.get("cluster_id") or _kafka_cluster_id()
            fmt = subprocess.run(
                [
                    *jvm,
                    "-cp",
                    classpath,
                    "kafka.tools.StorageTool",
                    "format",
                    f"--cluster-id={cluster_id}",
                    "-c",
                    str(props),
                ],
                capture_output=True,
                text=True,
                timeout=120,
            )
            if fmt.returncode != 0:
                raise BrokerError("formatting KRaft storage failed: " + (fmt.stderr or fmt.stdout).strip()[-300:])
            state["cluster_id"] = cluster_id
        out = open(self.data_dir / "broker.out", "ab")  # noqa: SIM115 - handed to the child process
        preexec = set_parent_death_signal if die_with_parent else None
        proc = subprocess.Popen(
            [*jvm, "-cp", classpath, KAFKA_MAIN, str(props)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=preexec,
        )
        out.close()
        state.update(pid=proc.pid, port=port, controller_port=controller_port, kafka_version=version)
        self._save_state(state)
        try:
            _wait_until_serving(proc, port, timeout_s, self.data_dir)
        except BrokerError:
            terminate(proc.pid, grace_s=5)
            raise
        return BrokerInfo(f"127.0.0.1:{port}", proc.pid, version, str(self.data_dir))

    def down(self, grace_s: float = 30.0) -> bool:
        """Stop the broker (controlled shutdown first). Returns False if it was not running."""
        state = self._load_state()
        if not state or not state.get("pid"):
            return False
        pid = int(state["pid"])
        was_running = _is_our_broker(pid, self.data_dir)
        if was_running:
            terminate(pid, grace_s)
        state["pid"] = None
        self._save_state(state)
        return was_running


def _kafka_cluster_id() -> str:
    """16 random bytes, URL-safe base64 without padding (22 chars), as Kafka's own Uuid.

    Like Kafka, never start with '-': command-line parsers would read such an id as an option.
    """
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


def _wait_until_serving(proc: subprocess.Popen, port: int, timeout_s: float, data_dir: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BrokerError(f"Kafka exited with code {proc.returncode}: {_log_tail(data_dir)}")
        if _answers_api_versions(port):
            return
        time.sleep(0.25)
    raise BrokerError(f"Kafka did not answer on 127.0.0.1:{port} within {timeout_s:.0f}s: {_log_tail(data_dir)}")


def _answers_api_versions(port: int) -> bool:
    """Send a Kafka ApiVersions request (v0) and check for a well-formed reply."""
    request = b"\x00\x12\x00\x00\x00\x00\x00\x01\x00\x06tamiyo"  # api_key 18, version 0, corr id 1
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as s:
            s.sendall(len(request).to_bytes(4, "big") + request)
            header = s.recv(8)
            return len(header) == 8 and int.from_bytes(header[4:8], "big") == 1
    except OSError:
        return False


def _log_tail(data_dir: Path, lines: int = 3) -> str:
    for name in ("broker.out", "broker.log"):
        p = data_dir / name
        if p.exists():
            text = [ln for ln in p.read_text(errors="replace").splitlines() if ln.strip()]
            if text:
                return " | ".join(text[-lines:])[-500:]
    return "(no log output)"
