"""`uba notify`: the delivery outbox (admin key): backlog, dead letters sent
again, test messages; and signing secrets for the notify file."""

from __future__ import annotations

import argparse
import time

from uba.commands.common import (
    ClientSettings,
    as_dict,
    common_parser,
    guarded,
    json_parser,
    note,
    print_json,
    say,
    table,
    timestamp_text,
)
from uba.delivery import signing
from uba.v1 import anomalies_pb2, notifications_pb2

STATUSES = {
    "pending": notifications_pb2.NOTIFICATION_STATUS_PENDING,
    "delivered": notifications_pb2.NOTIFICATION_STATUS_DELIVERED,
    "dead": notifications_pb2.NOTIFICATION_STATUS_DEAD,
}


def _status_name(value: int) -> str:
    return (
        notifications_pb2.NotificationStatus.Name(value)
        .removeprefix("NOTIFICATION_STATUS_")
        .lower()
    )


def _severity_name(value: int) -> str:
    return anomalies_pb2.Severity.Name(value).removeprefix("SEVERITY_").lower() if value else "-"


def run_list(args: argparse.Namespace) -> int:
    with ClientSettings.load(args).client() as client:
        page = client.list_notifications(
            destination=args.destination,
            status=STATUSES.get(args.status, 0),
            page_size=args.page_size,
            page_token=args.page_token,
        )
    if args.json:
        print_json(
            {
                "destinations": [as_dict(d) for d in page.destinations],
                "notifications": [as_dict(n) for n in page.notifications],
                "next_page_token": page.next_page_token,
            }
        )
        return 0
    if not page.destinations:
        note("the server has no destinations (start it with --notify FILE)")
        return 0
    table(
        [
            [
                d.name,
                d.kind,
                d.format,
                str(d.pending),
                str(d.delivered),
                str(d.dead),
                timestamp_text(d, "oldest_pending_at") if d.HasField("oldest_pending_at") else "-",
            ]
            for d in page.destinations
        ],
        ["DESTINATION", "KIND", "FORMAT", "PENDING", "DELIVERED", "DEAD", "OLDEST PENDING (UTC)"],
    )
    if page.notifications:
        say()
        table(
            [
                [
                    n.message_id,
                    n.destination,
                    n.event_type,
                    n.subject_id or "-",
                    _severity_name(n.severity),
                    _status_name(n.status),
                    str(n.attempts),
                    n.last_error[:60] or "-",
                ]
                for n in page.notifications
            ],
            [
                "MESSAGE",
                "DESTINATION",
                "TYPE",
                "SUBJECT",
                "SEVERITY",
                "STATUS",
                "TRIES",
                "LAST ERROR",
            ],
        )
    if page.next_page_token:
        note(f"more: --page-token {page.next_page_token}")
    return 0


def run_retry(args: argparse.Namespace) -> int:
    with ClientSettings.load(args).client() as client:
        retried = client.retry_notifications(args.destination, args.message_ids)
    say(f"{retried} dead letter(s) of {args.destination} sent again")
    return 0


def run_test(args: argparse.Namespace) -> int:
    """Queues a test message, then follows it until delivered, dead or the wait ends."""
    with ClientSettings.load(args).client() as client:
        sent = client.send_test_notification(args.destination, args.text)
        say(f"test message {sent.message_id} queued for {args.destination}")
        deadline = time.monotonic() + args.wait
        while True:
            page = client.list_notifications(destination=args.destination, page_size=1000)
            found = next((n for n in page.notifications if n.message_id == sent.message_id), None)
            token = page.next_page_token
            while found is None and token:
                page = client.list_notifications(
                    destination=args.destination, page_size=1000, page_token=token
                )
                found = next(
                    (n for n in page.notifications if n.message_id == sent.message_id), None
                )
                token = page.next_page_token
            status = found.status if found else notifications_pb2.NOTIFICATION_STATUS_PENDING
            if status != notifications_pb2.NOTIFICATION_STATUS_PENDING or (
                time.monotonic() > deadline
            ):
                break
            time.sleep(0.25)
    error = f" (last error: {found.last_error})" if found and found.last_error else ""
    say(f"{_status_name(status)} after {found.attempts if found else 0} attempt(s){error}")
    return 0 if status == notifications_pb2.NOTIFICATION_STATUS_DELIVERED else 1


def run_secret(_args: argparse.Namespace) -> int:
    """A new Standard Webhooks signing secret for the notify file."""
    say(signing.new_secret())
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    common, as_json = common_parser(), json_parser()
    notify = subparsers.add_parser(
        "notify",
        help="alert and incident delivery: backlog, dead letters, test messages",
        description="The outbox of alert and incident changes sent to the destinations of the "
        "server's --notify file (admin key).",
    )
    sub = notify.add_subparsers(dest="notify_command", metavar="ACTION", required=True)

    p = sub.add_parser(
        "list", parents=[common, as_json], help="destinations with their backlog, and messages"
    )
    p.add_argument("destination", nargs="?", default="", help="only this destination")
    p.add_argument("--status", choices=sorted(STATUSES), help="only messages in this state")
    p.add_argument("--page-size", type=int, default=50, help="messages per page, 1..1000 [50]")
    p.add_argument("--page-token", default="", help="continue after the page that printed it")
    p.set_defaults(func=guarded(run_list))

    p = sub.add_parser("retry", parents=[common], help="send dead letters again, in order")
    p.add_argument("destination", help="the destination's name in the notify file")
    p.add_argument("message_ids", nargs="*", help="only these messages [all dead letters]")
    p.set_defaults(func=guarded(run_retry))

    p = sub.add_parser(
        "test", parents=[common], help="send a test message and wait for its delivery"
    )
    p.add_argument("destination", help="the destination's name in the notify file")
    p.add_argument("--text", default="", help="the message's text")
    p.add_argument("--wait", type=float, default=30.0, help="seconds to wait for the delivery [30]")
    p.set_defaults(func=guarded(run_test))

    p = sub.add_parser("secret", help="print a new webhook signing secret (whsec_...)")
    p.set_defaults(func=run_secret)
