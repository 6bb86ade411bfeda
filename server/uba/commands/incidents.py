"""`uba incidents list|show|ack|resolve|follow`: the stories analysts
triage, through the client library (uba_client), in the style of `uba alerts`."""

from __future__ import annotations

import argparse

from uba.commands.common import (
    ClientSettings,
    as_dict,
    common_parser,
    fetch_listing,
    guarded,
    json_parser,
    parse_time,
    print_followed,
    print_json,
    print_listing,
    say,
    table,
    timestamp_text,
)


def _tactics(i) -> str:
    return ",".join(t.name or t.tactic_id for t in i.tactics)


def _incident_row(i) -> list[str]:
    from uba_client import events as ev

    return [
        str(i.seq),
        i.incident_id,
        ev.severity_name(i.severity),
        f"{i.score:.0f}",
        ev.incident_status_name(i.status),
        i.entity_id,
        str(len(i.signals)),
        _tactics(i),
        timestamp_text(i, "last_seen_at"),
        i.title,
    ]


_HEADERS = [
    "SEQ",
    "INCIDENT",
    "SEVERITY",
    "SCORE",
    "STATUS",
    "ENTITY",
    "SIGNALS",
    "TACTICS",
    "LAST SEEN (UTC)",
    "TITLE",
]


def _print_incident(i, as_json: bool) -> None:
    from uba_client import events as ev

    if as_json:
        print_json(as_dict(i))
        return
    say(
        f"{i.incident_id}  {ev.severity_name(i.severity)}  score {i.score:.1f}  "
        f"{ev.incident_status_name(i.status)}  "
        f"{ev.entity_kind_name(i.entity_kind)} {i.entity_id}"
    )
    say(f"  {i.title}")
    say(
        f"  {timestamp_text(i, 'first_seen_at')} .. {timestamp_text(i, 'last_seen_at')} UTC, "
        f"{i.anomaly_count} anomalies"
    )
    if len(i.source_ips) > 1:  # a campaign
        shown_ips = ", ".join(i.source_ips[:5])
        more = f" and {len(i.source_ips) - 5} more" if len(i.source_ips) > 5 else ""
        say(f"  {len(i.source_ips)} addresses: {shown_ips}{more}")
    if len(i.user_ids) > 1:
        shown_users = ", ".join(i.user_ids[:5])
        more = f" and {len(i.user_ids) - 5} more" if len(i.user_ids) > 5 else ""
        say(f"  {len(i.user_ids)} users: {shown_users}{more}")
    if i.tactics:
        say("  tactics: " + ", ".join(f"{t.tactic_id} {t.name}".strip() for t in i.tactics))
    if i.techniques:
        say(
            "  techniques: " + ", ".join(f"{t.technique_id} {t.name}".strip() for t in i.techniques)
        )
    if i.acknowledged_by:
        say(f"  acknowledged by {i.acknowledged_by} at {timestamp_text(i, 'acknowledged_at')}")
    if i.resolution:
        say(
            f"  resolution: {ev.resolution_name(i.resolution)} by {i.resolved_by}"
            f"{'  note: ' + i.note if i.note else ''}"
        )
    elif i.note:
        say(f"  note: {i.note}")


def _print_breakdown(i) -> None:
    from uba_client import events as ev

    say("score breakdown (noisy-OR of the strongest open signal per detector):")
    rows = [
        [
            s.detector,
            ev.severity_name(s.severity),
            f"{s.probability:.2f}",
            "yes" if s.counted else ("resolved" if not s.active else "no (repeat)"),
            str(s.anomaly_count),
            s.user_id,
            s.alert_id,
            ",".join(t.technique_id for t in s.techniques),
        ]
        for s in i.signals
    ]
    table(rows, ["DETECTOR", "SEVERITY", "P", "COUNTED", "N", "USER", "ALERT", "TECHNIQUES"])


def _print_timeline(reply) -> None:
    from uba_client import events as ev

    say("timeline (UTC):")
    for entry in reply.timeline:
        at = entry.occurred_at.ToDatetime().strftime("%Y-%m-%d %H:%M:%S")
        if entry.HasField("anomaly"):
            a = entry.anomaly
            say(f"  {at}  ! {ev.severity_name(a.severity):<8} {a.detector}: {a.reason}")
        else:
            e = entry.event
            where = " ".join(
                x for x in (e.source_ip, e.country_code, e.device_id, e.session_id) if x
            )
            say(f"  {at}    {ev.type_name(e.type):<16} {e.user_id}  {where}")


def run_incidents(args: argparse.Namespace) -> int:
    with ClientSettings.load(args).client() as client:
        command = args.incidents_command
        if command == "list":
            filters = dict(
                user_id=args.user,
                status=args.status,
                min_severity=args.min_severity,
                tactic=args.tactic,
                start=args.since,
                end=args.until,
            )
            incidents, token = fetch_listing(
                args, client.list_incidents, client.iter_incidents, "incidents", filters
            )
            print_listing(
                args, "incidents", incidents, token, [_incident_row(i) for i in incidents], _HEADERS
            )
            return 0
        if command == "show":
            reply = client.get_incident(args.incident_id)
            if args.json:
                print_json(as_dict(reply))
                return 0
            _print_incident(reply.incident, False)
            say()
            _print_breakdown(reply.incident)
            say()
            _print_timeline(reply)
            return 0
        if command == "ack":
            _print_incident(
                client.acknowledge_incident(args.incident_id, note=args.note), args.json
            )
            return 0
        if command == "resolve":
            _print_incident(
                client.resolve_incident(args.incident_id, args.resolution, note=args.note),
                args.json,
            )
            return 0
        return _follow(client, args)


def _follow(client, args: argparse.Namespace) -> int:
    from uba_client import events as ev

    follower = client.follow_incidents(
        after_seq=args.after_seq,
        min_severity=args.min_severity,
        user_id=args.user,
        idle_timeout=args.idle_timeout,
    )
    return print_followed(
        follower,
        "incidents",
        client.target,
        args,
        lambda incident: (
            f"{incident.seq:>6}  {timestamp_text(incident, 'updated_at')}  "
            f"{ev.severity_name(incident.severity):<8}  "
            f"{incident.score:>3.0f}  {ev.incident_status_name(incident.status):<12}  "
            f"{incident.title}"
        ),
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    common, as_json = common_parser(), json_parser()
    p = subparsers.add_parser(
        "incidents",
        help="list, show, follow, acknowledge and resolve incidents",
        description="Work with incidents: one entity's anomalies across detectors, correlated by "
        "session or time window, scored as one story.",
    )
    actions = p.add_subparsers(dest="incidents_command", metavar="ACTION", required=True)
    severities = ("low", "medium", "high", "critical")
    a = actions.add_parser(
        "list", parents=[common, as_json], help="list incidents, most recently changed first"
    )
    a.add_argument("--user", default="", help="only incidents concerning this user")
    a.add_argument("--status", default=None, choices=("open", "acknowledged", "resolved"))
    a.add_argument("--min-severity", default=None, choices=severities)
    a.add_argument(
        "--tactic",
        default="",
        help="only incidents with this ATT&CK tactic (TA0006, credential-access)",
    )
    a.add_argument(
        "--since",
        type=parse_time,
        default=None,
        metavar="TIME",
        help="latest anomaly at or after TIME",
    )
    a.add_argument(
        "--until", type=parse_time, default=None, metavar="TIME", help="first anomaly before TIME"
    )
    a.add_argument("--page-size", type=int, default=50, help="incidents per page, 1..1000 [50]")
    a.add_argument("--page-token", default="")
    a.add_argument("--all", action="store_true", help="every page")
    a.set_defaults(func=guarded(run_incidents))
    a = actions.add_parser(
        "show", parents=[common, as_json], help="one incident: its score breakdown and timeline"
    )
    a.add_argument("incident_id", metavar="ID")
    a.set_defaults(func=guarded(run_incidents))
    a = actions.add_parser(
        "follow",
        parents=[common, as_json],
        help="print incident changes as they happen; reconnects and resumes by seq",
        description="Follow incident changes live (on the alert stream's sequence). Reconnects "
        "without missing or repeating a change; prints the seq to resume with.",
    )
    a.add_argument(
        "--after-seq", type=int, default=0, help="replay changes after this seq first [0: from now]"
    )
    a.add_argument("--user", default="", help="only incidents concerning this user")
    a.add_argument("--min-severity", default=None, choices=severities)
    a.add_argument("--count", type=int, default=0, help="stop after this many changes [0: never]")
    a.add_argument(
        "--idle-timeout",
        type=float,
        default=60.0,
        help="reconnect when nothing, not even a heartbeat, arrives for this long [60]",
    )
    a.set_defaults(func=guarded(run_incidents))
    a = actions.add_parser("ack", parents=[common, as_json], help="acknowledge an incident")
    a.add_argument("incident_id", metavar="ID")
    a.add_argument("--note", default="", help="a note for the record")
    a.set_defaults(func=guarded(run_incidents))
    a = actions.add_parser(
        "resolve", parents=[common, as_json], help="resolve an incident and its open member alerts"
    )
    a.add_argument("incident_id", metavar="ID")
    a.add_argument(
        "--resolution", required=True, choices=("true_positive", "benign", "false_positive")
    )
    a.add_argument("--note", default="", help="a note for the record")
    a.set_defaults(func=guarded(run_incidents))
