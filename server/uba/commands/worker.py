"""`uba worker`: consume partitions of the event log into the database."""

from __future__ import annotations

import argparse
import asyncio

from uba.config import Settings
from uba.datadir import make_private
from uba.logging_setup import setup_logging

# The settings a worker uses: storage, detection, delivery and the log.
WORKER_SETTINGS = frozenset(
    {
        "data_dir",
        "database_url",
        "log_level",
        "log_json",
        "max_workers",
        "max_pending_events",
        "detectors",
        "cached_users",
        "notify",
        "disable_detection",
        "event_log",
        "event_log_partitions",
        "event_log_max_msgs",
        "event_log_max_bytes",
        "event_log_replicas",
        "worker_lease_seconds",
        "worker_ack_wait",
        "worker_batch",
        "metrics_listen",
    }
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "worker",
        help="consume the event log into the database (scale-out mode)",
        description="Own partitions of the event log on NATS JetStream and store and analyse "
        "their events in PostgreSQL (docs/scaling.md).",
    )
    Settings.add_arguments(parser, only=WORKER_SETTINGS)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = Settings.load(args)
    setup_logging(settings.log_level, settings.log_json)
    try:
        make_private(settings.data_dir)
    except OSError as exc:
        raise SystemExit(f"uba: data dir {settings.data_dir}: {exc.strerror}") from None
    from uba.app import run_worker  # deferred: `uba --help` stays fast

    return asyncio.run(run_worker(settings))
