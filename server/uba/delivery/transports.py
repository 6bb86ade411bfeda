"""Carrying one rendered message to a receiver, and what its answer means
for the outbox: delivered, retry later (when), or give up (why).

HTTP (webhooks and chat): 2xx is delivered; 408, 429 and 5xx, timeouts
and connection errors are retried, honouring Retry-After; any other answer
is final (a receiver that refuses a message will refuse it again).
Syslog over TCP: a message is delivered once the kernel took all of it;
the connection is kept for the next one and reopened after an error.
"""

from __future__ import annotations

import email.utils
import select
import socket
import ssl
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

# Longest Retry-After honoured; a receiver asking for more is retried then.
MAX_RETRY_AFTER = 3600.0


@dataclass(frozen=True)
class Outcome:
    delivered: bool
    retryable: bool = True
    error: str = ""
    retry_after: float | None = None  # seconds the receiver asked us to wait

    @classmethod
    def ok(cls) -> Outcome:
        return cls(True)


def _tls_context(ca_file: str) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=ca_file or None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Retry-After as seconds: a number of seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    delta = (when - (now or datetime.now(UTC))).total_seconds()
    return min(max(delta, 0.0), MAX_RETRY_AFTER)


class HttpTransport:
    """POSTs to one URL. No proxy from the environment: a destination is
    reached directly, as configured."""

    def __init__(self, url: str, timeout: float, ca_file: str = ""):
        self.url = url
        self.timeout = timeout
        handlers: list = [urllib.request.ProxyHandler({})]
        if url.startswith("https:"):
            handlers.append(urllib.request.HTTPSHandler(context=_tls_context(ca_file)))
        self._opener = urllib.request.build_opener(*handlers)

    def send(self, body: bytes, headers: Mapping[str, str]) -> Outcome:
        request = urllib.request.Request(self.url, data=body, headers=dict(headers), method="POST")
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                response.read(65536)
                return Outcome.ok()
        except urllib.error.HTTPError as exc:
            status = exc.code
            answer = _excerpt(exc)
            if status == 408 or status == 429 or status >= 500:
                return Outcome(
                    False,
                    True,
                    f"HTTP {status}{answer}",
                    retry_after_seconds(exc.headers.get("Retry-After")),
                )
            return Outcome(False, False, f"HTTP {status}{answer}")
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            return Outcome(False, True, f"{type(exc).__name__}: {reason}")

    def close(self) -> None:
        pass


def _excerpt(exc: urllib.error.HTTPError) -> str:
    try:
        text = exc.read(300).decode("utf-8", "replace").strip()
    except Exception:  # noqa: BLE001 - the status alone is still worth recording
        return ""
    return f": {text}" if text else ""


class SyslogTransport:
    """RFC 5425/6587 octet-counted syslog over TCP, optionally TLS."""

    def __init__(self, host: str, port: int, tls: bool, timeout: float, ca_file: str = ""):
        self.host, self.port, self.timeout = host, port, timeout
        self._context = _tls_context(ca_file) if tls else None
        self._sock: socket.socket | None = None

    def send(self, framed: bytes, _headers: Mapping[str, str] | None = None) -> Outcome:
        try:
            if self._sock is not None and self._peer_closed(self._sock):
                self.close()
            if self._sock is None:
                sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
                if self._context is not None:
                    sock = self._context.wrap_socket(sock, server_hostname=self.host)
                self._sock = sock
            self._sock.sendall(framed)
            return Outcome.ok()
        except OSError as exc:
            self.close()
            return Outcome(False, True, f"{type(exc).__name__}: {exc}")

    @staticmethod
    def _peer_closed(sock: socket.socket) -> bool:
        """A syslog receiver never writes: a readable socket means it closed
        (or reset) the connection, and a message written now would be lost."""
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return False
        if not isinstance(sock, ssl.SSLSocket):
            try:
                return sock.recv(1, socket.MSG_PEEK) == b""
            except OSError:
                return True
        # TLS: readable may be a session ticket, not application data.
        timeout = sock.gettimeout()
        sock.settimeout(0)
        try:
            return sock.recv(1) == b""
        except (ssl.SSLWantReadError, BlockingIOError):
            return False
        except OSError:
            return True
        finally:
            sock.settimeout(timeout)

    def close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
            self._sock = None
