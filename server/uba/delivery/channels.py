"""A destination's channel: its payload format and its transport, so the
worker sends a notification with one call."""

from __future__ import annotations

import socket
from datetime import datetime

from uba.delivery import envelope as env
from uba.delivery import formats, signing
from uba.delivery.config import Destination
from uba.delivery.formats import RenderOptions, cef
from uba.delivery.transports import HttpTransport, Outcome, SyslogTransport
from uba.domain.notifications import Notification


def syslog_frame(fmt: str, envelope: dict, hostname: str, options: RenderOptions) -> bytes:
    """The envelope as one octet-counted RFC 5424 message: a CEF line, or
    the OCSF/uba JSON as the message text."""
    if fmt == "cef":
        return cef.envelope_frame(envelope, hostname, options)
    return cef.syslog_frame(
        formats.render(fmt, envelope, options),
        hostname,
        severity=cef.syslog_severity(envelope),
        msgid=str(envelope["type"]),
        timestamp=env.parse_time(envelope["timestamp"]),
    )


class Channel:
    def __init__(self, destination: Destination):
        self.destination = destination
        self.hostname = destination.hostname or socket.gethostname()
        self.options = RenderOptions(base_url=destination.base_url)
        self.transport: HttpTransport | SyslogTransport
        if destination.kind == "syslog":
            host, port = destination.address
            self.transport = SyslogTransport(
                host, port, destination.tls, destination.timeout_seconds, destination.ca_file
            )
        else:
            self.transport = HttpTransport(
                destination.url, destination.timeout_seconds, destination.ca_file
            )

    def send(self, notification: Notification, now: datetime) -> Outcome:
        d = self.destination
        try:
            if isinstance(self.transport, SyslogTransport):
                return self.transport.send(
                    syslog_frame(d.format, notification.payload, self.hostname, self.options)
                )
            body = formats.render(d.format, notification.payload, self.options)
        except (ValueError, KeyError, TypeError) as exc:  # EnvelopeError is a ValueError
            return Outcome(False, False, f"cannot render as {d.format}: {exc}")
        headers = {
            **d.headers,
            "Content-Type": formats.content_type(d.format),
            "User-Agent": "uba",
            "Idempotency-Key": notification.message_id,
        }
        if d.secret:
            # Signed at each attempt: the timestamp is when it was sent, so
            # a receiver's replay window holds for retries too.
            headers.update(signing.signed_headers(d.secret, notification.message_id, now, body))
        return self.transport.send(body, headers)

    def close(self) -> None:
        self.transport.close()
