"""Standard Webhooks signatures (standardwebhooks.com): the headers
`webhook-id`, `webhook-timestamp` and `webhook-signature` ("v1,<base64
HMAC-SHA256 of id.timestamp.body>"), made and checked by the specification's
own Python library rather than by hand.

Secrets are in the specification's form, `whsec_<base64 of 24-64 random
bytes>`; `new_secret` makes one.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

__all__ = ["SignatureError", "new_secret", "signed_headers", "verify"]

SECRET_PREFIX = "whsec_"


class SignatureError(ValueError):
    """A body whose signature headers do not verify (or a bad secret)."""


def new_secret(size: int = 32) -> str:
    """A new random secret, `whsec_` + base64 of `size` bytes."""
    if not 24 <= size <= 64:
        raise ValueError("a webhook secret has 24 to 64 bytes")
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(size)).decode("ascii")


def signed_headers(
    secret: str, msg_id: str, timestamp: datetime | int, body: bytes
) -> dict[str, str]:
    """The three headers that sign `body`, byte for byte, as message
    `msg_id` sent at `timestamp` (an aware datetime, or Unix seconds)."""
    moment = _moment(timestamp)
    signature = _webhook(secret).sign(msg_id, moment, body)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(moment.timestamp())),
        "webhook-signature": signature,
    }


def verify(secret: str, headers: Mapping[str, str], body: bytes) -> None:
    """Raises SignatureError unless `headers` sign `body` with `secret` and
    the timestamp is within the library's tolerance (5 minutes) of now."""
    try:
        _webhook(secret).verify(body, dict(headers), json_parse=False)
    except WebhookVerificationError as exc:
        raise SignatureError(str(exc)) from None


def _webhook(secret: str) -> Webhook:
    try:
        return Webhook(secret)
    except Exception as exc:  # binascii.Error, EmptyWebhookSecretError, ...
        raise SignatureError(f"not a webhook secret: {type(exc).__name__}") from None


def _moment(timestamp: datetime | int) -> datetime:
    if isinstance(timestamp, datetime):
        if timestamp.tzinfo is None:
            raise ValueError("naive datetime: give the signing time in UTC")
        return timestamp.astimezone(UTC)
    return datetime.fromtimestamp(int(timestamp), UTC)
