"""`uba ingest`: import log files into a running uba server.

Reads each file line by line (bounded memory), sends the events in batches
with client-assigned deterministic ids (re-running an import stores nothing
twice), shows progress on stderr and ends with a summary. Exit code 1 when
the server refused events or a batch could not be delivered.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from uba.commands.common import (
    ClientSettings,
    UsageError,
    common_parser,
    fail,
    guarded,
    json_parser,
    note,
)
from uba.importers import FORMATS, ImportStats, make_importer

MAX_REPORTED = 5  # invalid events / unparsed lines echoed on stderr


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "ingest",
        parents=[common_parser(), json_parser()],
        help="import log files (sshd, JSON Lines, CSV)",
        description="Import OpenSSH/syslog auth logs, or events as JSON Lines or CSV, into a "
        "running server. Lines that cannot be imported are counted and reported, never fatal. "
        "Event ids are derived from the input, so importing a file again stores nothing twice.",
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="files to read ('-' for stdin)")
    p.add_argument(
        "--format",
        choices=FORMATS,
        default=None,
        help="input format [by extension: .jsonl/.ndjson/.json -> jsonl, .csv -> csv, else sshd]",
    )
    p.add_argument(
        "--year",
        type=int,
        default=None,
        help="year of syslog lines, which carry none "
        "[this year, or last year when that would put the first line in the future]",
    )
    p.add_argument(
        "--timezone", default="UTC", help="IANA zone of syslog timestamps without one [UTC]"
    )
    p.add_argument(
        "--source", default="", help="the events' `source` [sshd for syslog; none for records]"
    )
    p.add_argument(
        "--map",
        action="append",
        default=[],
        metavar="SRC=DST",
        help="rename an input column to an event field (jsonl/csv), e.g. --map ts=occurred_at; "
        "repeatable",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=500,
        help="events per RecordActivities call, 1..1000 [500]",
    )
    p.add_argument("--dry-run", action="store_true", help="parse and count only; send nothing")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")
    p.set_defaults(func=guarded(run))


def _format_of(path: str) -> str:
    suffix = Path(path).suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if suffix == ".csv":
        return "csv"
    return "sshd"


class Progress:
    """One status line on stderr: rewritten in place on a terminal, every
    10 s otherwise (so CI logs stay short)."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self.last = time.monotonic()
        self.shown = False

    def show(self, text: str, final: bool = False) -> None:
        if self.quiet:
            return
        now = time.monotonic()
        if not final and now - self.last < (0.5 if self.tty else 10.0):
            return
        self.last = now
        if self.tty:
            sys.stderr.write("\r\033[K" + text + ("\n" if final else ""))
            sys.stderr.flush()
            self.shown = not final
        elif not final:
            note(text)

    def clear(self) -> None:
        if self.shown:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()


def run(args: argparse.Namespace) -> int:
    from uba.importers.records import parse_mapping
    from uba_client import BatchRecorder

    if not 1 <= args.batch_size <= 1000:
        raise UsageError("--batch-size must be within 1..1000")
    try:
        ZoneInfo(args.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise UsageError(f"--timezone: unknown time zone {args.timezone!r}") from None
    try:
        mapping = parse_mapping(args.map)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    for path in args.files:
        if path != "-" and not Path(path).is_file():
            raise UsageError(f"cannot read {path}: no such file")

    settings = ClientSettings.load(args)
    totals = ImportStats()
    outcome: Counter = Counter()
    invalid_samples: list[str] = []
    progress = Progress(args.quiet)

    def on_result(result, event) -> None:
        outcome[result.status] += 1
        if result.status in ("invalid", "failed") and len(invalid_samples) < MAX_REPORTED:
            why = "; ".join(f"{f}: {d}" for f, d in result.violations) or result.error
            invalid_samples.append(
                f"{result.status} {event.event_id} (user {event.user_id!r}): {why}"
            )

    client = None if args.dry_run else settings.client()
    recorder = (
        None
        if client is None
        else BatchRecorder(
            client, max_batch=args.batch_size, flush_interval=2.0, on_result=on_result
        )
    )
    started = time.monotonic()
    try:
        for path in args.files:
            fmt = args.format or _format_of(path)
            importer = make_importer(
                fmt,
                source_name=path,
                year=args.year,
                timezone=args.timezone,
                source=args.source or ("sshd" if fmt == "sshd" else ""),
                mapping=mapping,
            )
            name = "stdin" if path == "-" else path
            stream = (
                sys.stdin
                if path == "-"
                else open(path, encoding="utf-8", errors="replace", newline="")
            )
            with stream:
                for event in importer.parse(stream):
                    if recorder is not None:
                        recorder.add(event)
                        if recorder.stats.failed:
                            # The client already retried; more batches would fail the same way.
                            break
                    progress.show(
                        f"ingest: {name}: {importer.stats.lines:,} lines, "
                        f"{importer.stats.events:,} events, "
                        f"{sum(outcome.values()):,} acknowledged"
                    )
            totals.add(importer.stats)
            if recorder is not None and recorder.stats.failed:
                break
            for line_no, reason, text in importer.stats.samples[:MAX_REPORTED]:
                note(f"uba: {name}:{line_no}: skipped, {reason}: {text[:120]}")
            if getattr(importer, "extra_columns", None):
                note(
                    f"uba: {name}: columns not in ActivityEvent went to attributes: "
                    f"{', '.join(sorted(importer.extra_columns))}"
                )
        if recorder is not None:
            recorder.close()
    finally:
        if client is not None:
            client.close()
    elapsed = time.monotonic() - started
    progress.clear()
    for sample in invalid_samples:
        note(f"uba: {sample}")

    by_type = dict(sorted(totals.by_type.items()))
    summary = {
        "files": len(args.files),
        "read": totals.lines,
        "events": totals.events,
        "accepted": outcome["accepted"],
        "duplicate": outcome["duplicate"],
        "invalid": outcome["invalid"],
        "failed": outcome["failed"],
        "merged": totals.merged,
        "ignored": totals.ignored,
        "skipped": totals.skipped,
        "unparsed": totals.unparsed,
        "by_type": by_type,
        "skip_reasons": dict(totals.skip_reasons),
        "seconds": round(elapsed, 3),
        "dry_run": bool(args.dry_run),
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        kinds = ", ".join(f"{k} {v:,}" for k, v in by_type.items()) or "none"
        print(
            f"read {totals.lines:,} lines from {len(args.files)} file(s) in {elapsed:.1f}s: "
            f"{totals.events:,} events ({kinds})"
        )
        if not args.dry_run:
            print(
                f"server: {outcome['accepted']:,} accepted, {outcome['duplicate']:,} duplicate, "
                f"{outcome['invalid']:,} invalid"
                + (f", {outcome['failed']:,} not delivered" if outcome["failed"] else "")
            )
        print(
            f"not imported: {totals.unparsed:,} unparsed, {totals.skipped:,} skipped, "
            f"{totals.ignored:,} ignored (no activity), "
            f"{totals.merged:,} merged into another line's event"
        )
    if outcome["failed"]:
        fail(
            f"{outcome['failed']:,} events were not delivered; run the same import again to send "
            "them (what was stored is not stored twice)"
        )
    return 1 if outcome["invalid"] or outcome["failed"] else 0
