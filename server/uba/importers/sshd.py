"""OpenSSH authentication logs in syslog format (auth.log, secure, messages).

What becomes an event:

  Accepted <method> for U from IP port N ssh2           LOGIN_SUCCESS
  Failed <method> for [invalid user] U from IP port N   LOGIN_FAILURE
  message repeated K times: [ Failed ... ]              K x LOGIN_FAILURE
  Invalid user U from IP                                LOGIN_FAILURE (see below)
  pam_unix(sshd:auth): authentication failure; ... rhost=H user=U
  sshd(pam_unix)[pid]: authentication failure; ... rhost=H user=U
                                                        LOGIN_FAILURE (see below)
  [sshd(pam_unix)] session opened for user U            LOGIN_SUCCESS, only when no
                                                        Accepted line opened that pid
  session closed for user U / a disconnect ending an open session
                                                        LOGOUT with session_duration

Counting each attempt once. One password attempt of an unknown user leaves
three lines with the same pid: "Invalid user U from IP", PAM's
"authentication failure; ... rhost=IP" and "Failed password for invalid
user U from IP". "Invalid user" and the PAM line open a *pending* attempt
of their pid; the next "Failed ..." line of that pid completes it, and the
pair (or triple) becomes one LOGIN_FAILURE with the Failed line's time and
id. A pending attempt that no Failed line completes (old sshd(pam_unix)
logs have none; a scanner may hang up after "Invalid user") becomes a
LOGIN_FAILURE on its own when its pid logs something else, falls idle for
two minutes, or the file ends. "PAM N more authentication failures" only
repeats what the "message repeated" or Failed lines already counted, so it
is ignored. Likewise a session's end is counted once: the first of the
disconnect and "session closed" lines of that pid.

A failure that names no user (PAM lines of unknown users without an
"Invalid user" line) is skipped and counted: uba's events belong to a user.
`rhost` may be a host name: it is kept as attribute `rhost`, and
`source_ip` is set only when it is an address.

Syslog lines carry no year and no zone: both are options (the year rolls
over when the months go from December back to January). ISO 8601 stamps
(rsyslog's high-precision format) are read as they are. RFC 5424 lines
(`<34>1 2026-10-11T22:14:15.003Z host sshd 1234 - - message`, as syslog-ng,
rsyslog's RFC5424 template and journald forwarders send them) are read
too, their structured data skipped; so are BSD lines with a <PRI> prefix.

Event ids hash the year, the line's text and the number of identical lines
before it within the same second, so re-importing a file (or a rotated copy
of it) stores nothing twice, whatever the file is called.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from uba.domain.validation import is_ip
from uba.importers import ImportStats, Occurrences, stable_id
from uba.v1 import events_pb2

LOGIN = events_pb2.ACTIVITY_TYPE_LOGIN_SUCCESS
FAILURE = events_pb2.ACTIVITY_TYPE_LOGIN_FAILURE
LOGOUT = events_pb2.ACTIVITY_TYPE_LOGOUT
_TYPE_NAMES = {LOGIN: "login_success", FAILURE: "login_failure", LOGOUT: "logout"}

MONTHS = {
    m: i
    for i, m in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"),
        start=1,
    )
}
# A pending attempt or a finished connection is forgotten after this much
# log time without a line of its pid.
IDLE_SECONDS = 120.0
# Open sessions are kept longer, up to this many.
MAX_OPEN_SESSIONS = 100_000
# Of those, what a follow checkpoint keeps (older ones lose the session
# duration of their logout after a restart).
MAX_SAVED_SESSIONS = 10_000

_BSD = re.compile(
    r"(?P<mon>[A-Z][a-z]{2}) +(?P<day>\d{1,2}) (?P<time>\d{2}:\d{2}:\d{2}) (?P<rest>.*)"
)
_ISO = re.compile(
    r"(?P<iso>\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?) (?P<rest>.*)"
)
# RFC 5424: <PRI>VERSION TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA [MSG]
_RFC5424 = re.compile(
    r"<\d{1,3}>\d{1,2} (?P<iso>\S+) (?P<host>\S+) (?P<app>\S+) (?P<pid>\S+) (?P<msgid>\S+)"
    r" (?P<sd>-|(?:\[(?:[^\]\\]|\\.)*\])+)(?: (?P<msg>.*))?"
)
# The <PRI> a BSD line carries when read off the wire rather than from a file.
_PRI = re.compile(r"<\d{1,3}>")
_HEAD = re.compile(r"(?P<host>\S+) (?P<prog>[^\[:]+?)(?:\[(?P<pid>\d+)\])?: (?P<msg>.*)")
_SSHD = re.compile(r"sshd(?:-session|-auth)?(?:\(pam_unix\))?")

_ACCEPTED = re.compile(
    r"Accepted (?P<method>\S+) for (?P<user>.+?) from (?P<ip>\S+) port (?P<port>\d+)\b.*"
)
_FAILED = re.compile(
    r"Failed (?P<method>\S+) for (?P<invalid>invalid user )?(?P<user>.*?) from (?P<ip>\S+)"
    r"(?: port (?P<port>\d+))?(?: ssh2)?(?: \[preauth\])?"
)
_INVALID = re.compile(
    r"Invalid user (?P<user>.*?) from (?P<ip>\S+)(?: port (?P<port>\d+))?(?: \[preauth\])?"
)
_PAM_FAILURE = re.compile(r"(?:pam_unix\(sshd:auth\): )?authentication failure; (?P<fields>.*)")
_OPENED = re.compile(r"(?:pam_unix\(sshd:session\): )?session opened for user (?P<user>[^\s(]+)")
_CLOSED = re.compile(r"(?:pam_unix\(sshd:session\): )?session closed for user (?P<user>[^\s(]+)")
_REPEATED = re.compile(r"message repeated (?P<n>\d+) times: \[ ?(?P<msg>.*?) ?\]")
_DISCONNECT = re.compile(
    r"(?:error: )?(?:Received disconnect from|Disconnected from|Connection closed by"
    r"|Connection reset by|Disconnecting\b|Timeout, client not responding)"
)
# sshd lines that record no user activity of their own.
_NOISE = (
    "reverse mapping checking",
    "input_userauth_request",
    "pam_unix(sshd:auth): check pass",
    "check pass;",
    "Did not receive identification string",
    "PAM ",
    "fatal:",
    "error:",
    "Server listening",
    "Received signal",
    "Bad protocol version",
    "Address ",
    "Connection from",
    "Postponed",
    "Starting session",
    "User child",
    "Transferred:",
    "Close session",
    "subsystem request",
    "Protocol major versions differ",
    "Unable to negotiate",
    "banner exchange",
    "pam_unix(sshd:account)",
    "syslogin_perform_logout",
    "Read from socket failed",
    "Exiting on signal",
    "userauth_",
    "Received SIGHUP",
    "Server terminated",
    "debug",
    "Corrupted MAC",
    "Invalid user  from",
    "Connection closed by authenticating",
    "Bad packet length",
    "Disconnected from invalid",
    "ssh_dispatch_run_fatal",
    "kex_exchange_identification",
    "drop connection",
    "Accepted key",
    "Found matching",
    "pam_systemd",
    "Postponed",
    "Authorized to",
    "error: kex",
    "send_error",
)


@dataclass
class _Line:
    """The parts of one syslog line an event is made from."""

    no: int
    text: str
    at: datetime
    host: str
    pid: str
    year: int
    occurrence: int


@dataclass
class _Attempt:
    """A failed attempt seen in an 'Invalid user' or PAM line, waiting for
    the 'Failed ...' line of the same pid that completes it."""

    line: _Line
    user: str
    ip: str = ""
    rhost: str = ""
    port: str = ""
    invalid_user: bool = False


@dataclass
class _Conn:
    """What is known about one sshd process (host, pid)."""

    last_ts: float
    pending: _Attempt | None = None
    session_user: str = ""
    session_start: datetime | None = None
    session_id: str = ""
    session_ip: str = ""
    session_closed: bool = False


class _Clock:
    """Syslog's 'Dec 10 06:55:46' to an aware UTC datetime."""

    def __init__(self, year: int | None, tz: str):
        self.zone = ZoneInfo(tz)
        self.year = year
        self.guess_year = year is None
        self.last_month = 0

    def bsd(self, mon: str, day: str, hms: str) -> datetime:
        month = MONTHS[mon]
        hour, minute, second = (int(x) for x in hms.split(":"))
        if self.year is None:
            # No year given: this year, unless that puts the first line in
            # the future (a December log read in January).
            now = datetime.now(self.zone)
            self.year = now.year
            if datetime(self.year, month, int(day), hour, minute, second, tzinfo=self.zone) > now:
                self.year -= 1
        elif self.last_month and month < self.last_month - 6:
            self.year += 1  # December -> January
        self.last_month = month
        return datetime(
            self.year, month, int(day), hour, minute, second, tzinfo=self.zone
        ).astimezone(UTC)

    def iso(self, text: str) -> datetime:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=self.zone)
        return moment.astimezone(UTC)


class SshdImporter:
    """Reads OpenSSH syslog lines; see the module docstring for the rules."""

    def __init__(
        self,
        source_name: str = "",
        year: int | None = None,
        timezone: str = "UTC",
        source: str = "sshd",
        **_ignored,
    ):
        self.source_name = source_name
        self.source = source or "sshd"
        self.stats = ImportStats()
        self._clock = _Clock(year, timezone)
        self._occurrences = Occurrences()
        self._conns: OrderedDict[tuple[str, str], _Conn] = OrderedDict()
        self._sessions: OrderedDict[tuple[str, str], _Conn] = OrderedDict()  # idle but open
        self._now = 0.0

    # -- resuming -------------------------------------------------------------

    def state(self) -> dict:
        """Everything carried from one line to the next (year, identical
        lines within a second, pending attempts, open sessions) as JSON,
        so `uba ingest --follow` resumes after a restart as if it had
        never stopped."""
        return {
            "year": self._clock.year,
            "last_month": self._clock.last_month,
            "occurrences": self._occurrences.state(),
            "now": self._now,
            "conns": [[*key, _conn_state(c)] for key, c in self._conns.items()],
            # The newest open sessions only: a checkpoint is written per batch.
            "sessions": [
                [*key, _conn_state(c)]
                for key, c in list(self._sessions.items())[-MAX_SAVED_SESSIONS:]
            ],
        }

    def restore(self, state: dict) -> None:
        if state.get("year") is not None:
            self._clock.year = state["year"]
        self._clock.last_month = state.get("last_month", 0)
        self._occurrences.restore(state.get("occurrences") or {})
        self._now = state.get("now", 0.0)
        self._conns = OrderedDict(((h, p), _conn_of(c)) for h, p, c in state.get("conns") or [])
        self._sessions = OrderedDict(
            ((h, p), _conn_of(c)) for h, p, c in state.get("sessions") or []
        )

    # -- reading --------------------------------------------------------------

    def parse(self, lines: Iterable[str]) -> Iterator[events_pb2.ActivityEvent]:
        for no, raw in enumerate(lines, start=1):
            self.stats.lines += 1
            text = raw.rstrip("\r\n").rstrip()
            if not text:
                self.stats.ignored += 1
                continue
            yield from self._line(no, text)
        for conn in list(self._conns.values()):
            yield from self._flush(conn)

    def _line(self, no: int, text: str) -> Iterator[events_pb2.ActivityEvent]:
        if (m := _RFC5424.fullmatch(text)) is not None:
            header = self._rfc5424(no, text, m)
        else:
            header = self._bsd(no, _PRI.sub("", text, count=1), text)
        if header is None:
            return
        at, stamp, host, prog, pid, msg = header
        if not _SSHD.fullmatch(prog):
            self.stats.ignored += 1  # another program's line
            return
        line = _Line(
            no,
            text,
            at,
            host,
            pid,
            self._clock.year or at.year,
            self._occurrences.next(stamp, text),
        )
        yield from self._expire(at.timestamp())
        yield from self._message(line, msg.strip())

    def _bsd(self, no: int, body: str, text: str):
        """(time, stamp, host, program, pid, message) of a BSD (RFC 3164)
        or rsyslog ISO line, or None after counting it as unparsed."""
        stamp, rest = self._split_time(body)
        if stamp is None:
            self.stats.unparsable(no, "not a syslog line", text)
            return None
        try:
            at = (
                self._clock.bsd(stamp["mon"], stamp["day"], stamp["time"])
                if "mon" in stamp
                else self._clock.iso(stamp["iso"])
            )
        except (ValueError, KeyError) as exc:
            self.stats.unparsable(no, f"bad timestamp: {exc}", text)
            return None
        head = _HEAD.fullmatch(rest)
        if head is None:
            self.stats.unparsable(no, "no 'host program[pid]:' part", text)
            return None
        return (
            at,
            body[: len(body) - len(rest)],
            head["host"],
            head["prog"],
            head["pid"] or "",
            head["msg"],
        )

    def _rfc5424(self, no: int, text: str, m: re.Match):
        """The same of an RFC 5424 line: <PRI>1 TIMESTAMP HOST APP PROCID
        MSGID [SD] MSG, '-' for values not given."""
        if m["iso"] == "-":
            self.stats.unparsable(no, "RFC 5424 line without a timestamp", text)
            return None
        try:
            at = self._clock.iso(m["iso"])
        except ValueError as exc:
            self.stats.unparsable(no, f"bad timestamp: {exc}", text)
            return None
        nil = lambda v: "" if v == "-" else v  # noqa: E731
        msg = (m["msg"] or "").removeprefix("\ufeff")
        return at, m["iso"], nil(m["host"]), nil(m["app"]), nil(m["pid"]), msg

    @staticmethod
    def _split_time(text: str):
        m = _BSD.fullmatch(text) or _ISO.fullmatch(text)
        if m is None:
            return None, ""
        return m.groupdict(), m["rest"]

    # -- connection state -----------------------------------------------------

    def _conn(self, line: _Line) -> _Conn:
        key = (line.host, line.pid)
        conn = (
            self._conns.pop(key, None)
            or self._sessions.pop(key, None)
            or _Conn(line.at.timestamp())
        )
        conn.last_ts = line.at.timestamp()
        self._conns[key] = conn  # most recently used last
        return conn

    def _expire(self, ts: float) -> Iterator[events_pb2.ActivityEvent]:
        """Settles connections idle for IDLE_SECONDS of log time, so memory
        stays bounded on any file."""
        self._now = max(self._now, ts)
        while self._conns:
            key, conn = next(iter(self._conns.items()))
            if conn.last_ts > self._now - IDLE_SECONDS:
                return
            del self._conns[key]
            yield from self._flush(conn)
            if conn.session_user and not conn.session_closed:
                self._sessions[key] = conn
                if len(self._sessions) > MAX_OPEN_SESSIONS:
                    self._sessions.popitem(last=False)

    def _flush(self, conn: _Conn) -> Iterator[events_pb2.ActivityEvent]:
        """Emits the pending attempt of a connection on its own."""
        attempt, conn.pending = conn.pending, None
        if attempt is None:
            return
        if not attempt.user:
            self.stats.skip("authentication failure without a user name")
            return
        yield self._failure(attempt.line, attempt)

    # -- messages -------------------------------------------------------------

    def _message(self, line: _Line, msg: str) -> Iterator[events_pb2.ActivityEvent]:
        if m := _FAILED.fullmatch(msg):
            yield from self._failed(line, m)
        elif m := _REPEATED.fullmatch(msg):
            inner = _FAILED.fullmatch(m["msg"])
            if inner is None:
                self.stats.ignored += 1
                return
            for k in range(int(m["n"])):
                yield self._failure(line, self._attempt(line, inner), repeat=k + 1)
        elif m := _INVALID.fullmatch(msg):
            conn = self._conn(line)
            yield from self._flush(conn)
            conn.pending = _Attempt(
                line, m["user"].strip(), m["ip"], port=m["port"] or "", invalid_user=True
            )
        elif m := _PAM_FAILURE.fullmatch(msg):
            yield from self._pam_failure(line, m)
        elif m := _ACCEPTED.fullmatch(msg):
            conn = self._conn(line)
            yield from self._flush(conn)
            session_id = f"{line.host}/sshd[{line.pid}]@{int(line.at.timestamp())}"
            conn.session_user, conn.session_start, conn.session_closed = m["user"], line.at, False
            conn.session_id, conn.session_ip = session_id, m["ip"]
            yield self._event(
                line,
                LOGIN,
                m["user"],
                m["ip"],
                session_id=session_id,
                attributes={"auth_method": m["method"], "port": m["port"]},
            )
        elif m := _OPENED.match(msg):
            conn = self._conn(line)
            if conn.session_user and not conn.session_closed:
                self.stats.ignored += 1  # the Accepted line already counted this login
                return
            session_id = f"{line.host}/sshd[{line.pid}]@{int(line.at.timestamp())}"
            conn.session_user, conn.session_start, conn.session_closed = m["user"], line.at, False
            conn.session_id, conn.session_ip = session_id, ""
            yield self._event(
                line,
                LOGIN,
                m["user"],
                "",
                session_id=session_id,
                attributes={"evidence": "pam session opened"},
            )
        elif m := _CLOSED.fullmatch(msg):
            conn = self._conn(line)
            yield from self._flush(conn)
            yield from self._session_end(line, conn, m["user"])
        elif _DISCONNECT.match(msg):
            conn = self._conn(line)
            yield from self._flush(conn)
            if "[preauth]" in msg or not conn.session_user or conn.session_closed:
                self.stats.ignored += 1  # no session ended here
                return
            yield from self._session_end(line, conn, conn.session_user)
        elif msg.startswith(_NOISE):
            self.stats.ignored += 1
        else:
            self.stats.unparsable(line.no, "sshd message not understood", line.text)

    def _attempt(self, line: _Line, m: re.Match) -> _Attempt:
        return _Attempt(
            line, m["user"].strip(), m["ip"], port=m["port"] or "", invalid_user=bool(m["invalid"])
        )

    def _failed(self, line: _Line, m: re.Match) -> Iterator[events_pb2.ActivityEvent]:
        conn = self._conn(line)
        attempt = self._attempt(line, m)
        pending = conn.pending
        if pending is not None and pending.user in ("", attempt.user):
            # Completes the attempt its "Invalid user" / PAM line opened.
            conn.pending = None
            attempt.rhost = pending.rhost
            attempt.invalid_user = attempt.invalid_user or pending.invalid_user
            self.stats.merged += 1
        else:
            yield from self._flush(conn)
        if not attempt.user:
            self.stats.skip("authentication failure without a user name")
            return
        yield self._failure(line, attempt, method=m["method"])

    def _pam_failure(self, line: _Line, m: re.Match) -> Iterator[events_pb2.ActivityEvent]:
        fields = dict(part.split("=", 1) for part in m["fields"].split() if "=" in part)
        user, rhost = fields.get("user", "").strip(), fields.get("rhost", "").strip()
        conn = self._conn(line)
        pending = conn.pending
        if pending is not None and (not user or not pending.user or user == pending.user):
            # PAM's view of the attempt an "Invalid user" line opened.
            pending.user = pending.user or user
            pending.rhost = pending.rhost or rhost
            self.stats.merged += 1
            return
        yield from self._flush(conn)
        conn.pending = _Attempt(line, user, rhost if is_ip(rhost) else "", rhost=rhost)

    def _session_end(
        self, line: _Line, conn: _Conn, user: str
    ) -> Iterator[events_pb2.ActivityEvent]:
        if conn.session_closed:
            self.stats.ignored += 1  # the other end-of-session line already counted
            return
        fields: dict = {}
        if conn.session_user and conn.session_start is not None:
            fields = dict(session_id=conn.session_id, session_duration=line.at - conn.session_start)
        conn.session_closed = True
        yield self._event(line, LOGOUT, user, conn.session_ip, **fields)

    # -- events ---------------------------------------------------------------

    def _failure(
        self, line: _Line, attempt: _Attempt, method: str = "", repeat: int = 0
    ) -> events_pb2.ActivityEvent:
        attributes = {"port": attempt.port, "auth_method": method}
        if attempt.rhost and attempt.rhost != attempt.ip:
            attributes["rhost"] = attempt.rhost
        if attempt.invalid_user:
            attributes["invalid_user"] = "true"
        ip = attempt.ip if is_ip(attempt.ip) else ""
        if attempt.ip and not ip:
            attributes["rhost"] = attempt.ip
        return self._event(line, FAILURE, attempt.user, ip, repeat=repeat, attributes=attributes)

    def _event(
        self,
        line: _Line,
        kind: events_pb2.ActivityType,
        user: str,
        ip: str,
        repeat: int = 0,
        attributes: dict | None = None,
        session_id: str = "",
        session_duration=None,
    ) -> events_pb2.ActivityEvent:
        e = events_pb2.ActivityEvent(
            event_id=stable_id("sshd", line.year, line.text, line.occurrence, repeat),
            user_id=user,
            type=kind,
            source=self.source,
            session_id=session_id,
            source_ip=ip if is_ip(ip) else "",
        )
        e.occurred_at.FromDatetime(line.at)
        if session_duration is not None:
            e.session_duration.FromTimedelta(session_duration)
        e.attributes["host"] = line.host
        if line.pid:
            e.attributes["pid"] = line.pid
        e.attributes.update({k: v for k, v in (attributes or {}).items() if v})
        self.stats.events += 1
        self.stats.by_type[_TYPE_NAMES[kind]] += 1
        return e


# -- state as JSON (for the follow checkpoint) ---------------------------------


def _line_state(line: _Line) -> list:
    return [
        line.no,
        line.text,
        line.at.isoformat(),
        line.host,
        line.pid,
        line.year,
        line.occurrence,
    ]


def _line_of(v: list) -> _Line:
    return _Line(v[0], v[1], datetime.fromisoformat(v[2]), v[3], v[4], v[5], v[6])


def _conn_state(conn: _Conn) -> dict:
    out: dict = {
        "last_ts": conn.last_ts,
        "session_user": conn.session_user,
        "session_start": conn.session_start.isoformat() if conn.session_start else None,
        "session_id": conn.session_id,
        "session_ip": conn.session_ip,
        "session_closed": conn.session_closed,
    }
    if (a := conn.pending) is not None:
        out["pending"] = {
            "line": _line_state(a.line),
            "user": a.user,
            "ip": a.ip,
            "rhost": a.rhost,
            "port": a.port,
            "invalid_user": a.invalid_user,
        }
    return out


def _conn_of(v: dict) -> _Conn:
    pending = None
    if (a := v.get("pending")) is not None:
        pending = _Attempt(
            _line_of(a["line"]), a["user"], a["ip"], a["rhost"], a["port"], a["invalid_user"]
        )
    start = v.get("session_start")
    return _Conn(
        last_ts=v["last_ts"],
        pending=pending,
        session_user=v["session_user"],
        session_start=datetime.fromisoformat(start) if start else None,
        session_id=v["session_id"],
        session_ip=v["session_ip"],
        session_closed=v["session_closed"],
    )
