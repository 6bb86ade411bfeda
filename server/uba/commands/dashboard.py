"""`uba dashboard`: a terminal summary of the service."""

from __future__ import annotations

import argparse

from uba.commands.common import (
    ClientSettings,
    analytics_mode_name,
    as_dict,
    common_parser,
    guarded,
    json_parser,
    parse_duration,
    print_json,
    say,
    sparkline,
    timestamp_text,
)


def run_dashboard(args: argparse.Namespace) -> int:
    from uba_client import events as ev

    with ClientSettings.load(args).client() as client:
        d = client.dashboard(args.window)
    if args.json:
        print_json(as_dict(d))
        return 0
    t = d.totals
    say(
        f"uba dashboard  {timestamp_text(d, 'window_start')} .. "
        f"{timestamp_text(d, 'window_end')} UTC  "
        f"(analytics: {analytics_mode_name(d.analytics_mode)})"
    )
    print()
    say(
        f"  events {t.event_count:>10,}   users {t.user_count:>8,}   "
        f"logins {t.login_success_count:>8,}   failed {t.login_failure_count:>8,}"
    )
    say(
        f"  logouts {t.logout_count:>9,}   api calls {t.api_call_count:>4,}   "
        f"anomalies {t.anomaly_count:>5,}   open alerts {t.open_alert_count:>3,}"
    )
    if d.hourly:
        print()
        say(
            f"  events per hour   {sparkline([b.event_count for b in d.hourly])}  max "
            f"{max(b.event_count for b in d.hourly):,}"
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


# -- registration ---------------------------------------------------------------------


def register(subparsers: argparse._SubParsersAction) -> None:
    common, as_json = common_parser(), json_parser()

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
