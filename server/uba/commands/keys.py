"""`uba keys create|list|revoke`: manage API keys directly in the database
(like `uba db upgrade`; no running server needed). A new key's token is
printed once, on stdout; only its SHA-256 digest is stored.

A running server caches verified keys for --key-cache-seconds (10 s by
default): a revoked key stops working within that time.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from datetime import UTC, datetime

from uba.config import Settings
from uba.datadir import PRIVATE_UMASK
from uba.logging_setup import setup_logging


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "keys",
        help="create, list and revoke API keys (on the database)",
        description="Manage API keys directly in the database.",
    )
    actions = parser.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    create = actions.add_parser("create", help="create a key and print its token once")
    create.add_argument("--name", required=True, help="a unique name; recorded as who acted")
    create.add_argument(
        "--scope",
        action="append",
        required=True,
        choices=("ingest", "read", "admin"),
        help="a scope the key holds (repeat for several)",
    )
    create.add_argument(
        "--expires-in", default=None, metavar="DURATION", help="e.g. 90s, 12h, 30d; default: never"
    )
    create.add_argument("--json", action="store_true", help="print the key as JSON")
    listing = actions.add_parser("list", help="list keys (never their tokens)")
    listing.add_argument("--json", action="store_true", help="print JSON")
    revoke = actions.add_parser("revoke", help="revoke a key by name or id")
    revoke.add_argument("key", metavar="NAME_OR_ID")
    for sub in (create, listing, revoke):
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


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # noqa: BLE001 - no user name in some containers
        return "cli"


def _info(key, now: datetime) -> dict:
    return {
        "key_id": key.key_id,
        "name": key.name,
        "scopes": sorted(key.scopes),
        "state": key.state(now),
        "created_at": key.created_at.isoformat(),
        "expires_at": key.expires_at.isoformat() if key.expires_at else None,
        "revoked_at": key.revoked_at.isoformat() if key.revoked_at else None,
    }


def run(args: argparse.Namespace) -> int:
    from uba.commands.common import parse_duration
    from uba.domain.errors import DomainError
    from uba.domain.security import expiry, parse_scopes
    from uba.storage.database import Database
    from uba.storage.security import SecurityRepository

    settings = Settings.load(args)
    setup_logging("warning")
    os.umask(PRIVATE_UMASK)  # a database this creates is the owner's alone, as under `uba serve`
    database = Database(settings.resolved_database_url)
    now = datetime.now(UTC)
    try:
        database.upgrade()
        repo = SecurityRepository(database)
        if args.keys_command == "create":
            try:
                expires_in = parse_duration(args.expires_in) if args.expires_in else None
            except argparse.ArgumentTypeError as exc:
                print(f"uba: --expires-in: {exc}", file=sys.stderr)
                return 2
            key, token = repo.create_key(
                args.name,
                parse_scopes(args.scope),
                now,
                expiry(now, expires_in),
                actor=_actor(),
                peer="local",
            )
            if args.json:
                print(json.dumps({**_info(key, now), "token": token}, indent=2))
            else:
                print(token)
                print(
                    f"uba: created key {key.key_id} {key.name!r} ({', '.join(sorted(key.scopes))}"
                    f"{', expires ' + key.expires_at.isoformat() if key.expires_at else ''}); "
                    "the token above is shown only now",
                    file=sys.stderr,
                )
        elif args.keys_command == "list":
            keys = [_info(k, now) for k in repo.keys()]
            if args.json:
                print(json.dumps(keys, indent=2))
            else:
                from uba.commands.common import table

                table(
                    [
                        [
                            k["key_id"],
                            k["name"],
                            ",".join(k["scopes"]),
                            k["state"],
                            k["created_at"][:19],
                            (k["expires_at"] or "-")[:19],
                        ]
                        for k in keys
                    ],
                    ["ID", "NAME", "SCOPES", "STATE", "CREATED (UTC)", "EXPIRES (UTC)"],
                )
        else:
            key = repo.revoke(args.key, now, actor=_actor(), peer="local")
            print(
                f"uba: revoked key {key.key_id} {key.name!r} (running servers stop accepting it "
                f"within their key cache time, {settings.key_cache_seconds:g} s by default)",
                file=sys.stderr,
            )
        return 0
    except DomainError as exc:
        print(f"uba: {exc}", file=sys.stderr)
        return 1
    finally:
        database.dispose()
