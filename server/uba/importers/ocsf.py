"""OCSF 1.x events as JSON Lines (or a JSON array): Authentication (class
3002) and API Activity (class 6003). Field mapping: docs/importers.md.

Authentication: activity_id 1 (Logon) with status_id 1 is a LOGIN_SUCCESS,
with status_id 2 a LOGIN_FAILURE; 2 (Logoff) a LOGOUT. A record with
`is_mfa` true and activity_id 99 (Other) is the multi-factor step itself:
status_id 1 MFA_APPROVED, 2 MFA_DENIED, anything else (0 Unknown, no
status) MFA_CHALLENGE, a prompt not answered yet. Kerberos ticket
activities (3-5) and preauthentication (6) are no logons of a person:
skipped and counted. The authenticating user is `user`; `actor.user`
when a producer left `user` out.

API Activity: every record is an API_CALL; the endpoint is
http_request.url.path, else api.operation; the method http_request.
http_method, else the one the activity implies (1 Create POST, 2 Read GET,
3 Update PUT, 4 Delete DELETE).

Other classes are ignored. Event ids hash metadata.uid when present.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from uba.importers.jsondoc import Ignore, JsonImporter, Skip, dig, epoch_ms, text
from uba.v1 import events_pb2

AUTHENTICATION = 3002
API_ACTIVITY = 6003
_API_METHODS = {1: "POST", 2: "GET", 3: "PUT", 4: "DELETE"}
_LOGON_TYPES = {
    0: "system",
    2: "interactive",
    3: "network",
    4: "batch",
    5: "os_service",
    7: "unlock",
    8: "network_cleartext",
    9: "new_credentials",
    10: "remote_interactive",
    11: "cached_interactive",
    12: "cached_remote_interactive",
    13: "cached_unlock",
}


def _int(value: Any, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


class OcsfImporter(JsonImporter):
    prefix = "ocsf"
    default_source = "ocsf"

    def convert(self, record: dict) -> Iterable[events_pb2.ActivityEvent]:
        class_uid = _int(record.get("class_uid"))
        if class_uid == AUTHENTICATION:
            return [self._authentication(record)]
        if class_uid == API_ACTIVITY:
            return [self._api(record)]
        raise Ignore

    def _common(self, record: dict) -> dict:
        src = record.get("src_endpoint") or {}
        loc = src.get("location") or {}
        fields: dict = {
            "source_ip": text(src.get("ip")),
            "user_agent": text(dig(record, "http_request.user_agent")),
            "session_id": text(dig(record, "session.uid") or dig(record, "actor.session.uid")),
            "device_id": text(dig(record, "device.uid")),
            "city": text(loc.get("city")),
        }
        country = text(loc.get("country")).upper()
        if len(country) == 2:
            fields["country_code"] = country
        if loc.get("lat") is not None and loc.get("long") is not None:
            fields["latitude"], fields["longitude"] = float(loc["lat"]), float(loc["long"])
        product = dig(record, "metadata.product.name")
        if product:
            fields["source"] = f"ocsf:{product}"
        return fields

    @staticmethod
    def _user(user: object) -> str:
        if not isinstance(user, dict):
            return ""
        return text(user.get("name") or user.get("email_addr") or user.get("uid"))

    def _at(self, record: dict):
        if record.get("time") is not None:
            return epoch_ms(record["time"])
        if record.get("time_dt"):
            return record["time_dt"]
        raise ValueError("time: missing")

    def _authentication(self, record: dict) -> events_pb2.ActivityEvent:
        activity, status = _int(record.get("activity_id")), _int(record.get("status_id"))
        mfa = bool(record.get("is_mfa"))
        if activity == 1:
            if status == 1:
                kind = "login_success"
            elif status == 2:
                kind = "login_failure"
            elif mfa:
                kind = "mfa_challenge"
            else:
                raise Skip(f"logon with status_id {status} (neither success nor failure)")
        elif activity == 2:
            kind = "logout"
        elif activity == 99 and mfa:
            kind = {1: "mfa_approved", 2: "mfa_denied"}.get(status, "mfa_challenge")
        else:
            raise Skip(f"authentication activity_id {activity} is no logon or logoff")
        user = self._user(record.get("user")) or self._user(dig(record, "actor.user"))
        attributes = {
            "mfa": "true" if mfa else "",
            "status_detail": text(record.get("status_detail")),
            "status_code": text(record.get("status_code")),
            "logon_type": _LOGON_TYPES.get(_int(record.get("logon_type_id"), -1), ""),
            "auth_protocol": text(record.get("auth_protocol")),
            "dst": text(dig(record, "dst_endpoint.hostname") or dig(record, "dst_endpoint.ip")),
        }
        return self.event(
            record,
            user,
            kind,
            self._at(record),
            uid=dig(record, "metadata.uid"),
            attributes=attributes,
            **self._common(record),
        )

    def _api(self, record: dict) -> events_pb2.ActivityEvent:
        activity, status = _int(record.get("activity_id")), _int(record.get("status_id"))
        user = self._user(dig(record, "actor.user"))
        path = text(dig(record, "http_request.url.path")) or text(dig(record, "api.operation"))
        method = text(dig(record, "http_request.http_method")) or _API_METHODS.get(activity, "")
        code = _int(dig(record, "http_response.code"))
        if not code and status == 2:
            code = 400  # a failure without an HTTP code still counts as an error
        attributes = {
            "api_service": text(dig(record, "api.service.name")),
            "operation": text(dig(record, "api.operation")),
            "status": {1: "success", 2: "failure"}.get(status, ""),
        }
        return self.event(
            record,
            user,
            "api_call",
            self._at(record),
            uid=dig(record, "metadata.uid"),
            attributes=attributes,
            api_path=path,
            api_method=method.upper(),
            status_code=code,
            **self._common(record),
        )
