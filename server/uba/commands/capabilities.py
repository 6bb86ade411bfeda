"""`uba capabilities`: the server's version, storage, analytics mode and
detectors."""

from __future__ import annotations

import argparse

from uba.commands.common import (
    ClientSettings,
    analytics_mode_name,
    as_dict,
    common_parser,
    guarded,
    json_parser,
    print_json,
    say,
    table,
)

# -- capabilities -----------------------------------------------------------------


def run_capabilities(args: argparse.Namespace) -> int:
    with ClientSettings.load(args).client() as client:
        c = client.capabilities()
    if args.json:
        print_json(as_dict(c))
        return 0
    say(f"uba {c.version} at {ClientSettings.load(args).server}")
    say(
        f"  storage {c.storage_backend}, analytics {analytics_mode_name(c.analytics_mode)}, "
        f"batches up to {c.max_batch_size}, exports {', '.join(c.export_formats)}"
    )
    table(
        [
            [
                d.name,
                d.version,
                d.family,
                "on" if d.enabled else ("off" if d.available else "unavailable"),
                d.unavailable_reason or d.description,
            ]
            for d in c.detectors
        ],
        ["DETECTOR", "VERSION", "FAMILY", "STATE", "DESCRIPTION"],
    )
    return 0


# -- registration ---------------------------------------------------------------------


def register(subparsers: argparse._SubParsersAction) -> None:
    common, as_json = common_parser(), json_parser()

    p = subparsers.add_parser(
        "capabilities",
        parents=[common, as_json],
        help="server version, storage, analytics mode, detectors",
    )
    p.set_defaults(func=guarded(run_capabilities))
