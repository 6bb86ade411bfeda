"""Runs the real server as a subprocess on a real port, as users do.

Secure by default, like the server: on a fresh database the server writes
an admin key (every scope) to DATA_DIR/admin.key on its first start;
ServerProcess reads it, and `.channel`/`.stub`/`.metadata` send it. Pass
`api_key=` for a server on a database that has keys already (a second
process on one PostgreSQL), or `anonymous=True` for --allow-anonymous.
"""

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
# address -> API key of every server started here, for helpers that only
# get an address (the `uba` CLI fixture).
KEYS: dict[str, str] = {}


class _WithKey(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    """Adds `authorization: Bearer KEY` to every call of a channel."""

    def __init__(self, key: str):
        self.metadata = (("authorization", f"Bearer {key}"),)

    def _details(self, details):
        return details._replace(metadata=tuple(details.metadata or ()) + self.metadata)

    def intercept_unary_unary(self, continuation, client_call_details, request):
        return continuation(self._details(client_call_details), request)

    def intercept_unary_stream(self, continuation, client_call_details, request):
        return continuation(self._details(client_call_details), request)


def keyed_channel(address: str, key: str) -> grpc.Channel:
    """An insecure channel that sends `key` (none when empty)."""
    channel = grpc.insecure_channel(address)
    return grpc.intercept_channel(channel, _WithKey(key)) if key else channel


class ChildProcess:
    """A uba process the tests started: stopped with SIGTERM (then waited
    for), or killed; its output kept."""

    proc: subprocess.Popen | None = None
    output: list[str]

    def _launch(self, args: list[str], env: dict[str, str], ready: re.Pattern, timeout: float):
        """Starts `args`, keeps its output, and waits for the first line that
        matches `ready`; returns that match. Raises (after killing it) when
        the process ends or the time runs out first."""
        self.proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        )
        found: list[re.Match] = []
        seen = threading.Event()

        def pump() -> None:
            assert self.proc and self.proc.stdout
            for line in self.proc.stdout:
                self.output.append(line)
                match = ready.search(line)
                if match and not seen.is_set():
                    found.append(match)
                    seen.set()

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.monotonic() + timeout
        while not seen.wait(0.05):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"{args[3]} did not start:\n" + self.log())
        return found[0]

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, then wait; returns the exit code."""
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


class ServerProcess(ChildProcess):
    """`python -m uba serve` with its own data dir; `.address` once started."""

    def __init__(
        self,
        data_dir: Path,
        database_url: str = "",
        extra_args: list[str] | None = None,
        env: dict[str, str] | None = None,
        listen: str = "127.0.0.1:0",
        api_key: str | None = None,
        anonymous: bool = False,
    ):
        self.data_dir = Path(data_dir)
        self.database_url = database_url
        self.extra_args = list(extra_args or [])
        self.env = env or {}
        self.listen = listen
        self.api_key = api_key or ""
        self.anonymous = anonymous
        self.address = ""
        self.proc: subprocess.Popen | None = None
        self.output: list[str] = []
        self._channel: grpc.Channel | None = None

    def start(self, timeout: float = 30.0) -> ServerProcess:
        args = [
            sys.executable,
            "-m",
            "uba",
            "serve",
            "--listen",
            self.listen,
            "--data-dir",
            str(self.data_dir),
            "--grace-period",
            "5",
            *self.extra_args,
        ]
        if self.database_url:
            args += ["--database-url", self.database_url]
        if self.anonymous:
            args.append("--allow-anonymous")
        env = {k: v for k, v in os.environ.items() if not k.startswith("UBA_")}
        env.update(self.env)
        self.address = self._launch(args, env, _LISTENING, timeout).group(1)
        key_file = self.data_dir / "admin.key"
        if not self.anonymous and not self.api_key and key_file.exists():
            self.api_key = key_file.read_text().strip()
        KEYS[self.address] = self.api_key
        return self

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        """Call metadata that carries this server's key."""
        return (("authorization", f"Bearer {self.api_key}"),) if self.api_key else ()

    @property
    def channel(self) -> grpc.Channel:
        if self._channel is None:
            self._channel = keyed_channel(self.address, self.api_key)
        return self._channel

    @property
    def stub(self) -> service_pb2_grpc.BehaviorAnalyticsServiceStub:
        return service_pb2_grpc.BehaviorAnalyticsServiceStub(self.channel)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, then wait; returns the exit code."""
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        return super().stop(timeout)
