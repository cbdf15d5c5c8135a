"""The embedded broker: a single-node Apache Kafka in KRaft combined mode.

One JVM is both broker and controller. Its log dirs live under
``KAIROS_DATA_DIR/kafka``, so a restart keeps every topic; the first start
formats them (what Kafka's ``kafka-storage.sh format`` does). The jars come
from Maven Central through ``deploy/kafka/pom.xml`` (``make`` runs
``python -m streams.tools.broker fetch`` once; Maven caches them in ``~/.m2``).
Used when ``KAIROS_BROKER_URL`` is unset; production points that setting at
a Kafka cluster instead.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from streams.errors import BrokerError, ProcessFailed
from streams.tools.kafka_probe import broker_ready
from streams.tools.process import ManagedProcess, free_port, port_open

if TYPE_CHECKING:
    from streams.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]
POM = REPO_ROOT / "deploy" / "kafka" / "pom.xml"
DEFAULT_LIB = REPO_ROOT / ".tools" / "kafka" / "lib"
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies"
READY_TIMEOUT_S = 60.0
# From Kafka's bin/kafka-run-class.sh, with a heap that fits beside vLLM.
JVM_FLAGS = [
    "-server", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35", "-XX:+ExplicitGCInvokesConcurrent",
    "-Djava.awt.headless=true",
]  # fmt: skip
# One small machine: the internal topics get one partition and one replica
# (offsets' default is 50 partitions), no initial rebalance delay (3 s by
# default, on every first join), a cleaner buffer of 16 MiB (128 MiB by
# default, allocated on the heap).
SMALL_MACHINE = {
    "offsets.topic.replication.factor": "1",
    "offsets.topic.num.partitions": "1",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "transaction.state.log.num.partitions": "1",
    "share.coordinator.state.topic.replication.factor": "1",
    "group.initial.rebalance.delay.ms": "0",
    "log.cleaner.dedupe.buffer.size": str(16 * 1024 * 1024),
    "log.initial.task.delay.ms": "0",
    # Topics are created with their configs by `kairos topics create`.
    "auto.create.topics.enable": "false",
}


@dataclass(frozen=True)
class Listener:
    """A listener beside PLAINTEXT, for example SASL_SSL to test the
    clients against: its name, port and security protocol, the broker
    configs it needs, and what ``StorageTool format`` must add (SCRAM users)."""

    name: str
    port: int
    protocol: str
    configs: Mapping[str, str] = field(default_factory=dict)
    format_args: tuple[str, ...] = ()


def java() -> Path:
    """A Java 17+ ``java``: ``$JAVA_HOME/bin/java``, else the one on PATH."""
    home = os.environ.get("JAVA_HOME")
    found = Path(home) / "bin" / "java" if home else shutil.which("java")
    if not found or not Path(found).is_file():
        where = f"JAVA_HOME={home} has no bin/java" if home else "no java on PATH"
        raise BrokerError(f"the embedded Kafka broker needs Java 17 or newer: {where}")
    out = subprocess.run([str(found), "-version"], capture_output=True, text=True, check=False)
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    major = int(match[1]) if match else 0
    if major == 1 and match and match[2]:  # "1.8.0" is Java 8
        major = int(match[2])
    if major < 17:
        raise BrokerError(
            f"the embedded Kafka broker needs Java 17 or newer; {found} is "
            f"{match[0] if match else 'of unknown version'}: set JAVA_HOME to a newer JDK"
        )
    return Path(found)


def kafka_lib(lib: Path | None = None) -> Path:
    """The folder of Kafka's jars, checked."""
    folder = lib or DEFAULT_LIB
    if not any(folder.glob("kafka_2.13-*.jar")):
        raise BrokerError(
            f"no Kafka jars in {folder}: run `make env` (or "
            "`python -m streams.tools.broker fetch`) to fetch them with Maven, or set "
            "KAIROS_KAFKA_LIB to a folder that has them"
        )
    return folder


def fetch(lib: Path = DEFAULT_LIB, pom: Path = POM) -> Path:
    """Copy Kafka's runtime jars into ``lib`` with Maven (cached in ~/.m2)."""
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerError("fetching the Kafka jars needs Maven (mvn) on PATH (Debian: maven)")
    lib = lib.resolve()  # Maven reads a relative path against the pom's folder
    staging = lib.with_name(lib.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    argv = [mvn, "-B", "-q", "-f", str(pom), DEPENDENCY_PLUGIN,
            "-DincludeScope=runtime", f"-DoutputDirectory={staging}"]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = "\n    ".join((done.stdout + done.stderr).strip().splitlines()[-12:])
        raise BrokerError(f"Maven could not fetch the Kafka jars of {pom}:\n    {tail}")
    shutil.rmtree(lib, ignore_errors=True)
    staging.rename(lib)
    return lib


def cluster_id() -> str:
    """A random cluster id as Kafka makes them: a UUID in URL-safe base64, not
    starting with '-' (which its command-line tools would read as an option)."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def server_properties(
    port: int, controller_port: int, log_dirs: Path, extra: Sequence[Listener] = ()
) -> dict[str, str]:
    """Combined mode on loopback, with static voters (so a formatted log dir
    holds no ports, and a restart may take a new controller port)."""
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@127.0.0.1:{controller_port}",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(log_dirs),
        **SMALL_MACHINE,
    }
    for listener in extra:
        address = f"{listener.name}://127.0.0.1:{listener.port}"
        props["listeners"] += f",{address}"
        props["advertised.listeners"] += f",{address}"
        props["listener.security.protocol.map"] += f",{listener.name}:{listener.protocol}"
        props.update(listener.configs)
    return props


LOG4J = """\
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = info
logger.state.name = state.change.logger
logger.state.level = warn
"""


class EmbeddedKafka:
    """Files and command lines of one embedded broker under ``home``."""

    def __init__(
        self, home: Path, port: int, lib: Path | None = None, heap_mb: int = 512,
        extra: Sequence[Listener] = (),
    ) -> None:  # fmt: skip
        self.home = home.resolve()
        self.port = port
        self.extra = extra
        self.lib = kafka_lib(lib)
        self.java = java()  # checked once: `java -version` is a process start
        self.heap_mb = heap_mb
        self.logs = self.home / "logs"
        self.log_dirs = self.home / "data"

    def command(self, main: str, *args: str) -> list[str]:
        log4j = self.logs / "log4j2.properties"
        return [
            str(self.java), f"-Xmx{self.heap_mb}m", f"-Xms{min(self.heap_mb, 256)}m", *JVM_FLAGS,
            f"-Dlog4j2.configurationFile={log4j}", f"-Dkafka.logs.dir={self.logs}",
            "-cp", f"{self.lib}/*", main, *args,
        ]  # fmt: skip

    def configure(self) -> Path:
        """Write server.properties (a fresh controller port each start) and the log config."""
        self.logs.mkdir(parents=True, exist_ok=True)
        (self.logs / "log4j2.properties").write_text(LOG4J.format(log=self.logs / "server.log"))
        props = server_properties(self.port, free_port(), self.log_dirs, self.extra)
        path = self.home / "server.properties"
        path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        return path

    def format_once(self, config: Path) -> None:
        """Format the log dirs on first use; a formatted dir is kept as it is."""
        if (self.log_dirs / "meta.properties").is_file():
            return
        argv = self.command("kafka.tools.StorageTool", "format", "-t", cluster_id(),
                            "-c", str(config),
                            *(arg for x in self.extra for arg in x.format_args))  # fmt: skip
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise BrokerError(f"formatting {self.log_dirs} failed: {done.stdout}{done.stderr}")

    def process(self, log_path: Path) -> ManagedProcess:
        config = self.configure()
        self.format_once(config)
        return ManagedProcess("broker", self.command("kafka.Kafka", str(config)), log_path)


def start_broker(
    port: int,
    home: Path,
    log_path: Path,
    progress: Callable[[float], None] | None = None,
    lib: Path | None = None,
    heap_mb: int = 512,
    extra: Sequence[Listener] = (),
) -> ManagedProcess:
    """Start the embedded broker with its data in ``home``; return once it
    answers a Metadata request listing itself (so topics can be created).
    ``extra`` adds listeners; the readiness probe asks the plaintext one."""
    if port_open("127.0.0.1", port):
        raise BrokerError(
            f"port {port} is already in use; stop what holds it or set KAIROS_BROKER_PORT"
        )
    broker = EmbeddedKafka(home, port, lib, heap_mb, extra).process(log_path)
    broker.start()
    try:
        broker.wait_ready(lambda: broker_ready("127.0.0.1", port), READY_TIMEOUT_S, progress)
    except ProcessFailed as exc:
        raise BrokerError(f"{exc}\n  (broker log: {home / 'logs' / 'server.log'})") from None
    return broker


def start_embedded(
    settings: Settings, progress: Callable[[float], None] | None = None
) -> ManagedProcess:
    """The embedded broker that ``settings`` describe: data under data_dir/kafka."""
    return start_broker(
        settings.broker_port,
        settings.data_dir / "kafka",
        settings.data_dir / "logs" / "broker.log",
        progress,
        settings.kafka_lib,
        settings.broker_heap_mb,
    )


def main(argv: list[str]) -> int:
    """``python -m streams.tools.broker fetch [LIB]``: fetch the jars (the Makefile runs
    it when deploy/kafka/pom.xml is newer than its stamp)."""
    if argv[:1] != ["fetch"]:
        print("usage: python -m streams.tools.broker fetch [LIB]", file=sys.stderr)
        return 2
    lib = Path(argv[1]) if len(argv) > 1 else DEFAULT_LIB
    try:
        java()
        fetch(lib)
    except BrokerError as exc:
        print(f"kairos: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
