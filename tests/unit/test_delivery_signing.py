"""Standard Webhooks signatures: what a receiver checks with the
specification's library."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from uba.delivery import signing
from uba.delivery.formats import render
from uba.delivery.samples import sample_envelopes

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def body_and_id() -> tuple[bytes, str]:
    envelope = sample_envelopes()["alert.created"]
    return render("uba", envelope), envelope["id"]


def test_a_signature_made_here_verifies_with_the_library():
    body, msg_id = body_and_id()
    headers = signing.signed_headers(SECRET, msg_id, datetime.now(UTC), body)
    assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    assert headers["webhook-id"] == msg_id
    assert headers["webhook-signature"].startswith("v1,")
    # A receiver's own check, with the library and nothing of ours.
    assert Webhook(SECRET).verify(body, headers) == json.loads(body)
    signing.verify(SECRET, headers, body)


def test_one_changed_byte_fails_verification():
    body, msg_id = body_and_id()
    headers = signing.signed_headers(SECRET, msg_id, datetime.now(UTC), body)
    for index in (0, len(body) // 2, len(body) - 1):
        changed = bytearray(body)
        changed[index] ^= 0x01
        with pytest.raises(WebhookVerificationError):
            Webhook(SECRET).verify(bytes(changed), headers)
        with pytest.raises(signing.SignatureError):
            signing.verify(SECRET, headers, bytes(changed))


def test_another_secret_id_or_time_fails_verification():
    body, msg_id = body_and_id()
    now = datetime.now(UTC)
    headers = signing.signed_headers(SECRET, msg_id, now, body)
    with pytest.raises(signing.SignatureError):
        signing.verify(signing.new_secret(), headers, body)
    with pytest.raises(signing.SignatureError):
        signing.verify(SECRET, {**headers, "webhook-id": msg_id + "x"}, body)
    with pytest.raises(signing.SignatureError):
        signing.verify(
            SECRET, {**headers, "webhook-timestamp": str(int(now.timestamp()) + 1)}, body
        )
    old = signing.signed_headers(SECRET, msg_id, now - timedelta(minutes=10), body)
    with pytest.raises(signing.SignatureError, match="too old"):
        signing.verify(SECRET, old, body)


def test_the_signature_is_the_specifications_hmac():
    """v1 = base64(HMAC-SHA256(base64-decoded secret, "id.timestamp.body"))."""
    body = b'{"caf\xc3\xa9":1}'
    headers = signing.signed_headers(SECRET, "msg_2", 1_772_421_127, body)
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    digest = hmac.new(key, b"msg_2.1772421127." + body, hashlib.sha256).digest()
    assert headers["webhook-signature"] == "v1," + base64.b64encode(digest).decode()
    assert headers["webhook-timestamp"] == "1772421127"


def test_a_time_in_another_zone_signs_the_same_instant():
    body, msg_id = body_and_id()
    instant = datetime(2026, 3, 2, 3, 12, 7, tzinfo=UTC)
    berlin = instant.astimezone(timezone(timedelta(hours=1)))
    assert signing.signed_headers(SECRET, msg_id, berlin, body) == signing.signed_headers(
        SECRET, msg_id, instant, body
    )
    with pytest.raises(ValueError):
        signing.signed_headers(SECRET, msg_id, datetime(2026, 3, 2), body)


def test_new_secrets_are_random_and_in_the_specs_form():
    first, second = signing.new_secret(), signing.new_secret()
    assert first != second and first.startswith("whsec_")
    assert len(base64.b64decode(first.removeprefix("whsec_"))) == 32
    Webhook(first)  # the library accepts it
    with pytest.raises(ValueError):
        signing.new_secret(8)
    with pytest.raises(signing.SignatureError):
        signing.signed_headers("whsec_", "m", 0, b"{}")
