"""Elastic Common Schema events (Filebeat, Winlogbeat, Auditbeat, Elastic
Agent output) as JSON Lines or a JSON array; nested or dotted field names.
Field mapping: docs/importers.md.

  event.category authentication, event.outcome success   LOGIN_SUCCESS
  event.category authentication, event.outcome failure   LOGIN_FAILURE
  event.category authentication or session, event.type end
                                                          LOGOUT
  event.category session, event.type start                SESSION_START
  event.category web (or api)                             API_CALL

Authentication records with outcome unknown, and records of other
categories (process, network, file ...), record no user activity uba
models and are ignored. Event ids hash event.id when present.
"""

from __future__ import annotations

from collections.abc import Iterable

from uba.importers.jsondoc import Ignore, JsonImporter, Skip, dig, text
from uba.v1 import events_pb2


def _set(value: object) -> set[str]:
    if value is None:
        return set()
    items = value if isinstance(value, list) else [value]
    return {str(v).lower() for v in items}


class EcsImporter(JsonImporter):
    prefix = "ecs"
    default_source = "ecs"

    def convert(self, record: dict) -> Iterable[events_pb2.ActivityEvent]:
        categories = _set(dig(record, "event.category"))
        types = _set(dig(record, "event.type"))
        outcome = text(dig(record, "event.outcome")).lower()
        if categories & {"authentication", "session"} and "end" in types:
            kind = "logout"
        elif "authentication" in categories:
            if outcome == "success":
                kind = "login_success"
            elif outcome == "failure":
                kind = "login_failure"
            else:
                raise Skip(f"authentication with event.outcome {outcome or 'missing'}")
        elif "session" in categories and "start" in types:
            kind = "session_start"
        elif categories & {"web", "api"}:
            kind = "api_call"
        else:
            raise Ignore
        user = text(dig(record, "user.name") or dig(record, "user.email") or dig(record, "user.id"))
        at = dig(record, "@timestamp") or dig(record, "event.created")
        if not at:
            raise ValueError("@timestamp: missing")
        fields: dict = {
            "source_ip": text(dig(record, "source.ip") or dig(record, "client.ip")),
            "user_agent": text(dig(record, "user_agent.original")),
            "city": text(dig(record, "source.geo.city_name")),
            "timezone": text(dig(record, "source.geo.timezone")),
            "session_id": text(dig(record, "session.id") or dig(record, "winlog.logon.id")),
        }
        country = text(dig(record, "source.geo.country_iso_code")).upper()
        if len(country) == 2:
            fields["country_code"] = country
        location = dig(record, "source.geo.location")
        if isinstance(location, dict) and location.get("lat") is not None:
            fields["latitude"], fields["longitude"] = float(location["lat"]), float(location["lon"])
        if kind == "api_call":
            fields["api_path"] = text(dig(record, "url.path") or dig(record, "url.original"))
            fields["api_method"] = text(dig(record, "http.request.method")).upper()
            fields["status_code"] = int(dig(record, "http.response.status_code") or 0)
            fields["bytes_transferred"] = int(
                dig(record, "http.response.body.bytes") or dig(record, "http.response.bytes") or 0
            )
        attributes = {
            "action": text(dig(record, "event.action")),
            "outcome": outcome,
            "reason": text(dig(record, "event.reason")),
            "host": text(dig(record, "host.name")),
            "domain": text(dig(record, "user.domain")),
            "dataset": text(dig(record, "event.dataset")),
        }
        return [
            self.event(
                record,
                user,
                kind,
                at,
                uid=text(dig(record, "event.id")),
                attributes=attributes,
                **fields,
            )
        ]
