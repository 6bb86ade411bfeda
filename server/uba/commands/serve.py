"""`uba serve`: run the gRPC server."""

from __future__ import annotations

import argparse
import asyncio

from uba.config import Settings
from uba.datadir import make_private
from uba.logging_setup import setup_logging


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="run the gRPC server",
        description="Run the uba gRPC server (health checking and reflection on).",
    )
    Settings.add_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = Settings.load(args)
    setup_logging(settings.log_level, settings.log_json)
    # Before anything is created: the database, its WAL, the admin key and
    # Envoy's log (full query strings) are for the owner only.
    try:
        make_private(settings.data_dir)
    except OSError as exc:
        raise SystemExit(f"uba: data dir {settings.data_dir}: {exc.strerror}") from None
    from uba.app import serve  # deferred: `uba --help` stays fast

    return asyncio.run(serve(settings))
