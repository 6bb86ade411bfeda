"""Microsoft Entra ID sign-in logs (Microsoft Graph `signIn` resources),
as Graph pages ({"value": [...], "@odata.nextLink": ...}), a JSON array
or JSON Lines (one signIn a line, as diagnostic settings export them).
Field mapping: docs/importers.md.

status.errorCode 0 is a LOGIN_SUCCESS; any other code a LOGIN_FAILURE,
except those that are steps of multi-factor authentication or interrupts:

  50074, 50076     strong authentication required        MFA_CHALLENGE
  500121           strong authentication failed/denied    MFA_DENIED
  50140, 50125, 50158, 50199, 81010
                   interrupts (keep me signed in, password reset
                   registration, external challenge, ...)   skipped, counted

The user is userPrincipalName, lower-cased. correlationId (shared by the
requests of one sign-in flow) is the session. The event id hashes `id`.
"""

from __future__ import annotations

from collections.abc import Iterable

from uba.importers.jsondoc import JsonImporter, Skip, text, user_key
from uba.v1 import events_pb2

_MFA_CHALLENGE = {50074, 50076}
_MFA_DENIED = {500121}
_INTERRUPTS = {50140, 50125, 50158, 50199, 81010}


class EntraImporter(JsonImporter):
    prefix = "entra"
    default_source = "entra"

    def convert(self, record: dict) -> Iterable[events_pb2.ActivityEvent]:
        status = record.get("status") or {}
        code = int(status.get("errorCode") or 0)
        if code == 0:
            kind = "login_success"
        elif code in _MFA_CHALLENGE:
            kind = "mfa_challenge"
        elif code in _MFA_DENIED:
            kind = "mfa_denied"
        elif code in _INTERRUPTS:
            raise Skip(f"sign-in interrupt (errorCode {code})")
        else:
            kind = "login_failure"
        user = user_key(record.get("userPrincipalName"))
        if not user:
            raise Skip("no userPrincipalName")
        location = record.get("location") or {}
        device = record.get("deviceDetail") or {}
        fields: dict = {
            "source_ip": text(record.get("ipAddress")),
            "user_agent": text(record.get("userAgent")),
            "session_id": text(record.get("correlationId")),
            "device_id": text(device.get("deviceId")),
            "city": text(location.get("city")),
        }
        country = text(location.get("countryOrRegion")).upper()
        if len(country) == 2:
            fields["country_code"] = country
        point = location.get("geoCoordinates") or {}
        if point.get("latitude") is not None and point.get("longitude") is not None:
            fields["latitude"], fields["longitude"] = (
                float(point["latitude"]),
                float(point["longitude"]),
            )
        attributes = {
            "error_code": str(code) if code else "",
            "reason": text(status.get("failureReason")) if code else "",
            "conditional_access": text(record.get("conditionalAccessStatus")),
            "app": text(record.get("appDisplayName")),
            "client_app": text(record.get("clientAppUsed")),
            "os": text(device.get("operatingSystem")),
            "browser": text(device.get("browser")),
            "device_name": text(device.get("displayName")),
            "interactive": str(record["isInteractive"]).lower()
            if "isInteractive" in record
            else "",
            "risk_level": text(record.get("riskLevelDuringSignIn")),
        }
        at = record.get("createdDateTime")
        if not at:
            raise ValueError("createdDateTime: missing")
        return [
            self.event(
                record, user, kind, at, uid=record.get("id"), attributes=attributes, **fields
            )
        ]
