"""`uba backfill`, `uba train` and `uba baseline`: what the server has learned
from history (baselines, the isolation forest), rebuilt, retrained or shown."""

from __future__ import annotations

import argparse

from uba.commands.common import (
    ClientSettings,
    as_dict,
    common_parser,
    guarded,
    json_parser,
    note,
    parse_time,
    print_json,
    say,
    sparkline,
    timestamp_text,
)

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
            f"{len(reply.features)} features, threshold {reply.threshold:.4f}, "
            f"{reply.training_seconds:.1f} s"
        )
    return 0


def run_baseline(args: argparse.Namespace) -> int:
    with ClientSettings.load(args).client() as client:
        b = client.user_baseline(args.user_id)
    if args.json:
        print_json(as_dict(b))
        return 0
    say(
        f"baseline of {b.user_id}: {'mature' if b.mature else 'not mature yet'}, "
        f"{b.observation_count:,} events over {b.days_covered} days "
        f"({timestamp_text(b, 'first_seen_at')} .. {timestamp_text(b, 'last_seen_at')} UTC)"
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
                f"  {name:<24} mean {s.mean:,.1f}{unit}  sd {s.stddev:,.1f}  range "
                f"{s.min:,.0f}..{s.max:,.0f}  (n={s.count})"
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
            f"  last login               {timestamp_text(ll, 'occurred_at')} UTC from "
            f"{ll.source_ip or '-'} {ll.city or ''} {ll.country_code or ''}".rstrip()
        )
    return 0


# -- registration ---------------------------------------------------------------------


def register(subparsers: argparse._SubParsersAction) -> None:
    common, as_json = common_parser(), json_parser()

    p = subparsers.add_parser(
        "backfill",
        parents=[common, as_json],
        help="rebuild baselines from stored history",
        description="Reset every baseline and replay the stored events from --since through "
        "detection (after importing history with detection off).",
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
        description="Train a new Isolation Forest model on stored history and switch the server to "
        "it (enhanced mode; the server also retrains on a schedule).",
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
