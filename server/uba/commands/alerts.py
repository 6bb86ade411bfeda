"""`uba alerts`: list, follow, acknowledge and resolve alerts."""

from __future__ import annotations

import argparse

from uba.commands.common import (
    ClientSettings,
    as_dict,
    common_parser,
    fetch_listing,
    guarded,
    json_parser,
    parse_duration,
    print_followed,
    print_json,
    print_listing,
    say,
    timestamp_text,
)

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
        timestamp_text(a, "last_seen_at"),
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
        f"{a.alert_id}  {ev.severity_name(a.severity)}  {ev.status_name(a.status)}  {a.user_id}  "
        f"{a.detector}"
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
            "  resolution: "
            f"{ev.resolution_name(a.resolution)}{'  note: ' + a.note if a.note else ''}"
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
    return print_followed(
        follower,
        "alerts",
        client.target,
        args,
        lambda alert: (
            f"{alert.seq:>6}  {timestamp_text(alert, 'updated_at')}  "
            f"{ev.severity_name(alert.severity):<8}  "
            f"{ev.status_name(alert.status):<12}  {alert.user_id}  {alert.detector}: "
            f"{alert.reason}"
        ),
    )


# -- registration ---------------------------------------------------------------------


def register(subparsers: argparse._SubParsersAction) -> None:
    common, as_json = common_parser(), json_parser()

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
        help="for benign or false_positive: no new alerts of this user and detector for this long "
        "(e.g. 7d)",
    )
    a.set_defaults(func=guarded(run_alerts))
