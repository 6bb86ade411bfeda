"""`uba capabilities`: the server's version, storage, analytics mode,
detectors and (a front end of the event log) the workers' lag."""

from __future__ import annotations

import argparse

from uba.commands.common import (
    ClientSettings,
    analytics_mode_name,
    as_dict,
    common_parser,
    guarded,
    json_parser,
    print_json,
    say,
    table,
)

# -- capabilities -----------------------------------------------------------------


def run_capabilities(args: argparse.Namespace) -> int:
    with ClientSettings.load(args).client() as client:
        c = client.capabilities()
    if args.json:
        print_json(as_dict(c))
        return 0
    say(f"uba {c.version} at {ClientSettings.load(args).server}")
    say(
        f"  storage {c.storage_backend}, analytics {analytics_mode_name(c.analytics_mode)}, "
        f"batches up to {c.max_batch_size}, exports {', '.join(c.export_formats)}"
    )
    if c.HasField("event_log"):
        say(f"  {event_log_line(c.event_log)}")
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


def event_log_line(log) -> str:
    """One line on a front end's event log: its workers and their lag."""
    head = f"event log: {log.partitions} partitions"
    if log.unavailable_reason:
        return f"{head}, lag unknown ({log.unavailable_reason})"
    workers = f"{log.live_workers} live worker{'' if log.live_workers == 1 else 's'}"
    line = f"{head}, {workers}, lag {log.lag_events} events"
    if log.lag_events:
        waited = log.oldest_lag_age.ToTimedelta().total_seconds()
        lagging = [p for p in log.partition_lags if p.lag_events]
        shown = ", ".join(f"p{p.partition} {p.lag_events}" for p in lagging[:8])
        more = f", {len(lagging) - 8} more" if len(lagging) > 8 else ""
        line += f" (oldest waiting {waited:.1f}s; {shown}{more})"
    return line


# -- registration ---------------------------------------------------------------------


def register(subparsers: argparse._SubParsersAction) -> None:
    common, as_json = common_parser(), json_parser()

    p = subparsers.add_parser(
        "capabilities",
        parents=[common, as_json],
        help="server version, storage, analytics mode, detectors",
    )
    p.set_defaults(func=guarded(run_capabilities))
