"""`uba users forget USER`: the right to erasure (admin key)."""

from __future__ import annotations

import argparse

from uba.commands.common import (
    ClientSettings,
    as_dict,
    common_parser,
    guarded,
    json_parser,
    print_json,
)


def run_forget(args: argparse.Namespace) -> int:
    with ClientSettings.load(args).client() as client:
        reply = client.forget_user(args.user)
    if args.json:
        print_json(as_dict(reply))
        return 0
    if not (reply.events_deleted or reply.records_deleted or reply.records_pseudonymised):
        print(f"nothing left of {args.user}; it stands as {reply.pseudonym}")
        return 0
    print(
        f"forgot {args.user}: {reply.events_deleted} events and {reply.records_deleted} other "
        f"records deleted, {reply.records_pseudonymised} records now name {reply.pseudonym}"
    )
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    common, as_json = common_parser(), json_parser()
    users = subparsers.add_parser("users", help="people the server knows (admin key)")
    commands = users.add_subparsers(dest="users_command", metavar="COMMAND", required=True)
    p = commands.add_parser(
        "forget",
        parents=[common, as_json],
        help="erase a person: events and baseline deleted, their id pseudonymised elsewhere",
        description="Deletes the user's events, baseline, risk and suppressions, and replaces "
        "their id by a pseudonym (a keyed hash) in anomalies, alerts, incidents, notifications "
        "and the audit trail. Idempotent. See docs/operations.md, Retention and erasure.",
    )
    p.add_argument("user", help="the user id to erase")
    p.set_defaults(func=guarded(run_forget))
