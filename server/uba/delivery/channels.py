"""A destination's channel: its payload format and its transport, so the
worker sends a notification with one call."""

from __future__ import annotations

import json
from datetime import datetime

from standardwebhooks.webhooks import Webhook

from uba.delivery.config import Destination
from uba.delivery.transports import HttpTransport, Outcome, SyslogTransport
from uba.domain.notifications import Notification


def _uba_json(envelope: dict) -> bytes:
    return json.dumps(envelope, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def render(fmt: str, envelope: dict) -> tuple[bytes, str]:
    """The message body in a destination's format, and its media type."""
    if fmt == "uba":
        return _uba_json(envelope), "application/json"
    raise ValueError(f"unknown format {fmt!r}")


class Channel:
    def __init__(self, destination: Destination):
        self.destination = destination
        # The Standard Webhooks reference implementation signs: no crypto here.
        self._signer = Webhook(destination.secret) if destination.secret else None
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
            body, content_type = render(d.format, notification.payload)
        except (ValueError, KeyError, TypeError) as exc:
            return Outcome(False, False, f"cannot render as {d.format}: {exc}")
        if isinstance(self.transport, SyslogTransport):
            return self.transport.send(body)
        headers = {**d.headers, "Content-Type": content_type, "User-Agent": "uba"}
        headers["Idempotency-Key"] = notification.message_id
        if self._signer is not None:
            # Signed at each attempt: the timestamp is when it was sent, so
            # a receiver's replay window holds for retries too.
            headers["webhook-id"] = notification.message_id
            headers["webhook-timestamp"] = str(int(now.timestamp()))
            headers["webhook-signature"] = self._signer.sign(notification.message_id, now, body)
        return self.transport.send(body, headers)

    def close(self) -> None:
        self.transport.close()
