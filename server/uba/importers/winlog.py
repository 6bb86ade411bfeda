"""Windows Security events: Winlogbeat's JSON (JSON Lines, as its file
output or an Elasticsearch export writes it) and .evtx files (read with the
optional `evtx` package). Field mapping: docs/importers.md.

  4624  An account was successfully logged on          LOGIN_SUCCESS
  4625  An account failed to log on                    LOGIN_FAILURE, reason from
                                                       SubStatus / Status
  4634  An account was logged off                      LOGOUT (session_duration
  4647  User initiated logoff                          when its 4624 was seen)
  4648  A logon was attempted using explicit credentials
                                                       LOGIN_SUCCESS, attribute
                                                       explicit_credentials
  4740  A user account was locked out                  LOGIN_FAILURE, reason
                                                       account_locked_out
  other event ids                                      ignored

The user is TargetUserName, lower-cased, its
domain kept as attribute `domain`. Skipped and counted: machine accounts
(names ending in '$'), and SYSTEM, LOCAL SERVICE, NETWORK SERVICE,
ANONYMOUS LOGON, the window manager's and font driver's DWM-n / UMFD-n
logons. The session is "computer/TargetLogonId". Event ids hash the
computer, channel and record id (unique within a channel's log).

4648 is logged on the machine where the credentials were presented; if they
were wrong, the target logs the 4625.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime

from uba.importers.jsondoc import Ignore, JsonImporter, Skip, dig, text, user_key
from uba.v1 import events_pb2

LOGON_TYPES = {
    "0": "system",
    "2": "interactive",
    "3": "network",
    "4": "batch",
    "5": "service",
    "7": "unlock",
    "8": "network_cleartext",
    "9": "new_credentials",
    "10": "remote_interactive",
    "11": "cached_interactive",
    "12": "cached_remote_interactive",
    "13": "cached_unlock",
}
# NTSTATUS codes of 4625's Status / SubStatus.
FAILURE_REASONS = {
    "0xc0000064": "no_such_user",
    "0xc000006a": "bad_password",
    "0xc000006d": "bad_user_name_or_password",
    "0xc000006e": "account_restriction",
    "0xc000006f": "outside_logon_hours",
    "0xc0000070": "workstation_restriction",
    "0xc0000071": "password_expired",
    "0xc0000072": "account_disabled",
    "0xc0000133": "clock_skew",
    "0xc000015b": "logon_type_not_granted",
    "0xc0000193": "account_expired",
    "0xc0000224": "password_must_change",
    "0xc0000234": "account_locked_out",
    "0xc000005e": "no_logon_servers",
    "0xc0000413": "authentication_firewall",
}
_SERVICE_ACCOUNTS = {"system", "local service", "network service", "anonymous logon"}
_SERVICE_SIDS = {"S-1-5-18", "S-1-5-19", "S-1-5-20", "S-1-5-7"}
# Logons remembered for the duration of their session, at most this many.
MAX_OPEN_LOGONS = 100_000


class WinlogImporter(JsonImporter):
    prefix = "winlog"
    default_source = "windows"

    def __init__(self, **options):
        super().__init__(**options)
        self._logons: OrderedDict[str, datetime] = OrderedDict()

    def state(self) -> dict:
        return {**super().state(), "logons": [[k, v.isoformat()] for k, v in self._logons.items()]}

    def restore(self, state: dict) -> None:
        super().restore(state)
        self._logons = OrderedDict(
            (k, datetime.fromisoformat(v)) for k, v in state.get("logons") or []
        )

    # -- .evtx ------------------------------------------------------------------

    def parse_evtx(self, path: str) -> Iterator[events_pb2.ActivityEvent]:
        """Events of an .evtx file, read with the `evtx` package (a Rust
        parser; installed with the `windows` extra)."""
        try:
            from evtx import PyEvtxParser  # type: ignore[import-not-found,unused-ignore]
        except ImportError:
            raise RuntimeError(
                "reading .evtx files needs the 'evtx' package: pip install 'uba[windows]'"
            ) from None
        import json

        parser = PyEvtxParser(path)
        records = (json.loads(str(r["data"])) for r in parser.records_json() if r is not None)
        yield from self.parse_evtx_records(records)

    def parse_evtx_records(self, records: Iterable[dict]) -> Iterator[events_pb2.ActivityEvent]:
        """Events of records in the shape the evtx parser yields them
        ({"Event": {"System": ..., "EventData": ...}}); numbered by position."""
        return super().parse(_Numbered(evtx_to_winlogbeat(r) for r in records))

    # -- mapping ----------------------------------------------------------------

    def convert(self, record: dict) -> Iterable[events_pb2.ActivityEvent]:
        if "Event" in record and "winlog" not in record:
            record = evtx_to_winlogbeat(record)
        event_id = text(dig(record, "winlog.event_id") or dig(record, "event.code"))
        if event_id not in ("4624", "4625", "4634", "4647", "4648", "4740"):
            raise Ignore
        data = dig(record, "winlog.event_data") or {}
        computer = text(dig(record, "winlog.computer_name") or dig(record, "host.name"))
        at = record.get("@timestamp") or dig(record, "event.created")
        if not at:
            raise ValueError("@timestamp: missing")
        who = "Target"
        name = text(data.get(f"{who}UserName"))
        sid = text(data.get(f"{who}UserSid"))
        if not name:
            raise Skip("no user name")
        if name.endswith("$"):
            raise Skip("machine account")
        lowered = name.lower()
        if (
            lowered in _SERVICE_ACCOUNTS
            or sid in _SERVICE_SIDS
            or lowered.startswith(("dwm-", "umfd-"))
        ):
            raise Skip("system or anonymous logon")
        logon_id = text(data.get(f"{who}LogonId"))
        session = f"{computer}/{logon_id}" if logon_id and logon_id != "0x0" else ""
        logon_type = LOGON_TYPES.get(text(data.get("LogonType")), text(data.get("LogonType")))
        attributes = {
            "windows_event": event_id,
            "domain": text(data.get(f"{who}DomainName")),
            "host": computer,
            "logon_type": logon_type,
            "workstation": text(data.get("WorkstationName")),
            "auth_package": text(data.get("AuthenticationPackageName")),
            "logon_process": text(data.get("LogonProcessName")),
        }
        fields: dict = {
            "source_ip": text(data.get("IpAddress")),
            "device_id": text(data.get("WorkstationName")).lower(),
            "session_id": session,
        }
        if event_id == "4624":
            kind = "login_success"
        elif event_id == "4625":
            kind = "login_failure"
            status, sub = text(data.get("Status")).lower(), text(data.get("SubStatus")).lower()
            code = sub if sub and sub != "0x0" else status
            attributes["reason"] = FAILURE_REASONS.get(code, code)
            attributes["status"] = status
            attributes["sub_status"] = sub
        elif event_id == "4648":
            kind = "login_success"
            attributes["explicit_credentials"] = "true"
            attributes["subject_user"] = text(data.get("SubjectUserName"))
            attributes["target_server"] = text(data.get("TargetServerName"))
            fields["session_id"] = ""
        elif event_id == "4740":
            kind = "login_failure"
            attributes["reason"] = "account_locked_out"
            # 4740's TargetDomainName is the machine the lockout came from.
            attributes["caller_computer"] = attributes.pop("domain")
            fields["session_id"] = ""
        else:
            kind = "logout"
        uid = None
        record_id = text(dig(record, "winlog.record_id"))
        if record_id and computer:
            uid = f"{computer}\x1f{text(dig(record, 'winlog.channel'))}\x1f{record_id}"
        event = self.event(
            record, user_key(name), kind, at, uid=uid, attributes=attributes, **fields
        )
        if kind == "login_success" and session:
            self._logons[session] = event.occurred_at.ToDatetime(UTC)
            if len(self._logons) > MAX_OPEN_LOGONS:
                self._logons.popitem(last=False)
        elif kind == "logout" and session:
            start = self._logons.pop(session, None)
            end = event.occurred_at.ToDatetime(UTC)
            if start is not None and end >= start:
                event.session_duration.FromTimedelta(end - start)
        return [event]


class _Numbered:
    """Records given as dicts, passed to read_records as JSON Lines."""

    def __init__(self, records: Iterable[dict]):
        self.records = records

    def __iter__(self):
        import json

        for record in self.records:
            yield json.dumps(record, default=str) + "\n"


def evtx_to_winlogbeat(record: dict) -> dict:
    """An event as the evtx parser yields it, in the Winlogbeat shape the
    mapping reads (winlog.event_id, winlog.event_data, ...)."""
    event = record.get("Event") or {}
    system = event.get("System") or {}
    event_id = system.get("EventID")
    if isinstance(event_id, dict):  # {"#text": 4624, "#attributes": {"Qualifiers": ...}}
        event_id = event_id.get("#text")
    created = dig(system, "TimeCreated.#attributes.SystemTime")
    data = event.get("EventData") or {}
    if isinstance(data, dict) and isinstance(data.get("Data"), list):
        # <Data Name="..."> elements the parser could not name-map
        data = {
            d["#attributes"]["Name"]: d.get("#text")
            for d in data["Data"]
            if isinstance(d, dict) and "#attributes" in d
        }
    return {
        "@timestamp": created,
        "winlog": {
            "event_id": str(event_id) if event_id is not None else "",
            "record_id": system.get("EventRecordID"),
            "computer_name": system.get("Computer"),
            "channel": system.get("Channel"),
            "provider_name": dig(system, "Provider.#attributes.Name"),
            "event_data": {
                k: v
                for k, v in (data if isinstance(data, dict) else {}).items()
                if k != "#attributes"
            },
        },
    }
