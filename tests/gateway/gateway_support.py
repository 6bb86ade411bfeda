"""Helpers of the gateway tests: a small HTTP client that does not hide
status codes, headers or streams, and a running-gateway handle."""

from __future__ import annotations

import http.client
import json
import os
import time
from dataclasses import dataclass
from urllib.parse import urlencode

from support.server import keyed_channel

from uba.gateway import GatewayProcess
from uba.v1 import service_pb2_grpc

API = "/api/behavior-analytics"


@dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    @property
    def content_type(self) -> str:
        return (self.headers.get("content-type") or "").split(";")[0].strip()

    def json(self):
        return json.loads(self.body)

    def __repr__(self) -> str:  # readable assertion failures
        return f"<{self.status} {self.content_type} {self.body[:300]!r}>"


class Client:
    """HTTP/1.1 to the gateway, one connection per request. `api_key`, when
    given, goes in every request's Authorization header."""

    def __init__(self, address: str, api_key: str = "") -> None:
        self.host, port = address.rsplit(":", 1)
        self.port = int(port)
        self.default_headers = {"authorization": f"Bearer {api_key}"} if api_key else {}

    def connection(self, timeout: float = 30.0) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def request(
        self, method: str, path: str, body=None, headers=None, params=None, timeout: float = 30.0
    ) -> Response:
        if params:
            path += ("&" if "?" in path else "?") + urlencode(params)
        data = None
        all_headers = {"accept": "application/json", **self.default_headers, **(headers or {})}
        if body is not None:
            data = body if isinstance(body, (bytes, str)) else json.dumps(body)
            all_headers.setdefault("content-type", "application/json")
        conn = self.connection(timeout)
        try:
            conn.request(method, path, body=data, headers=all_headers)
            response = conn.getresponse()
            return Response(response.status, response.headers, response.read())
        finally:
            conn.close()

    def get(self, path: str, **kwargs) -> Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, body=None, **kwargs) -> Response:
        return self.request("POST", path, body={} if body is None else body, **kwargs)

    def open_stream(self, path: str, headers=None, timeout: float = 30.0) -> EventStream:
        conn = self.connection(timeout)
        conn.request(
            "GET",
            path,
            headers={"accept": "text/event-stream", **self.default_headers, **(headers or {})},
        )
        return EventStream(conn, conn.getresponse())


class EventStream:
    """Reads `data:` events of a server-sent event stream."""

    def __init__(
        self, conn: http.client.HTTPConnection, response: http.client.HTTPResponse
    ) -> None:
        self.conn = conn
        self.response = response
        self.status = response.status
        self.headers = response.headers

    def events(self, count: int, deadline_s: float = 20.0) -> list[dict]:
        found: list[dict] = []
        lines: list[str] = []
        end = time.monotonic() + deadline_s
        while len(found) < count:
            if time.monotonic() > end:
                raise TimeoutError(f"only {len(found)} of {count} events")
            raw = self.response.readline()
            if not raw:
                raise EOFError(f"stream ended after {len(found)} events")
            line = raw.decode().rstrip("\r\n")
            if line:
                lines.append(line)
                continue
            data = "\n".join(kept[5:].lstrip() for kept in lines if kept.startswith("data:"))
            lines = []
            if data:
                found.append(json.loads(data))
        return found

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


@dataclass
class Gateway:
    process: GatewayProcess
    client: Client
    address: str  # the listener, HOST:PORT
    upstream: object  # uba_server or FakeUpstream

    def grpc_stub(self) -> service_pb2_grpc.BehaviorAnalyticsServiceStub:
        return service_pb2_grpc.BehaviorAnalyticsServiceStub(
            keyed_channel(self.address, getattr(self.upstream, "api_key", ""))
        )


def start_gateway(upstream_address: str, work_dir) -> GatewayProcess:
    process = GatewayProcess(upstream_address, "127.0.0.1:0", work_dir=work_dir, concurrency=1)
    process.start()
    try:
        process.wait_ready()
    except Exception:
        process.stop()
        raise
    return process


# -- processes and sockets, from /proc (Linux) ----------------------------


def child_pids(pid: int) -> list[int]:
    """The processes whose parent is `pid`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(entry))
    return found


def envoy_child(pid: int, deadline_s: float = 30.0) -> int:
    """The Envoy process that process `pid` started."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        for child in child_pids(pid):
            try:
                if os.path.basename(os.readlink(f"/proc/{child}/exe")) == "envoy":
                    return child
            except OSError:
                continue
        time.sleep(0.1)
    raise AssertionError(f"process {pid} has no envoy child")


def is_running(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def listening_tcp_ports(pid: int) -> set[int]:
    """TCP ports on which process `pid` holds a listening socket."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as rows:
                next(rows)
                for row in rows:
                    cols = row.split()
                    if cols[3] == "0A" and cols[9] in inodes:  # 0A: LISTEN
                        ports.add(int(cols[1].rsplit(":", 1)[1], 16))
        except FileNotFoundError:
            continue
    return ports
