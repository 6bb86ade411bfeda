"""`uba demo`: fill a running server with a realistic population (see
uba.evaluation), and on request labelled attacks of every kind.

The simulation runs here; what reaches the server goes through the client
library (uba_client) as contract messages, as any other client's would.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from uba.commands.common import (
    ClientSettings,
    UsageError,
    common_parser,
    guarded,
    json_parser,
    note,
    parse_time,
    table,
)
from uba.commands.messages import MFA_TYPES, mfa_sendable, to_message

if TYPE_CHECKING:
    pass


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo",
        parents=[common_parser(), json_parser()],
        help="fill a server with realistic demo activity",
        description="Send a seeded population's activity over the last DAYS days: users in several "
        "time zones with working hours, sessions with API use and logouts, business trips, "
        "on-call weeks and other benign changes (the population of `uba evaluate`). With "
        "--attacks, also stage one labelled attack of each kind: the blatant ones in the last 12 "
        "hours, the realistic ones spread over the last 40% of the period. The same --seed and "
        "--end send the same events with the same ids.",
    )
    p.add_argument("--users", type=int, default=20, help="number of users [20]")
    p.add_argument("--days", type=int, default=21, help="days of history, ending now [21]")
    p.add_argument("--seed", type=int, default=7, help="random seed [7]")
    p.add_argument("--attacks", action="store_true", help="also stage labelled attacks")
    p.add_argument(
        "--end",
        type=parse_time,
        default=None,
        metavar="TIME",
        help="end of the simulated period (ISO 8601) [now]",
    )
    p.add_argument("--batch-size", type=int, default=1000, help="events per call, 1..1000 [1000]")
    p.add_argument("--dry-run", action="store_true", help="generate and count only; send nothing")
    p.set_defaults(func=guarded(run))


def run(args: argparse.Namespace) -> int:
    from uba.testing.simulate import simulate

    if not 1 <= args.users <= 100_000 or not 1 <= args.days <= 365:
        raise UsageError("--users must be within 1..100000 and --days within 1..365")
    if not 1 <= args.batch_size <= 1000:
        raise UsageError("--batch-size must be within 1..1000")
    now = datetime.now(UTC)
    if args.end is not None and args.end > now + timedelta(minutes=4):
        raise UsageError("--end: the server refuses events more than 5 minutes in the future")
    sim = simulate(
        users=args.users, days=args.days, seed=args.seed, attacks=args.attacks, end=args.end or now
    )
    # MFA events wait for a contract that has their types.
    skip_mfa = not mfa_sendable()
    events = [e for e in sim.events if not (skip_mfa and e.type.value in MFA_TYPES)]
    note(
        f"uba: sending {len(events):,} events of {args.users} users over {args.days} days"
        + (f", with {len(sim.attacks)} attacks" if sim.attacks else "")
    )

    accepted = duplicate = invalid = 0
    violations: list[str] = []
    if not args.dry_run:
        with ClientSettings.load(args).client() as client:
            messages = [to_message(e) for e in events]
            for i in range(0, len(messages), args.batch_size):
                result = client.record_batch(
                    messages[i : i + args.batch_size], max_batch=args.batch_size
                )
                accepted, duplicate = accepted + result.accepted, duplicate + result.duplicate
                invalid += result.invalid
                violations.extend(
                    f"{r.event_id}: {r.violations}" for r in result.results if r.status == "invalid"
                )

    trips = [c for c in sim.confounders if c.kind == "business_trip"]
    summary = {
        "users": args.users,
        "days": args.days,
        "seed": args.seed,
        "start": sim.start.isoformat(),
        "end": sim.end.isoformat(),
        "events": len(events),
        "accepted": accepted,
        "duplicate": duplicate,
        "invalid": invalid,
        "dry_run": bool(args.dry_run),
        "attacks": [
            {
                "kind": a.kind,
                "detectors": list(a.detectors),
                "users": list(a.users[:20]),
                "started_at": a.start.isoformat(),
                "description": a.description,
                "events": len(a.event_ids),
            }
            for a in sim.attacks
        ],
        "confounders": [
            {
                "kind": c.kind,
                "users": len(c.users),
                "start": c.start.isoformat(),
                "end": c.end.isoformat(),
                "description": c.description,
            }
            for c in sim.confounders
        ],
        "trips": [
            {
                "user_id": t.users[0],
                "start": t.start.isoformat(),
                "end": t.end.isoformat(),
                "description": t.description,
            }
            for t in trips
        ],
        "mfa_sent": not skip_mfa,
    }
    for v in violations[:5]:
        note(f"uba: invalid {v}")
    if args.json:
        print(json.dumps(summary, indent=2, ensure_ascii=False))
    else:
        print(
            f"demo: {len(events):,} events of {args.users} users, {sim.start:%Y-%m-%d %H:%M} .. "
            f"{sim.end:%Y-%m-%d %H:%M} UTC (seed {args.seed})"
        )
        if not args.dry_run:
            print(f"server: {accepted:,} accepted, {duplicate:,} duplicate, {invalid:,} invalid")
        for t in trips:
            print(f"trip: {t.description}")
        if sim.attacks:
            print()
            table(
                [
                    [
                        f"{a.start:%Y-%m-%d %H:%M}",
                        a.kind,
                        ",".join(a.detectors) or "-",
                        str(len(a.event_ids)),
                        a.description,
                    ]
                    for a in sim.attacks
                ],
                ["STARTED (UTC)", "ATTACK", "EXPECTED DETECTORS", "EVENTS", "WHAT"],
            )
    return 1 if invalid else 0
