"""`uba demo`: fill a running server with a realistic population (see
uba.simulate), and on request labelled attacks of every detector's kind."""

from __future__ import annotations

import argparse
import json
from datetime import datetime, timedelta, timezone

from uba.commands.client import (
    ClientSettings, UsageError, common_parser, guarded, json_parser, note, parse_time, table,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo", parents=[common_parser(), json_parser()], help="fill a server with realistic demo activity",
        description="Send a seeded population's activity over the last DAYS days: users in several time zones "
                    "with working hours, sessions with API use and logouts, occasional business trips. "
                    "With --attacks, also stage one labelled attack of each kind the detectors know, in the "
                    "last 12 hours. The same --seed and --end send the same events with the same ids.")
    p.add_argument("--users", type=int, default=20, help="number of users [20]")
    p.add_argument("--days", type=int, default=21, help="days of history, ending now [21]")
    p.add_argument("--seed", type=int, default=7, help="random seed [7]")
    p.add_argument("--attacks", action="store_true", help="also stage labelled attacks")
    p.add_argument("--end", type=parse_time, default=None, metavar="TIME",
                   help="end of the simulated period (ISO 8601) [now]")
    p.add_argument("--batch-size", type=int, default=1000, help="events per call, 1..1000 [1000]")
    p.add_argument("--dry-run", action="store_true", help="generate and count only; send nothing")
    p.set_defaults(func=guarded(run))


def run(args: argparse.Namespace) -> int:
    from uba.api.converters import event_to_pb
    from uba.simulate import simulate
    from uba.v1 import events_pb2

    if not 1 <= args.users <= 100_000 or not 1 <= args.days <= 365:
        raise UsageError("--users must be within 1..100000 and --days within 1..365")
    if not 1 <= args.batch_size <= 1000:
        raise UsageError("--batch-size must be within 1..1000")
    now = datetime.now(timezone.utc)
    if args.end is not None and args.end > now + timedelta(minutes=4):
        raise UsageError("--end: the server refuses events more than 5 minutes in the future")
    sim = simulate(users=args.users, days=args.days, seed=args.seed, attacks=args.attacks, end=args.end or now)
    note(f"uba: sending {len(sim.events):,} events of {args.users} users over {args.days} days"
         + (f", with {len(sim.attacks)} attacks" if sim.attacks else ""))

    accepted = duplicate = invalid = 0
    violations: list[str] = []
    if not args.dry_run:
        with ClientSettings.load(args).client() as client:
            for i in range(0, len(sim.events), args.batch_size):
                batch = []
                for e in sim.events[i:i + args.batch_size]:
                    m = events_pb2.ActivityEvent()
                    event_to_pb(e, m)
                    batch.append(m)
                result = client.record_batch(batch, max_batch=args.batch_size)
                accepted, duplicate = accepted + result.accepted, duplicate + result.duplicate
                invalid += result.invalid
                violations.extend(f"{r.event_id}: {r.violations}" for r in result.results if r.status == "invalid")

    summary = {
        "users": args.users, "days": args.days, "seed": args.seed,
        "start": sim.start.isoformat(), "end": sim.end.isoformat(), "events": len(sim.events),
        "accepted": accepted, "duplicate": duplicate, "invalid": invalid, "dry_run": bool(args.dry_run),
        "attacks": [{"kind": a.kind, "detectors": list(a.detectors), "users": list(a.users),
                     "started_at": a.started_at.isoformat(), "description": a.description,
                     "events": len(a.event_ids)} for a in sim.attacks],
        "trips": [{"user_id": t.user_id, "city": t.city, "country_code": t.country_code,
                   "start": t.start.isoformat(), "days": t.days} for t in sim.trips],
    }
    for v in violations[:5]:
        note(f"uba: invalid {v}")
    if args.json:
        print(json.dumps(summary, indent=2, ensure_ascii=False))
    else:
        print(f"demo: {len(sim.events):,} events of {args.users} users, {sim.start:%Y-%m-%d %H:%M} .. "
              f"{sim.end:%Y-%m-%d %H:%M} UTC (seed {args.seed})")
        if not args.dry_run:
            print(f"server: {accepted:,} accepted, {duplicate:,} duplicate, {invalid:,} invalid")
        for t in sim.trips:
            print(f"trip: {t.user_id} in {t.city} ({t.country_code}) for {t.days} days from {t.start:%Y-%m-%d}")
        if sim.attacks:
            print()
            table([[f"{a.started_at:%Y-%m-%d %H:%M}", a.kind, ",".join(a.detectors), str(len(a.event_ids)),
                    a.description] for a in sim.attacks],
                  ["STARTED (UTC)", "ATTACK", "EXPECTED DETECTORS", "EVENTS", "WHAT"])
    return 1 if invalid else 0
