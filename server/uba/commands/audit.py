"""`uba audit`: the audit trail (admin key)."""

from __future__ import annotations

import argparse

from uba.commands.common import (
    ClientSettings,
    as_dict,
    common_parser,
    guarded,
    json_parser,
    note,
    print_json,
    table,
    timestamp_text,
)

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
                timestamp_text(e, "occurred_at"),
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
        "audit",
        parents=[common, as_json],
        help="the audit trail (admin key)",
        description="Who did what, when, from where, and how it ended: authentication failures, "
        "denials, alert workflow, exports, backfills, training, keys.",
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
