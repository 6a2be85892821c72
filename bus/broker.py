"""A real, local, single-node Apache Kafka (KRaft) broker, resolved from Maven Central.

Jars and Java: `tamiyo.bus.kafka_dist`; the broker's config files: `tamiyo.bus.broker_files`.
Storage is formatted with `kafka.tools.StorageTool`; the broker runs as
``java -cp 'lib/*' kafka.Kafka server.properties`` bound to 127.0.0.1 only.  State (pid, ports,
cluster id, mode) lives in ``<data-dir>/broker.json`` so `up` is idempotent and the log survives
`down`/`up`.  ``up(secure=True)`` runs it with TLS, SCRAM and ACLs (`tamiyo.bus.broker_security`);
a data dir keeps the mode it was formatted with (SCRAM credentials exist only from format time).
"""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from tamiyo.bus.broker_files import (
    log4j2_properties,
    new_cluster_id,
    secure_server_properties,
    server_properties,
    stored_cluster_id,
)
from tamiyo.bus.broker_security import (
    ROLES,
    SCRAM_MECHANISM,
    SecurityFiles,
    ensure_security,
    read_credentials,
    scram_format_arguments,
    write_argument_file,
)
from tamiyo.bus.clients import KafkaSettings
from tamiyo.bus.kafka_dist import (
    DEFAULT_POM,
    REPO_ROOT,
    BrokerError,
    cache_dir,
    find_java,
    java_major_version,
    pinned_kafka_version,
    pom_path,
    resolve_kafka,
)
from tamiyo.bus.processes import pid_alive, set_parent_death_signal, terminate

__all__ = [
    "DEFAULT_DATA_DIR",
    "DEFAULT_POM",
    "DEFAULT_SECURE_DATA_DIR",
    "KAFKA_MAIN",
    "REPO_ROOT",
    "STATE_FILE",
    "BrokerError",
    "BrokerInfo",
    "LocalBroker",
    "cache_dir",
    "find_java",
    "free_port",
    "java_major_version",
    "pinned_kafka_version",
    "pom_path",
    "port_is_free",
    "resolve_kafka",
]

DEFAULT_DATA_DIR = Path(".tamiyo") / "broker"
DEFAULT_SECURE_DATA_DIR = Path(".tamiyo") / "secure-broker"
STATE_FILE = "broker.json"
KAFKA_MAIN = "kafka.Kafka"


@dataclass
class BrokerInfo:
    bootstrap: str
    pid: int
    kafka_version: str
    data_dir: str
    security_protocol: str = "PLAINTEXT"  # SASL_SSL for a secure broker
    ca_file: str | None = None  # secure: the CA to verify the broker with
    credentials: dict[str, str] | None = None  # secure: role -> its credentials file (paths, never values)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    def settings(self, role: str) -> KafkaSettings:
        """Client settings for this broker as service role ``role`` (any role on a plaintext broker)."""
        if self.security_protocol == "PLAINTEXT":
            return KafkaSettings(self.bootstrap)
        if self.credentials is None or role not in self.credentials:
            raise BrokerError(f"no credentials for role {role!r} (roles: {', '.join(ROLES)})")
        try:
            creds = read_credentials(Path(self.credentials[role]))
        except ValueError as err:
            raise BrokerError(str(err)) from None
        return KafkaSettings(
            self.bootstrap,
            security_protocol="SASL_SSL",
            sasl_mechanism=creds.get("sasl_mechanism", SCRAM_MECHANISM),
            sasl_username=creds["username"],
            sasl_password=creds["password"],
            ssl_cafile=self.ca_file,
        )


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
            return self._info(state)
        return None

    @property
    def security(self) -> SecurityFiles:
        return SecurityFiles(self.data_dir / "security")

    def _info(self, state: dict) -> BrokerInfo:
        info = BrokerInfo(
            f"127.0.0.1:{state['port']}", int(state["pid"]), str(state["kafka_version"]), str(self.data_dir)
        )
        if state.get("secure"):
            sec = self.security
            info.security_protocol, info.ca_file = "SASL_SSL", str(sec.ca)
            info.credentials = {role: str(sec.credentials(role)) for role in ROLES}
        return info

    def last_port(self) -> int | None:
        """The client port the broker on this data dir last ran on (running or not); None if it never ran."""
        state = self._load_state()
        port = state.get("port") if state else None
        return int(port) if port else None

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
            "mode": "secure" if state.get("secure") else ("plaintext" if state else None),
            "security_protocol": info.security_protocol if info else None,
            "ca_file": info.ca_file if info else None,
            "credentials": info.credentials if info else None,
        }

    # ------------------------------------------------------------ up / down

    def up(
        self, port: int | None = None, timeout_s: float = 90.0, die_with_parent: bool = False, secure: bool = False
    ) -> BrokerInfo:
        running = self.running_info()
        if running is not None:
            if port is not None and running.bootstrap != f"127.0.0.1:{port}":
                raise BrokerError(f"the broker on {self.data_dir} is already running at {running.bootstrap}")
            if secure != (running.security_protocol != "PLAINTEXT"):
                raise BrokerError(f"the broker on {self.data_dir} is already running {self._mode_name(not secure)}")
            return running
        java = find_java()
        lib, version = resolve_kafka()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        state = self._load_state() or {}
        on_disk = stored_cluster_id(self.data_dir / "logs")
        if on_disk is not None and on_disk != state.get("cluster_id"):
            raise BrokerError(
                f"data dir {self.data_dir} holds Kafka data of another cluster (cluster.id={on_disk}); "
                "use another --data-dir"
            )
        if on_disk is not None and bool(state.get("secure")) != secure:
            raise BrokerError(
                f"data dir {self.data_dir} was formatted for a {self._mode_name(bool(state.get('secure')))} broker; "
                "use another --data-dir"
            )
        port = port if port is not None else int(state.get("port", 9092))
        if not port_is_free(port):
            raise BrokerError(f"port {port} on 127.0.0.1 is already in use; pick another with --port")
        controller_port = free_port()
        props = self.data_dir / "server.properties"
        scram: list[str] = []
        if secure:
            try:
                sec = ensure_security(self.security.directory, formatted=on_disk is not None)
            except (OSError, ValueError) as err:
                raise BrokerError(str(err)) from None
            text = secure_server_properties(self.data_dir, port, free_port(), controller_port, sec)
            scram = scram_format_arguments(sec) if on_disk is None else []
        else:
            text = server_properties(self.data_dir, port, controller_port)
        props.write_text(text)
        props.chmod(0o600)
        log4j = self.data_dir / "log4j2.properties"
        log4j.write_text(log4j2_properties(self.data_dir))
        classpath = f"{lib}/*"
        jvm = [java, f"-Xmx{self.heap_mb}m", f"-Xms{min(256, self.heap_mb)}m", "-XX:+UseG1GC"]
        jvm += ["-Djava.awt.headless=true", f"-Dlog4j2.configurationFile={log4j}"]
        if on_disk is None:
            cluster_id = state.get("cluster_id") or new_cluster_id()
            _format_storage([*jvm, "-cp", classpath], cluster_id, props, scram, self.security.directory)
            state["cluster_id"] = cluster_id
            state["secure"] = secure
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
            _wait_until_serving(proc, port, timeout_s, self.data_dir, self.security.ca if secure else None)
        except BrokerError:
            terminate(proc.pid, grace_s=5)
            raise
        return self._info(state)

    @staticmethod
    def _mode_name(secure: bool) -> str:
        return "secure (SASL_SSL)" if secure else "plaintext"

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


def _format_storage(java_cp: list[str], cluster_id: str, props: Path, secret_args: list[str], secret_dir: Path) -> None:
    """Format the KRaft storage ``props`` names with ``cluster_id`` (``java_cp``: java, its flags, -cp).
    ``secret_args`` (a secure broker's SCRAM credentials) go in a 0600 ``@file`` in ``secret_dir``,
    deleted afterwards, so no other user can read them off the process list."""
    argfile = write_argument_file(secret_dir, secret_args) if secret_args else None
    try:
        fmt = subprocess.run(
            [*java_cp, "kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}", "-c", str(props),
             *([f"@{argfile}"] if argfile else [])],
            capture_output=True,
            text=True,
            timeout=120,
        )  # fmt: skip
    finally:
        if argfile is not None:
            argfile.unlink(missing_ok=True)
    if fmt.returncode != 0:
        lines = (fmt.stderr or fmt.stdout).strip().splitlines()
        shown = [ln for ln in lines if "scram" not in ln.lower()]  # never echo a credential back
        raise BrokerError("formatting KRaft storage failed: " + " | ".join(shown)[-300:])


def _wait_until_serving(proc: subprocess.Popen, port: int, timeout_s: float, data_dir: Path, ca: Path | None) -> None:
    """Until the broker answers an ApiVersions request (over TLS verified with ``ca`` when given)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BrokerError(f"Kafka exited with code {proc.returncode}: {_log_tail(data_dir)}")
        if _answers_api_versions(port, ca):
            return
        time.sleep(0.25)
    raise BrokerError(f"Kafka did not answer on 127.0.0.1:{port} within {timeout_s:.0f}s: {_log_tail(data_dir)}")


def _answers_api_versions(port: int, ca: Path | None = None) -> bool:
    """Send a Kafka ApiVersions request (v0) and check for a well-formed reply; with ``ca``, over TLS
    (a SASL_SSL listener answers ApiVersions before authentication)."""
    request = b"\x00\x12\x00\x00\x00\x00\x00\x01\x00\x06tamiyo"  # api_key 18, version 0, corr id 1
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as raw:
            s = ssl.create_default_context(cafile=str(ca)).wrap_socket(raw, server_hostname="127.0.0.1") if ca else raw
            s.sendall(len(request).to_bytes(4, "big") + request)
            header = s.recv(8)
            return len(header) == 8 and int.from_bytes(header[4:8], "big") == 1
    except OSError:  # ssl.SSLError is an OSError
        return False


def _log_tail(data_dir: Path, lines: int = 3) -> str:
    for name in ("broker.out", "broker.log"):
        p = data_dir / name
        if p.exists():
            text = [ln for ln in p.read_text(errors="replace").splitlines() if ln.strip()]
            if text:
                return " | ".join(text[-lines:])[-500:]
    return "(no log output)"
