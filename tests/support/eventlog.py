"""A real nats-server with JetStream and real `uba worker` processes, for
the event-log tests. Each NatsServer has its own port and store dir."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support.server import ChildProcess

NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"
_CONSUMING = re.compile(r"uba: worker (\S+) consuming")


def require_nats() -> None:
    """Skips unless nats-server and nats-py are both there (in CI, where
    .ci/run installs both, their absence fails)."""
    if not Path(NATS_SERVER).exists():
        if os.environ.get("CI"):
            pytest.fail("nats-server is missing; .ci/run installs Debian's nats-server")
        pytest.skip("nats-server is not installed")
    pytest.importorskip("nats", reason="nats-py (the eventlog extra) is not installed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class NatsServer:
    def __init__(self, store_dir: Path):
        self.store_dir = Path(store_dir)
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> NatsServer:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                NATS_SERVER,
                "-js",
                "-sd",
                str(self.store_dir),
                "-a",
                "127.0.0.1",
                "-p",
                str(self.port),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return self
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("nats-server did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class WorkerProcess(ChildProcess):
    """`python -m uba worker` with its own data dir."""

    def __init__(self, data_dir: Path, database_url: str, event_log: str, *extra: str):
        self.args = [
            sys.executable,
            "-m",
            "uba",
            "worker",
            "--data-dir",
            str(data_dir),
            "--database-url",
            database_url,
            "--event-log",
            event_log,
            *extra,
        ]
        self.proc: subprocess.Popen | None = None
        self.output: list[str] = []
        self.owner = ""

    def start(self, timeout: float = 30.0) -> WorkerProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("UBA_")}
        self.owner = self._launch(self.args, env, _CONSUMING, timeout).group(1)
        return self

    def owned(self, what: str = "partition") -> set[int]:
        """The partitions of its last 'owns partitions' log line (`what`:
        "population partition" for the population inputs')."""
        owned: set[int] = set()
        for line in self.output:
            match = re.search(rf"owns {what}s \[([\d, ]*)\]", line)
            if match:
                owned = {int(p) for p in match.group(1).split(",") if p.strip()}
            match = re.search(rf"gave back {what} (\d+)", line)
            if match:
                owned.discard(int(match.group(1)))
        return owned
