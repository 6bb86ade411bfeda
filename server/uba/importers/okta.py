"""Okta System Log events (LogEvent objects), as the System Log API returns
them (a JSON array a page) or as JSON Lines (exports, log streaming).
Field mapping: docs/importers.md.

  user.session.start                                 LOGIN_SUCCESS / LOGIN_FAILURE
  user.authentication.* (sso, verify, auth_via_*)    LOGIN_SUCCESS / LOGIN_FAILURE
  user.authentication.auth_via_mfa                   MFA_APPROVED / MFA_DENIED
  system.push.send_factor_verify_push                MFA_CHALLENGE
  user.mfa.okta_verify.deny_push                     MFA_DENIED
  user.session.end                                   LOGOUT

outcome.result SUCCESS (or ALLOW) is a success; FAILURE and DENY are
failures; other results (CHALLENGE, UNKNOWN, SKIPPED) of a sign-in are
skipped and counted. Other event types (admin actions, lifecycle, policy
evaluation) are ignored. The user is actor.alternateId (the login, an
e-mail address), lower-cased; actors that are no User (SystemPrincipal,
PublicClientApp) are skipped. The event id hashes `uuid`.

Okta's geographicalContext names the country ("United States"), not its
ISO code: it is kept as attribute `country`; the coordinates go to
latitude/longitude.
"""

from __future__ import annotations

from collections.abc import Iterable

from uba.importers.jsondoc import Ignore, JsonImporter, Skip, dig, text, user_key
from uba.v1 import events_pb2

_SUCCESS = {"SUCCESS", "ALLOW"}
_FAILURE = {"FAILURE", "DENY"}


class OktaImporter(JsonImporter):
    prefix = "okta"
    default_source = "okta"

    def convert(self, record: dict) -> Iterable[events_pb2.ActivityEvent]:
        event_type = text(record.get("eventType"))
        result = text(dig(record, "outcome.result")).upper()
        if event_type == "system.push.send_factor_verify_push":
            kind = "mfa_challenge"
        elif event_type == "user.mfa.okta_verify.deny_push":
            kind = "mfa_denied"
        elif event_type == "user.authentication.auth_via_mfa":
            kind = self._outcome(result, "mfa_approved", "mfa_denied")
        elif event_type == "user.session.end":
            kind = "logout"
        elif event_type == "user.session.start" or event_type.startswith("user.authentication."):
            kind = self._outcome(result, "login_success", "login_failure")
        else:
            raise Ignore
        actor = record.get("actor") or {}
        if text(actor.get("type")) not in ("", "User"):
            raise Skip(f"actor is a {actor.get('type')}, not a user")
        user = user_key(actor.get("alternateId"))
        if user in ("", "unknown"):
            raise Skip("no user name")
        client = record.get("client") or {}
        geo = client.get("geographicalContext") or {}
        fields: dict = {
            "source_ip": text(client.get("ipAddress")),
            "user_agent": text(dig(client, "userAgent.rawUserAgent")),
            "session_id": text(dig(record, "authenticationContext.externalSessionId")),
            "city": text(geo.get("city")),
            "device_id": text(dig(record, "device.id")),
        }
        point = geo.get("geolocation") or {}
        if point.get("lat") is not None and point.get("lon") is not None:
            fields["latitude"], fields["longitude"] = float(point["lat"]), float(point["lon"])
        if fields["session_id"] == "unknown":
            fields["session_id"] = ""
        targets = record.get("target") or []
        app = next((t.get("displayName") for t in targets if t.get("type") == "AppInstance"), None)
        attributes = {
            "event_type": event_type,
            "outcome": result.lower(),
            "reason": text(dig(record, "outcome.reason")),
            "country": text(geo.get("country")),
            "state": text(geo.get("state")),
            "device": text(client.get("device")),
            "app": text(app),
            "factor": text(dig(record, "debugContext.debugData.factor")),
        }
        published = record.get("published")
        if not published:
            raise ValueError("published: missing")
        return [
            self.event(
                record,
                user,
                kind,
                published,
                uid=record.get("uuid"),
                attributes=attributes,
                **fields,
            )
        ]

    @staticmethod
    def _outcome(result: str, success: str, failure: str) -> str:
        if result in _SUCCESS:
            return success
        if result in _FAILURE:
            return failure
        raise Skip(f"outcome.result {result or 'missing'}")
