"""`uba logs` and `uba export`: stored events, a page at a time or streamed
into a file."""

from __future__ import annotations

import argparse
import sys

from uba.commands.common import (
    ClientSettings,
    UsageError,
    as_dict,
    common_parser,
    fetch_listing,
    guarded,
    json_parser,
    note,
    parse_time,
    print_json,
    table,
    timestamp_text,
)


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
                timestamp_text(e, "occurred_at"),
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
