"""`uba ingest`: import log files into a running uba server.

Reads each file line by line (bounded memory), sends the events in batches
with client-assigned deterministic ids (re-running an import stores nothing
twice), shows progress on stderr and ends with a summary. Exit code 1 when
the server refused events or a batch could not be delivered.
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import os
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
from uba.importers import FORMAT_NAMES, FORMATS, ImportStats, compatible, make_importer, sniff

MAX_REPORTED = 5  # invalid events / unparsed lines echoed on stderr
SNIFF_LINES = 200  # lines read to recognise a file's format
SNIFF_CHARS = 256 * 1024
EVTX_MAGIC = b"ElfFile\x00"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "ingest",
        parents=[common_parser(), json_parser()],
        help="import log files (sshd/syslog, JSON Lines, CSV, OCSF, ECS, Okta, Entra ID, "
        "CloudTrail, Windows Security)",
        description="Import OpenSSH/syslog auth logs, events as JSON Lines or CSV, or identity "
        "provider and platform logs (OCSF, ECS, Okta System Log, Entra ID sign-ins, AWS "
        "CloudTrail, Windows Security events as Winlogbeat JSON or .evtx) into a running server. "
        "Lines that cannot be imported are counted and reported, never fatal. Event ids are "
        "derived from the input, so importing a file again stores nothing twice.",
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="files to read ('-' for stdin)")
    p.add_argument(
        "--format",
        choices=FORMATS,
        default=None,
        help="input format; a file that looks like another format is refused "
        "[recognised from the first records; else by extension: .jsonl/.ndjson/.json -> jsonl, "
        ".csv -> csv, .evtx -> winlog, else sshd]",
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
    follow = p.add_argument_group("following a growing file")
    follow.add_argument(
        "--follow",
        "-f",
        action="store_true",
        help="keep reading FILE as it grows, like `tail -F` (across rotation and truncation), "
        "until SIGINT/SIGTERM; resumes from a checkpoint after a restart",
    )
    follow.add_argument(
        "--checkpoint",
        metavar="PATH",
        default=None,
        help="where --follow remembers how far the server acknowledged "
        "[DATA_DIR/follow/NAME-HASH.json]",
    )
    follow.add_argument(
        "--poll",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="how often --follow looks for new lines at the end of the file [1]",
    )
    follow.add_argument(
        "--linger",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="longest time --follow holds an event before sending a batch that is not full [1]",
    )
    p.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")
    p.set_defaults(func=guarded(run))


def _format_of(path: str) -> str:
    suffix = Path(path).suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if suffix == ".csv":
        return "csv"
    if suffix == ".evtx":
        return "winlog"
    return "sshd"


def _head(stream) -> list[str]:
    """The first lines of a text stream (at most SNIFF_LINES / SNIFF_CHARS)."""
    head: list[str] = []
    size = 0
    for line in stream:
        head.append(line)
        size += len(line)
        if len(head) >= SNIFF_LINES or size >= SNIFF_CHARS:
            break
    return head


def _is_evtx(path: str) -> bool:
    if path == "-":
        return False
    with open(path, "rb") as f:
        return f.read(len(EVTX_MAGIC)) == EVTX_MAGIC


def _choose_format(given: str | None, path: str, head: list[str], evtx: bool) -> str:
    """The format to read a file as: the one given, unless the file looks
    like another (then a UsageError names it); else the one it looks like;
    else the one its extension suggests."""
    sniffed = "winlog" if evtx else sniff(head)
    if given is None:
        return sniffed or _format_of(path)
    if not compatible(given, sniffed):
        assert sniffed is not None
        raise UsageError(
            f"{'stdin' if path == '-' else path}: this looks like {FORMAT_NAMES[sniffed]}, "
            f"not {FORMAT_NAMES[given]}; use --format {sniffed}"
        )
    if evtx and given != "winlog":
        raise UsageError(f"{path}: .evtx files are read with --format winlog")
    return given


def _open(path: str):
    return open(path, encoding="utf-8", errors="replace", newline="")


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
    if args.follow:
        return _follow(args, mapping)
    formats: dict[str, str] = {}
    for path in args.files:
        if path != "-" and not Path(path).is_file():
            raise UsageError(f"cannot read {path}: no such file")
        if path != "-":  # refuse a wrong --format before anything is sent
            evtx = _is_evtx(path)
            head: list[str] = []
            if not evtx:
                with _open(path) as f:
                    head = _head(f)
            formats[path] = _choose_format(args.format, path, head, evtx)
            if evtx and importlib.util.find_spec("evtx") is None:
                raise UsageError(
                    f"{path}: reading .evtx files needs the 'evtx' package "
                    "(pip install 'uba[windows]'), or export the log with Winlogbeat"
                )

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
            evtx = path != "-" and _is_evtx(path)
            stream = sys.stdin if path == "-" else open(os.devnull) if evtx else _open(path)
            lines: object = stream
            if path == "-":
                head = _head(stream)
                fmt = _choose_format(args.format, path, head, False)
                lines = itertools.chain(head, stream)
            else:
                fmt = formats[path]
            importer = make_importer(
                fmt,
                source_name=path,
                year=args.year,
                timezone=args.timezone,
                source=args.source or ("sshd" if fmt == "sshd" else ""),
                mapping=mapping,
            )
            name = "stdin" if path == "-" else path
            if evtx:  # a binary file: the evtx parser reads it from the path
                events = importer.parse_evtx(path)
            else:
                events = importer.parse(lines)
            with stream:
                for event in events:
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
            for line_no, reason in importer.stats.skip_samples[:MAX_REPORTED]:
                note(f"uba: {name}:{line_no}: not imported, {reason}")
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


def _follow(args: argparse.Namespace, mapping: dict[str, str]) -> int:
    from uba.commands.follow import Follower, check_followable, default_checkpoint

    if len(args.files) != 1 or args.files[0] == "-":
        raise UsageError("--follow takes one FILE (not stdin)")
    if args.dry_run:
        raise UsageError("--follow sends what it reads; --dry-run is for whole files")
    if args.poll <= 0 or args.linger < 0:
        raise UsageError("--poll must be above 0 and --linger not below 0")
    path = args.files[0]
    head: list[str] = []
    evtx = False
    if Path(path).is_file():  # else wait for it, like tail -F
        evtx = _is_evtx(path)
        if not evtx:
            with _open(path) as f:
                head = _head(f)
    fmt = _choose_format(args.format, path, head, evtx)
    check_followable(path, fmt, head, evtx)
    settings = ClientSettings.load(args)
    checkpoint = args.checkpoint or default_checkpoint(settings.data_dir, path)
    importer = make_importer(
        fmt,
        source_name=path,
        year=args.year,
        timezone=args.timezone,
        source=args.source or ("sshd" if fmt == "sshd" else ""),
        mapping=mapping,
    )
    client = settings.client()
    follower = Follower(
        path,
        fmt,
        importer,
        client,
        checkpoint,
        batch_size=args.batch_size,
        poll=args.poll,
        linger=args.linger,
        quiet=args.quiet,
    )
    started = time.monotonic()
    try:
        code = follower.run()
    finally:
        client.close()
    elapsed = time.monotonic() - started
    for sample in follower.invalid_samples:
        note(f"uba: {sample}")
    stats, outcome = importer.stats, follower.outcome
    resumed = follower.resumed_at
    summary = {
        "files": 1,
        "read": stats.lines,
        "events": stats.events,
        "accepted": outcome["accepted"],
        "duplicate": outcome["duplicate"],
        "invalid": outcome["invalid"],
        "failed": outcome["failed"],
        "merged": stats.merged,
        "ignored": stats.ignored,
        "skipped": stats.skipped,
        "unparsed": stats.unparsed,
        "by_type": dict(sorted(stats.by_type.items())),
        "skip_reasons": dict(stats.skip_reasons),
        "seconds": round(elapsed, 3),
        "dry_run": False,
        "follow": {
            "checkpoint": checkpoint,
            "resumed_at_line": resumed.line if resumed else 0,
            "resumed_at_offset": resumed.offset if resumed else 0,
        },
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        where = f" (resumed after line {resumed.line:,})" if resumed else ""
        print(
            f"followed {path}{where} for {elapsed:.1f}s: read {stats.lines:,} lines, "
            f"{stats.events:,} events"
        )
        print(
            f"server: {outcome['accepted']:,} accepted, {outcome['duplicate']:,} duplicate, "
            f"{outcome['invalid']:,} invalid"
            + (f", {outcome['failed']:,} not delivered" if outcome["failed"] else "")
        )
        print(
            f"not imported: {stats.unparsed:,} unparsed, {stats.skipped:,} skipped, "
            f"{stats.ignored:,} ignored (no activity), "
            f"{stats.merged:,} merged into another line's event"
        )
    if follower.undelivered:
        fail(
            f"{outcome['failed']:,} events were not delivered ({follower.undelivered}); the "
            "checkpoint stays before them, so following again sends them"
        )
    return code
