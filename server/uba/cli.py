"""The `uba` command line: one entry point, one module per command family.

Each module in COMMAND_MODULES offers `register(subparsers)`, which adds its
sub-command(s) and sets `func` on the parsed arguments; `func(args)` returns
the exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Command modules, in the order `uba --help` lists them.
COMMAND_MODULES = (
    "uba.commands.serve",
    "uba.commands.worker",
    "uba.commands.db",
    "uba.commands.keys",
    "uba.commands.gateway",
    "uba.commands.ingest",
    "uba.commands.logs",
    "uba.commands.alerts",
    "uba.commands.dashboard",
    "uba.commands.model",
    "uba.commands.audit",
    "uba.commands.users",
    "uba.commands.notify",
    "uba.commands.capabilities",
    "uba.commands.incidents",
    "uba.commands.demo",
    "uba.commands.evaluate",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="uba",
        description="User Behavior Analytics: record activity, score it against baselines, raise "
        "alerts.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
