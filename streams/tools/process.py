"""Child processes that start, prove they are ready, and stop cleanly.

Each child runs in its own process group, so stopping it also stops what it
started (vLLM forks engine processes), and it is told to die with its parent
(PR_SET_PDEATHSIG), so not even a killed ``kairos demo`` leaves one behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from streams.errors import ProcessFailed

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    with contextlib.suppress(OSError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        return sock.connect_ex((host, port)) == 0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ManagedProcess:
    """One child process with a log file, a readiness probe and a clean stop."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.env = dict(os.environ if env is None else env)
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(
        self,
        probe: Callable[[], bool],
        timeout: float,
        progress: Callable[[float], None] | None = None,
        interval: float = 0.25,
    ) -> float:
        """Poll ``probe`` until it is true; return the seconds it took."""
        started = time.monotonic()
        while True:
            elapsed = time.monotonic() - started
            if not self.running:
                raise ProcessFailed(f"{self.name} exited during start-up: {self.tail()}")
            if probe():
                return elapsed
            if elapsed > timeout:
                self.stop()
                raise ProcessFailed(
                    f"{self.name} was not ready after {timeout:.0f} s: {self.tail()}"
                )
            if progress:
                progress(elapsed)
            time.sleep(interval)

    def wait_exit(self, timeout: float, progress: Callable[[float], None] | None = None) -> int:
        """Wait for the process to finish; return its exit code."""
        started = time.monotonic()
        assert self.proc is not None
        while (code := self.proc.poll()) is None:
            elapsed = time.monotonic() - started
            if elapsed > timeout:
                self.stop()
                raise ProcessFailed(f"{self.name} did not finish in {timeout:.0f} s: {self.tail()}")
            if progress:
                progress(elapsed)
            time.sleep(0.5)
        self.proc = None
        return code

    def tail(self, lines: int = 15) -> str:
        """The last lines of the log, for error messages."""
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n    " + "\n    ".join(text[-lines:]) + f"\n  (full log: {self.log_path})"

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the process group, then SIGKILL whatever is left."""
        if self.proc is None:
            return
        pgid = self.proc.pid
        self._signal_group(pgid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._signal_group(pgid, signal.SIGKILL)
            self.proc.wait(timeout=5)
        # Children that outlived the leader still belong to the group.
        self._signal_group(pgid, signal.SIGKILL)
        self.proc = None

    def kill(self) -> None:
        """SIGKILL the process group at once: a crash, with no clean-up."""
        if self.proc is None:
            return
        self._signal_group(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.proc = None

    def pause(self) -> None:
        """SIGSTOP the process group: alive, holding its sockets, answering nothing."""
        if self.proc is not None:
            self._signal_group(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.proc is not None:
            self._signal_group(self.proc.pid, signal.SIGCONT)

    @staticmethod
    def _signal_group(pgid: int, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)
