"""Helpers of the client tests: the `uba` command as a subprocess, scripted
fake servers for failure modes a real server will not produce on demand,
and free ports for servers that must come back on the same address."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent import futures
from dataclasses import dataclass

import grpc
import pytest
from support.ports import free_port
from support.server import KEYS

from uba.v1 import service_pb2_grpc


@dataclass
class Run:
    code: int
    out: str
    err: str


@pytest.fixture
def uba_cli():
    """Runs `python -m uba ARGS` as a user would; `server` goes in UBA_SERVER
    (the environment path of the settings), its key in UBA_API_KEY."""

    def run(*args: str, server: str = "", stdin: str | None = None, timeout: float = 120) -> Run:
        env = {k: v for k, v in os.environ.items() if not k.startswith("UBA_")}
        if server:
            env["UBA_SERVER"] = server
            if KEYS.get(server):  # the key of a server the tests started
                env["UBA_API_KEY"] = KEYS[server]
        proc = subprocess.run(
            [sys.executable, "-m", "uba", *args],
            capture_output=True,
            text=True,
            env=env,
            input=stdin,
            timeout=timeout,
        )
        return Run(proc.returncode, proc.stdout, proc.stderr)

    return run


@pytest.fixture
def free_address() -> str:
    """An address nothing listens on (yet)."""
    return f"127.0.0.1:{free_port()}"


@pytest.fixture
def fake_server():
    """Starts an in-process gRPC server with the given servicer; returns its
    address. Stopped after the test."""
    servers: list[grpc.Server] = []

    def start(servicer: service_pb2_grpc.BehaviorAnalyticsServiceServicer) -> str:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        service_pb2_grpc.add_BehaviorAnalyticsServiceServicer_to_server(servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        servers.append(server)
        return f"127.0.0.1:{port}"

    yield start
    for server in servers:
        server.stop(0)
