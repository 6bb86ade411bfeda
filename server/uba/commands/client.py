"""Client-side commands: `uba logs`, `export`, `alerts`, `dashboard`,
`baseline`, `capabilities`; and what every client command shares (the
ClientSettings, error handling, output helpers).

Exit codes scripts can trust: 0 ok, 1 the server said no (or could not be
reached, or a partial failure), 2 usage. Errors are one line on stderr.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import sys
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from google.protobuf.json_format import MessageToDict

from uba.domain.validation import IDENTIFIER_REFUSED

UTC = UTC


class UsageError(Exception):
    """Bad arguments the parser could not catch; exit code 2."""


# -- settings ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClientSettings:
    """How client commands reach the server: flags, then UBA_* environment
    variables, then these defaults (field FOO is flag --foo, variable UBA_FOO)."""

    server: str = "127.0.0.1:50051"
    api_key: str = ""
    tls: bool = False
    ca_file: str = ""
    client_cert: str = ""
    client_key: str = ""
    timeout: float = 10.0
    data_dir: str = "data"

    HELP = {
        "server": "the uba server HOST:PORT [UBA_SERVER, 127.0.0.1:50051]",
        "api_key": "API key, sent as 'authorization: Bearer KEY' [UBA_API_KEY]",
        "tls": "connect with TLS, checking the server against the system's roots [UBA_TLS]",
        "ca_file": "connect with TLS, checking the server against this PEM file [UBA_CA_FILE]",
        "client_cert": "PEM certificate to present to a server that requires one (with --tls or --ca-file) "
        "[UBA_CLIENT_CERT]",
        "client_key": "PEM private key of --client-cert [UBA_CLIENT_KEY]",
        "timeout": "seconds each call may take [UBA_TIMEOUT, 10]",
        "data_dir": "without --api-key, read the key from DATA_DIR/admin.key if it exists [UBA_DATA_DIR, ./data]",
    }

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        group = parser.add_argument_group("connection")
        for f in fields(cls):
            flag = "--" + f.name.replace("_", "-")
            if f.type in (bool, "bool"):
                group.add_argument(flag, action="store_true", default=None, help=cls.HELP[f.name])
            else:
                group.add_argument(
                    flag, default=None, metavar=f.name.upper(), help=cls.HELP[f.name]
                )

    @classmethod
    def load(
        cls, args: argparse.Namespace | None = None, environ: Mapping[str, str] | None = None
    ) -> ClientSettings:
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = getattr(args, f.name, None) if args is not None else None
            if raw is None:
                raw = environ.get("UBA_" + f.name.upper())
            if raw is None or raw == "":
                continue
            if f.type in (bool, "bool"):
                values[f.name] = (
                    raw
                    if isinstance(raw, bool)
                    else raw.strip().lower() in ("1", "true", "yes", "on")
                )
            elif f.type in (float, "float"):
                try:
                    values[f.name] = float(raw)
                except ValueError:
                    raise UsageError(
                        f"--{f.name.replace('_', '-')}: not a number: {raw!r}"
                    ) from None
            else:
                values[f.name] = raw
        return cls(**values)

    def key(self) -> str:
        """--api-key / UBA_API_KEY, else the admin key a local server wrote
        on its first start (DATA_DIR/admin.key), else none."""
        if self.api_key:
            return self.api_key
        try:
            return (Path(self.data_dir) / "admin.key").read_text().strip()
        except OSError:
            return ""

    def client(self):
        from uba_client import UbaClient

        tls: Any = None
        if self.ca_file:
            try:
                tls = open(self.ca_file, "rb").read()
            except OSError as exc:
                raise UsageError(f"--ca-file: {exc.strerror}: {self.ca_file}") from None
        elif self.tls:
            tls = True
        if (self.client_cert or self.client_key) and tls is None:
            raise UsageError("--client-cert needs TLS: add --tls or --ca-file")
        if bool(self.client_cert) != bool(self.client_key):
            raise UsageError("--client-cert and --client-key go together")
        try:
            return UbaClient(
                self.server,
                api_key=self.key() or None,
                tls=tls,
                timeout=self.timeout,
                client_cert=self.client_cert or None,
                client_key=self.client_key or None,
            )
        except OSError as exc:
            raise UsageError(f"cannot read {exc.filename}: {exc.strerror}") from None


def common_parser() -> argparse.ArgumentParser:
    """The options every client command takes, as an argparse parent."""
    parent = argparse.ArgumentParser(add_help=False)
    ClientSettings.add_arguments(parent)
    return parent


def json_parser() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--json", action="store_true", help="print data as JSON instead of text")
    return parent


def guarded(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Turns failures into one line on stderr and the documented exit code."""
    from uba_client import UbaError

    @functools.wraps(fn)
    def run(args: argparse.Namespace) -> int:
        try:
            return fn(args)
        except UbaError as exc:
            fail(str(exc))
            return 1
        except UsageError as exc:
            fail(str(exc))
            return 2
        except BrokenPipeError:  # `uba logs | head`
            sys.stderr.close()
            return 0

    return run


def fail(message: str) -> None:
    print(shown(f"uba: {message}"), file=sys.stderr)


def note(message: str) -> None:
    print(shown(message), file=sys.stderr, flush=True)


# -- what reaches a terminal -------------------------------------------------------
# Stored text is shown, never obeyed: a control character (TAB, CR, LF, ESC,
# C1), a format character (bidirectional override, zero-width) or a line or
# paragraph separator in a value is printed as an escape such as \t, \n or
# \x1b, so no value can start a forged row or send the terminal a command.
# The same characters identifiers refuse at ingest; older data and free text
# may still hold some. Backslashes stay as they are (DOMAIN\user reads well).

_UNSHOWN = IDENTIFIER_REFUSED
_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _escape(char: str) -> str:
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return (
        f"\\x{code:02x}"
        if code < 0x100
        else f"\\u{code:04x}"
        if code < 0x10000
        else f"\\U{code:08x}"
    )


def shown(value: object) -> str:
    """`value` as text safe to print on a terminal, on one line."""
    text = str(value)
    if text.isprintable():  # the usual case, one scan at C speed
        return text
    return "".join(_escape(c) if unicodedata.category(c) in _UNSHOWN else c for c in text)


def say(line: str = "", **kwargs: Any) -> None:
    """Prints one line of text output, its values escaped by shown()."""
    print(shown(line), **kwargs)


def as_dict(message) -> dict:
    return MessageToDict(message, preserving_proto_field_name=True)


def json_text(value: Any, **kwargs: Any) -> str:
    """JSON as json.dumps writes it (UTF-8 as is), with U+2028, U+2029 and
    NEL escaped, which line-splitting readers take for line ends."""
    from uba.domain.logs import JSON_LINE_SEPARATORS

    return json.dumps(value, ensure_ascii=False, **kwargs).translate(JSON_LINE_SEPARATORS)


def print_json(value: Any) -> None:
    print(json_text(value, indent=2))


# -- parsing arguments --------------------------------------------------------

_RELATIVE = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> timedelta:
    """'90s', '15m', '24h', '7d', '2w' or plain seconds."""
    text = text.strip().lower()
    try:
        return timedelta(seconds=float(text))
    except ValueError:
        pass
    m = _RELATIVE.fullmatch(text)
    if m is None:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 90s, 15m, 24h, 7d)")
    return timedelta(seconds=float(m[1]) * _UNITS[m[2]])


def parse_time(text: str) -> datetime:
    """ISO 8601 ('2026-11-24', '2026-11-24T08:00:00Z'; no zone means UTC), or
    a duration meaning that long ago ('2h', '7d')."""
    if _RELATIVE.fullmatch(text.strip().lower()):
        return datetime.now(UTC) - parse_duration(text)
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a time: {text!r} (e.g. 2026-11-24T08:00:00Z or 2h for 2 hours ago)"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def add_log_filters(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("filters")
    group.add_argument("--user", default="", help="only events of this user")
    group.add_argument("--type", default=None, help="only events of this type, e.g. login_failure")
    group.add_argument(
        "--since",
        type=parse_time,
        default=None,
        metavar="TIME",
        help="events at or after TIME (ISO 8601, or 2h / 7d for that long ago)",
    )
    group.add_argument(
        "--until", type=parse_time, default=None, metavar="TIME", help="events before TIME"
    )
    group.add_argument("--source-ip", default="", help="only events from this address")


def log_filters(args: argparse.Namespace) -> dict:
    return dict(
        user_id=args.user,
        type=args.type,
        start=args.since,
        end=args.until,
        source_ip=args.source_ip,
    )


def _checked_type(value: str | None) -> str | None:
    from uba_client import events as ev

    if value:
        try:
            ev.activity_type(value)
        except ValueError as exc:
            raise UsageError(f"--type: {exc}") from None
    return value


# -- text output --------------------------------------------------------------


def _ts(message, name: str) -> str:
    if not message.HasField(name):
        return "-"
    return getattr(message, name).ToDatetime(UTC).strftime("%Y-%m-%d %H:%M:%S")


def table(rows: list[list[str]], headers: list[str]) -> None:
    """Columns padded to their widest cell; every cell escaped by shown()."""
    cells = [[shown(cell) for cell in row] for row in [headers, *rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for row in cells:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())


def _event_detail(e) -> str:
    parts = []
    if e.api_method or e.api_path:
        parts.append(f"{e.api_method} {e.api_path} -> {e.status_code}".strip())
    if e.bytes_transferred:
        parts.append(f"{e.bytes_transferred:,} B")
    if e.HasField("session_duration"):
        parts.append(f"session {e.session_duration.ToTimedelta()}")
    if e.attributes.get("invalid_user"):
        parts.append("invalid user")
    return ", ".join(parts)


# -- listings ---------------------------------------------------------------------


def fetch_listing(
    args: argparse.Namespace, list_page, iterate, field: str, filters: dict
) -> tuple[list, str]:
    """The items a list command shows: every page with --all, else the page
    asked for; and the token of the next page ('' when none)."""
    if args.all:
        return list(iterate(**filters)), ""
    page = list_page(page_size=args.page_size, page_token=args.page_token, **filters)
    return list(getattr(page, field)), page.next_page_token


def print_listing(
    args: argparse.Namespace,
    field: str,
    items: list,
    token: str,
    rows: list[list[str]],
    headers: list[str],
) -> None:
    """A listing as JSON (with --json) or as a table, then where more is."""
    if args.json:
        print_json({field: [as_dict(i) for i in items], "next_page_token": token})
        return
    table(rows, headers)
    if token:
        note(f"more: --page-token {token}")


# -- logs -----------------------------------------------------------------------


def run_logs(args: argparse.Namespace) -> int:
    _checked_type(args.type)
    with ClientSettings.load(args).client() as client:
        events, token = fetch_listing(
            args, client.list_logs, client.iter_logs, "events", log_filters(args)
        )
    if args.json:
        print_json({"events": [as_dict(e) for e in events], "next_page_token": token})
        return 0
    from uba_client import events as ev

    table(
        [
            [
                _ts(e, "occurred_at"),
                ev.type_name(e.type),
                e.user_id,
                e.source_ip or "-",
                e.country_code or "-",
                _event_detail(e),
            ]
            for e in events
        ],
        ["OCCURRED (UTC)", "TYPE", "USER", "SOURCE IP", "CC", "DETAIL"],
    )
    if token:
        note(f"more: --page-token {token}")
    return 0


# -- export ---------------------------------------------------------------------


def run_export(args: argparse.Namespace) -> int:
    _checked_type(args.type)
    with ClientSettings.load(args).client() as client:
        if args.output == "-":
            written = client.export(sys.stdout.buffer, args.format, **log_filters(args))
            sys.stdout.flush()
        else:
            try:
                written = client.export(args.output, args.format, **log_filters(args))
            except OSError as exc:
                raise UsageError(f"cannot write {args.output}: {exc.strerror}") from None
            note(f"uba: wrote {written:,} bytes of {args.format} to {args.output}")
    return 0


# -- alerts -----------------------------------------------------------------------


def _alert_row(a) -> list[str]:
    from uba_client import events as ev

    return [
        str(a.seq),
        a.alert_id,
        ev.severity_name(a.severity),
        ev.status_name(a.status),
        a.user_id,
        a.detector,
        str(a.anomaly_count),
        _ts(a, "last_seen_at"),
        a.title,
    ]


_ALERT_HEADERS = [
    "SEQ",
    "ALERT",
    "SEVERITY",
    "STATUS",
    "USER",
    "DETECTOR",
    "N",
    "LAST SEEN (UTC)",
    "TITLE",
]


def _print_alert(a, as_json: bool) -> None:
    if as_json:
        print_json(as_dict(a))
        return
    from uba_client import events as ev

    say(
        f"{a.alert_id}  {ev.severity_name(a.severity)}  {ev.status_name(a.status)}  {a.user_id}  {a.detector}"
    )
    say(f"  {a.title}: {a.reason}")
    if a.techniques:
        say(
            "  ATT&CK: "
            + ", ".join(f"{t.technique_id} {t.name}".strip() for t in a.techniques)
            + " ("
            + ", ".join(t.name or t.tactic_id for t in a.tactics)
            + ")"
        )
    if a.resolution:
        say(
            f"  resolution: {ev.resolution_name(a.resolution)}{'  note: ' + a.note if a.note else ''}"
        )


def run_alerts(args: argparse.Namespace) -> int:
    with ClientSettings.load(args).client() as client:
        if args.alerts_command == "list":
            filters = dict(
                user_id=args.user,
                detector=args.detector,
                min_severity=args.min_severity,
                status=args.status,
            )
            alerts, token = fetch_listing(
                args, client.list_alerts, client.iter_alerts, "alerts", filters
            )
            print_listing(
                args, "alerts", alerts, token, [_alert_row(a) for a in alerts], _ALERT_HEADERS
            )
            return 0
        if args.alerts_command == "ack":
            _print_alert(client.acknowledge_alert(args.alert_id, note=args.note), args.json)
            return 0
        if args.alerts_command == "resolve":
            alert = client.resolve_alert(
                args.alert_id, args.resolution, note=args.note, suppress_for=args.suppress_for
            )
            _print_alert(alert, args.json)
            return 0
        return _follow(client, args)


def _follow(client, args: argparse.Namespace) -> int:
    from uba_client import events as ev

    follower = client.follow_alerts(
        after_seq=args.after_seq,
        min_severity=args.min_severity,
        user_id=args.user,
        detector=args.detector,
        idle_timeout=args.idle_timeout,
    )
    note(f"uba: following alerts on {client.target}; Ctrl-C to stop")
    seen = 0
    try:
        for alert in follower:
            if args.json:
                print(json_text(as_dict(alert)), flush=True)
            else:
                say(
                    f"{alert.seq:>6}  {_ts(alert, 'updated_at')}  {ev.severity_name(alert.severity):<8}  "
                    f"{ev.status_name(alert.status):<12}  {alert.user_id}  {alert.detector}: {alert.reason}",
                    flush=True,
                )
            seen += 1
            if args.count and seen >= args.count:
                break
    except KeyboardInterrupt:
        pass
    finally:
        follower.close()
        note(f"uba: resume with --after-seq {follower.seq}")
    return 0


# -- dashboard ----------------------------------------------------------------------

_BARS = " ▁▂▃▄▅▆▇█"


def sparkline(values: list[int]) -> str:
    top = max(values, default=0)
    if not top:
        return "".join(_BARS[0] for _ in values)
    return "".join(_BARS[min(8, round(v / top * 8))] for v in values)


def run_dashboard(args: argparse.Namespace) -> int:
    from uba_client import events as ev

    with ClientSettings.load(args).client() as client:
        d = client.dashboard(args.window)
    if args.json:
        print_json(as_dict(d))
        return 0
    t = d.totals
    say(
        f"uba dashboard  {_ts(d, 'window_start')} .. {_ts(d, 'window_end')} UTC  "
        f"(analytics: {_mode(d.analytics_mode)})"
    )
    print()
    say(
        f"  events {t.event_count:>10,}   users {t.user_count:>8,}   logins {t.login_success_count:>8,}   "
        f"failed {t.login_failure_count:>8,}"
    )
    say(
        f"  logouts {t.logout_count:>9,}   api calls {t.api_call_count:>4,}   anomalies {t.anomaly_count:>5,}   "
        f"open alerts {t.open_alert_count:>3,}"
    )
    if d.hourly:
        print()
        say(
            f"  events per hour   {sparkline([b.event_count for b in d.hourly])}  max {max(b.event_count for b in d.hourly):,}"
        )
        say(
            f"  failures per hour {sparkline([b.login_failure_count for b in d.hourly])}  "
            f"max {max(b.login_failure_count for b in d.hourly):,}"
        )
    if d.open_alerts_by_severity:
        print()
        say(
            "  open alerts: "
            + ", ".join(
                f"{ev.severity_name(s.severity)} {s.count}" for s in d.open_alerts_by_severity
            )
        )
    if d.anomalies_by_detector:
        say(
            "  anomalies:   "
            + ", ".join(f"{c.detector} {c.count}" for c in d.anomalies_by_detector)
        )
    if d.top_risky_users:
        print()
        say("  riskiest users")
        for u in d.top_risky_users:
            say(f"    {u.risk:>3}  {u.user_id}  {'; '.join(u.top_reasons[:2])}")
    return 0


def _mode(value: int) -> str:
    from uba.v1 import service_pb2

    return service_pb2.AnalyticsMode.Name(value).removeprefix("ANALYTICS_MODE_").lower()


# -- baseline ---------------------------------------------------------------------

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def run_backfill(args: argparse.Namespace) -> int:
    note(f"replaying stored events since {args.since.isoformat()} to rebuild baselines ...")
    with ClientSettings.load(args).client() as client:
        reply = client.backfill(args.since, args.until, raise_alerts=args.raise_alerts)
    if args.json:
        print_json(as_dict(reply))
    else:
        say(
            f"replayed {reply.event_count:,} events of {reply.user_count:,} users: "
            f"{reply.anomaly_count:,} anomalies, {reply.alert_count:,} alerts"
        )
    return 0


def run_train(args: argparse.Namespace) -> int:
    note("training the isolation forest on stored history ...")
    with ClientSettings.load(args).client() as client:
        reply = client.train_model(args.since, args.until)
    if args.json:
        print_json(as_dict(reply))
    else:
        say(
            f"model {reply.version}: {reply.row_count:,} rows from {reply.event_count:,} events, "
            f"{len(reply.features)} features, threshold {reply.threshold:.4f}, {reply.training_seconds:.1f} s"
        )
    return 0


def run_baseline(args: argparse.Namespace) -> int:
    with ClientSettings.load(args).client() as client:
        b = client.user_baseline(args.user_id)
    if args.json:
        print_json(as_dict(b))
        return 0
    say(
        f"baseline of {b.user_id}: {'mature' if b.mature else 'not mature yet'}, {b.observation_count:,} events "
        f"over {b.days_covered} days ({_ts(b, 'first_seen_at')} .. {_ts(b, 'last_seen_at')} UTC)"
    )
    say(f"  time zone {b.timezone or '-'}, peer group {b.peer_group or '-'}")
    hours = list(b.login_hour_of_week)
    if len(hours) == 168 and any(hours):
        say("  logins by local hour  00h" + " " * 18 + "12h" + " " * 18 + "23h")
        for day in range(7):
            say(f"    {_DAYS[day]}                {sparkline(hours[day * 24 : (day + 1) * 24])}")

    def stats(name: str, s, unit: str = "") -> None:
        if s.count:
            say(
                f"  {name:<24} mean {s.mean:,.1f}{unit}  sd {s.stddev:,.1f}  range {s.min:,.0f}..{s.max:,.0f}  (n={s.count})"
            )

    stats("logins per day", b.logins_per_day)
    stats("failed logins per hour", b.failed_logins_per_hour)
    stats("ln session seconds", b.log_session_seconds)
    stats("api calls per hour", b.api_calls_per_hour)
    stats("bytes per hour", b.bytes_per_hour)
    if b.api_error_share:
        say(f"  api error share          {b.api_error_share:.1%}")
    for label, values in (
        ("countries", b.countries),
        ("cities", b.cities),
        ("source ips", b.source_ips),
        ("devices", b.devices),
    ):
        if values:
            say(f"  {label:<24} " + ", ".join(f"{v.value} ({v.count})" for v in list(values)[:8]))
    if b.endpoints:
        say(
            "  endpoints                "
            + ", ".join(f"{e.endpoint} ({e.count})" for e in list(b.endpoints)[:6])
        )
    if b.HasField("last_login"):
        ll = b.last_login
        say(
            f"  last login               {_ts(ll, 'occurred_at')} UTC from {ll.source_ip or '-'} "
            f"{ll.city or ''} {ll.country_code or ''}".rstrip()
        )
    return 0


# -- capabilities -----------------------------------------------------------------


def run_capabilities(args: argparse.Namespace) -> int:
    with ClientSettings.load(args).client() as client:
        c = client.capabilities()
    if args.json:
        print_json(as_dict(c))
        return 0
    say(f"uba {c.version} at {ClientSettings.load(args).server}")
    say(
        f"  storage {c.storage_backend}, analytics {_mode(c.analytics_mode)}, batches up to {c.max_batch_size}, "
        f"exports {', '.join(c.export_formats)}"
    )
    table(
        [
            [
                d.name,
                d.version,
                d.family,
                "on" if d.enabled else ("off" if d.available else "unavailable"),
                d.unavailable_reason or d.description,
            ]
            for d in c.detectors
        ],
        ["DETECTOR", "VERSION", "FAMILY", "STATE", "DESCRIPTION"],
    )
    return 0


# -- audit ---------------------------------------------------------------------------


def run_audit(args: argparse.Namespace) -> int:
    with ClientSettings.load(args).client() as client:
        page = client.list_audit_events(
            actor=args.actor,
            action=args.action,
            page_size=args.page_size,
            page_token=args.page_token,
        )
    if args.json:
        print_json(
            {
                "audit_events": [as_dict(e) for e in page.audit_events],
                "next_page_token": page.next_page_token,
            }
        )
        return 0
    table(
        [
            [
                str(e.seq),
                _ts(e, "occurred_at"),
                e.actor or "-",
                e.action,
                e.target or "-",
                e.outcome,
                e.peer or "-",
                e.detail[:80],
            ]
            for e in page.audit_events
        ],
        ["SEQ", "AT (UTC)", "ACTOR", "ACTION", "TARGET", "OUTCOME", "PEER", "DETAIL"],
    )
    if page.next_page_token:
        note(f"more: --page-token {page.next_page_token}")
    return 0


# -- registration ---------------------------------------------------------------------


def register(subparsers: argparse._SubParsersAction) -> None:
    common, as_json = common_parser(), json_parser()

    p = subparsers.add_parser(
        "logs",
        parents=[common, as_json],
        help="list stored events",
        description="List stored events, newest first, a page at a time.",
    )
    add_log_filters(p)
    p.add_argument("--page-size", type=int, default=50, help="events per page, 1..1000 [50]")
    p.add_argument(
        "--page-token", default="", help="continue after the page that printed this token"
    )
    p.add_argument("--all", action="store_true", help="every page")
    p.set_defaults(func=guarded(run_logs))

    p = subparsers.add_parser(
        "export",
        parents=[common],
        help="download events as CSV, JSON or NDJSON",
        description="Stream the selected events, oldest first, into a file.",
    )
    add_log_filters(p)
    p.add_argument(
        "--format", choices=("csv", "json", "ndjson"), default="csv", help="file format [csv]"
    )
    p.add_argument(
        "--output", "-o", default="-", metavar="FILE", help="where to write ('-' for stdout) [-]"
    )
    p.set_defaults(func=guarded(run_export))

    p = subparsers.add_parser(
        "alerts",
        help="list, follow, acknowledge and resolve alerts",
        description="Work with alerts.",
    )
    actions = p.add_subparsers(dest="alerts_command", metavar="ACTION", required=True)
    a = actions.add_parser(
        "list", parents=[common, as_json], help="list alerts, most recently changed first"
    )
    a.add_argument("--user", default="", help="only alerts of this user")
    a.add_argument("--detector", default="", help="only alerts of this detector")
    a.add_argument("--min-severity", default=None, choices=("low", "medium", "high", "critical"))
    a.add_argument("--status", default=None, choices=("open", "acknowledged", "resolved"))
    a.add_argument("--page-size", type=int, default=50, help="alerts per page, 1..1000 [50]")
    a.add_argument("--page-token", default="")
    a.add_argument("--all", action="store_true", help="every page")
    a.set_defaults(func=guarded(run_alerts))
    a = actions.add_parser(
        "follow",
        parents=[common, as_json],
        help="print alerts as they happen; reconnects and resumes by seq",
        description="Follow alert changes live. Reconnects after errors and server restarts "
        "without missing or repeating a change; prints the seq to resume with.",
    )
    a.add_argument(
        "--after-seq", type=int, default=0, help="replay changes after this seq first [0: from now]"
    )
    a.add_argument("--user", default="", help="only alerts of this user")
    a.add_argument("--detector", default="", help="only alerts of this detector")
    a.add_argument("--min-severity", default=None, choices=("low", "medium", "high", "critical"))
    a.add_argument("--count", type=int, default=0, help="stop after this many alerts [0: never]")
    a.add_argument(
        "--idle-timeout",
        type=float,
        default=60.0,
        help="reconnect when nothing, not even a heartbeat, arrives for this long [60]",
    )
    a.set_defaults(func=guarded(run_alerts))
    a = actions.add_parser("ack", parents=[common, as_json], help="acknowledge an alert")
    a.add_argument("alert_id", metavar="ID")
    a.add_argument("--note", default="", help="a note for the record")
    a.set_defaults(func=guarded(run_alerts))
    a = actions.add_parser("resolve", parents=[common, as_json], help="resolve an alert")
    a.add_argument("alert_id", metavar="ID")
    a.add_argument(
        "--resolution", required=True, choices=("true_positive", "benign", "false_positive")
    )
    a.add_argument("--note", default="", help="a note for the record")
    a.add_argument(
        "--suppress-for",
        type=parse_duration,
        default=None,
        metavar="DURATION",
        help="for benign or false_positive: no new alerts of this user and detector for this long (e.g. 7d)",
    )
    a.set_defaults(func=guarded(run_alerts))

    p = subparsers.add_parser(
        "dashboard",
        parents=[common, as_json],
        help="a terminal summary of the service",
        description="Counts, hourly activity, open alerts and the riskiest users.",
    )
    p.add_argument(
        "--window", type=parse_duration, default=None, help="how far back, e.g. 24h or 7d [24h]"
    )
    p.set_defaults(func=guarded(run_dashboard))

    p = subparsers.add_parser(
        "backfill",
        parents=[common, as_json],
        help="rebuild baselines from stored history",
        description="Reset every baseline and replay the stored events from --since "
        "through detection (after importing history with detection off).",
    )
    p.add_argument(
        "--since",
        type=parse_time,
        required=True,
        metavar="TIME",
        help="replay events at or after TIME",
    )
    p.add_argument(
        "--until", type=parse_time, default=None, metavar="TIME", help="replay events before TIME"
    )
    p.add_argument(
        "--raise-alerts", action="store_true", help="also store anomalies and raise alerts"
    )
    p.set_defaults(func=guarded(run_backfill))
    p = subparsers.add_parser(
        "train",
        parents=[common, as_json],
        help="train the isolation forest now",
        description="Train a new Isolation Forest model on stored history and switch the "
        "server to it (enhanced mode; the server also retrains on a schedule).",
    )
    p.add_argument(
        "--since",
        type=parse_time,
        default=None,
        metavar="TIME",
        help="history from TIME (default 30d)",
    )
    p.add_argument(
        "--until", type=parse_time, default=None, metavar="TIME", help="history before TIME"
    )
    p.set_defaults(func=guarded(run_train))
    p = subparsers.add_parser(
        "baseline",
        parents=[common, as_json],
        help="what is normal for one user",
        description="Print the learned baseline of a user.",
    )
    p.add_argument("user_id", metavar="USER")
    p.set_defaults(func=guarded(run_baseline))

    p = subparsers.add_parser(
        "audit",
        parents=[common, as_json],
        help="the audit trail (admin key)",
        description="Who did what, when, from where, and how it ended: authentication "
        "failures, denials, alert workflow, exports, backfills, training, keys.",
    )
    p.add_argument("--actor", default="", help="only entries of this key name")
    p.add_argument(
        "--action", default="", help="only this action, e.g. ResolveAlert or keys.create"
    )
    p.add_argument("--page-size", type=int, default=50, help="entries per page, 1..1000 [50]")
    p.add_argument(
        "--page-token", default="", help="continue after the page that printed this token"
    )
    p.set_defaults(func=guarded(run_audit))

    p = subparsers.add_parser(
        "capabilities",
        parents=[common, as_json],
        help="server version, storage, analytics mode, detectors",
    )
    p.set_defaults(func=guarded(run_capabilities))
