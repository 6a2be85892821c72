"""Apache Kafka for the local broker: its jars, resolved once from Maven Central, and a Java to run them.

The jars come from `mvn dependency:copy-dependencies` on `compose/kafka/pom.xml` (override with
``TAMIYO_KAFKA_POM``) into ``<cache>/kafka-<version>/lib`` (``TAMIYO_CACHE``, default
``~/.cache/tamiyo``).  `BrokerError` lives here, at the bottom of the broker's modules, so each of
them can raise it; callers import it from `tamiyo.bus.broker`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_POM = REPO_ROOT / "compose" / "kafka" / "pom.xml"


class BrokerError(RuntimeError):
    """A one-line, user-facing reason the local broker cannot be started or stopped."""


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
