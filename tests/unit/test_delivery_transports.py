"""The transports on real loopback sockets: syslog over TLS checked against
its CA, a receiver that closed the connection noticed before the next
write, Retry-After in both spellings, what an HTTP answer means."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from support.certs import CertificateAuthority

from uba.delivery.transports import HttpTransport, SyslogTransport, retry_after_seconds

pytestmark = pytest.mark.unit


class Collector:
    """A TCP (or TLS) server that keeps what each connection sent; with
    `close_first`, it closes the first connection right after accepting it."""

    def __init__(self, context: ssl.SSLContext | None = None, close_first: bool = False):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.context = context
        self.close_first = close_first
        self.received: list[bytes] = []
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            if self.close_first and self.connections == 1:
                conn.close()
                continue
            if self.context is not None:
                try:
                    conn = self.context.wrap_socket(conn, server_side=True)
                except (ssl.SSLError, OSError):  # a client that does not trust us
                    conn.close()
                    continue
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
            self.received.append(chunk)

    def text(self) -> bytes:
        return b"".join(self.received)

    def close(self) -> None:
        self.sock.close()


def wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_syslog_over_tls_checks_the_receiver_against_its_ca(tmp_path):
    ca = CertificateAuthority("receivers")
    issued = ca.issue(tmp_path, "siem", server=True)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(issued.cert, issued.key)
    collector = Collector(context)
    try:
        transport = SyslogTransport("127.0.0.1", collector.port, True, 5.0, str(ca.write(tmp_path)))
        assert transport.send(b"5 hello").delivered
        assert transport.send(b"5 world").delivered
        wait_for(lambda: collector.text() == b"5 hello5 world")
        assert collector.connections == 1, "one connection kept for both"
        transport.close()
        # Another CA's receiver is refused, and the send is retryable.
        stranger = SyslogTransport(
            "127.0.0.1",
            collector.port,
            True,
            5.0,
            str(CertificateAuthority("other").write(tmp_path, "other")),
        )
        outcome = stranger.send(b"5 nope!")
        assert not outcome.delivered and outcome.retryable
        assert "CERTIFICATE_VERIFY_FAILED" in outcome.error
    finally:
        collector.close()


def test_a_connection_the_receiver_closed_is_reopened_before_writing():
    collector = Collector(close_first=True)
    try:
        transport = SyslogTransport("127.0.0.1", collector.port, False, 5.0)
        first = transport.send(b"3 one")  # may reach the kernel before the close is seen
        wait_for(lambda: collector.connections == 1)
        time.sleep(0.1)  # the receiver's FIN arrives
        second = transport.send(b"3 two")
        assert second.delivered
        wait_for(lambda: b"3 two" in collector.text())
        assert collector.connections == 2, "the closed connection was noticed and replaced"
        assert first.delivered
        transport.close()
    finally:
        collector.close()


def test_retry_after_as_seconds_or_a_date():
    now = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    assert retry_after_seconds("7", now) == 7.0
    assert retry_after_seconds(format_datetime(now + timedelta(seconds=90), True), now) == 90.0
    assert retry_after_seconds("99999", now) == 3600.0, "capped at an hour"
    assert retry_after_seconds("soon", now) is None
    assert retry_after_seconds(None, now) is None


@pytest.mark.parametrize(
    "status, delivered, retryable",
    [
        (200, True, False),
        (204, True, False),
        (400, False, False),
        (404, False, False),
        (408, False, True),
        (429, False, True),
        (500, False, True),
        (503, False, True),
    ],
)
def test_what_an_http_answer_means(status, delivered, retryable):
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the http.server interface
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(status)
            self.send_header("Content-Length", "4")
            self.send_header("Retry-After", "2")
            self.end_headers()
            self.wfile.write(b"why!"[: 4 if status != 204 else 0])

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        outcome = HttpTransport(url, 5.0).send(b"{}", {"Content-Type": "application/json"})
        assert outcome.delivered is delivered
        if not delivered:
            assert outcome.retryable is retryable
            assert outcome.error.startswith(f"HTTP {status}: why!")
            assert outcome.retry_after == (2.0 if retryable else None)
    finally:
        server.shutdown()
        server.server_close()
