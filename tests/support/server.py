"""Runs the real server as a subprocess on a real port, as users do."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc

from uba.v1 import service_pb2_grpc

_LISTENING = re.compile(r"uba: listening on (\S+)")


class ServerProcess:
    """`python -m uba serve` with its own data dir; `.address` once started."""

    def __init__(self, data_dir: Path, database_url: str = "", extra_args: list[str] | None = None,
                 env: dict[str, str] | None = None, listen: str = "127.0.0.1:0"):
        self.data_dir = Path(data_dir)
        self.database_url = database_url
        self.extra_args = list(extra_args or [])
        self.env = env or {}
        self.listen = listen
        self.address = ""
        self.proc: subprocess.Popen | None = None
        self.output: list[str] = []
        self._channel: grpc.Channel | None = None

    def start(self, timeout: float = 30.0) -> "ServerProcess":
        args = [sys.executable, "-m", "uba", "serve", "--listen", self.listen, "--data-dir", str(self.data_dir),
                "--grace-period", "5", *self.extra_args]
        if self.database_url:
            args += ["--database-url", self.database_url]
        env = {k: v for k, v in os.environ.items() if not k.startswith("UBA_")}
        env.update(self.env)
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        ready = threading.Event()

        def pump() -> None:
            assert self.proc and self.proc.stdout
            for line in self.proc.stdout:
                self.output.append(line)
                match = _LISTENING.search(line)
                if match and not ready.is_set():
                    self.address = match.group(1)
                    ready.set()

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.monotonic() + timeout
        while not ready.wait(0.05):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError("server did not start:\n" + "".join(self.output))
        return self

    @property
    def channel(self) -> grpc.Channel:
        if self._channel is None:
            self._channel = grpc.insecure_channel(self.address)
        return self._channel

    @property
    def stub(self) -> service_pb2_grpc.BehaviorAnalyticsServiceStub:
        return service_pb2_grpc.BehaviorAnalyticsServiceStub(self.channel)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, then wait; returns the exit code."""
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def log(self) -> str:
        return "".join(self.output)
