"""`uba db upgrade|current|backup`: manage the database schema, and back up
the embedded database while a server is running."""

from __future__ import annotations

import argparse
import os
import sys

from uba.config import Settings
from uba.datadir import PRIVATE_UMASK
from uba.logging_setup import setup_logging


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("db", help="manage the database schema; back it up")
    actions = parser.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    for name, help_text in (
        ("upgrade", "apply pending migrations"),
        ("current", "print the schema revision"),
        (
            "backup",
            "copy the SQLite database to FILE while the server keeps running (PostgreSQL: "
            "pg_dump, see docs/operations.md)",
        ),
    ):
        sub = actions.add_parser(name, help=help_text)
        if name == "backup":
            sub.add_argument("file", metavar="FILE", help="where to write the copy (replaced)")
            sub.add_argument(
                "--quick-check",
                action="store_true",
                help="verify the copy with PRAGMA quick_check instead of the slower "
                "integrity_check",
            )
            sub.add_argument(
                "--pages",
                type=int,
                default=1024,
                help="pages copied per step [1024]; the server writes between steps",
            )
            sub.add_argument(
                "--pause",
                type=float,
                default=0.005,
                help="seconds to wait after each step [0.005]",
            )
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
        sub.set_defaults(func=backup if name == "backup" else run)


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


def backup(args: argparse.Namespace) -> int:
    """Exit 0 with the copy in place, 1 when it failed (FILE untouched), 2
    when this database is not one it copies (PostgreSQL: use pg_dump)."""
    settings = Settings.load(args)
    setup_logging(settings.log_level)
    os.umask(PRIVATE_UMASK)  # the copy holds what the database holds
    from uba.storage.backup import BackupError, backup_sqlite, sqlite_file

    if args.pages < 1 or args.pause < 0:
        print("uba db backup: --pages must be at least 1 and --pause at least 0", file=sys.stderr)
        return 2
    try:
        source = sqlite_file(settings.resolved_database_url)
    except BackupError as exc:
        print(f"uba db backup: {exc}", file=sys.stderr)
        return 2
    try:
        done = backup_sqlite(
            source,
            args.file,
            pages_per_step=args.pages,
            pause=args.pause,
            full_check=not args.quick_check,
        )
    except (BackupError, OSError) as exc:
        print(f"uba db backup: {exc}", file=sys.stderr)
        return 1
    print(
        f"backed up {done.source} to {done.target}: {done.pages} pages, "
        f"{done.bytes / 1e6:.1f} MB in {done.seconds:.1f} s; {done.check} ok"
    )
    return 0
