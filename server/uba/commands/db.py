"""`uba db upgrade|current`: manage the database schema."""

from __future__ import annotations

import argparse
import os

from uba.config import Settings
from uba.datadir import PRIVATE_UMASK
from uba.logging_setup import setup_logging


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("db", help="manage the database schema")
    actions = parser.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    for name, help_text in (
        ("upgrade", "apply pending migrations"),
        ("current", "print the schema revision"),
    ):
        sub = actions.add_parser(name, help=help_text)
        sub.add_argument(
            "--database-url",
            default=None,
            help="SQLAlchemy URL [UBA_DATABASE_URL, SQLite in the data dir]",
        )
        sub.add_argument(
            "--data-dir",
            default=None,
            help="directory of the embedded database [UBA_DATA_DIR, ./data]",
        )
        sub.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = Settings.load(args)
    setup_logging(settings.log_level)
    os.umask(PRIVATE_UMASK)  # a database this creates is the owner's alone, as under `uba serve`
    from uba.storage.database import Database

    database = Database(settings.resolved_database_url)
    try:
        if args.db_command == "upgrade":
            database.upgrade()
        current, head = database.current_revision(), Database.head_revision()
        print(f"schema revision {current or 'none'} (latest {head}) on {database.backend}")
        return 0 if args.db_command == "upgrade" or current == head else 1
    finally:
        database.dispose()
