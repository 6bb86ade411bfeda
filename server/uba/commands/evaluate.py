"""`uba evaluate`: how well detection catches labelled attacks, and what it
costs in false alarms, measured through the real API.

Runs a seeded scenario (uba.evaluation), or your own events with a labels
file, through a throwaway server it starts itself (`uba serve` on SQLite in
a temporary directory, or on --database-url), sending events in time order
in RecordActivities batches and training the Isolation Forest once the
first part of the history is in (as an operator would after an import).
Then it reads every anomaly and alert and scores them against the labels
(uba.evaluation.score). Only with --server does it use a running server.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from uba.commands.common import (
    ClientSettings,
    UsageError,
    common_parser,
    guarded,
    json_parser,
    note,
    parse_time,
    sparkline,
    table,
)
from uba.commands.messages import MFA_TYPES, mfa_sendable, to_messages

_LISTENING = re.compile(r"uba: listening on (\S+)")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate",
        parents=[common_parser(), json_parser()],
        help="measure detection on labelled attacks and benign changes",
        description="Send a seeded, labelled scenario (users in eight time zones with their "
        "routines, benign changes such as trips, on-call weeks, a VPN change, a laptop refresh, "
        "and attacks) through a throwaway server, then report per attack class whether a MEDIUM+ "
        "finding caught it and how many incidents it became, per benign change the MEDIUM+ "
        "incidents and alerts it raised, false MEDIUM+ user-days, incidents and alerts per day. "
        "With --events and --labels, score your own JSON Lines events instead. Uses a running "
        "server only when --server is given.",
    )
    p.add_argument("--users", type=int, default=200, help="number of users [200]")
    p.add_argument("--days", type=int, default=42, help="days of activity [42]")
    p.add_argument("--seed", type=int, default=7, help="random seed [7]")
    p.add_argument(
        "--instances",
        type=int,
        default=3,
        help="attacks of each realistic class, on different victims "
        "(the blatant ones: one each) [3]",
    )
    p.add_argument(
        "--attack-shapes",
        choices=("usual", "other"),
        default="usual",
        help="how the realistic attacks are staged: the scenario's shapes, or other shapes of "
        "the same classes (a shorter takeover, a hijack from the user's country, two weeks "
        "dormant, misuse by finance or support, a Saturday-evening login, 2.5x exfiltration, a "
        "slower stuffing wave and spray, 8 MFA prompts in the afternoon) [usual]",
    )
    p.add_argument(
        "--end",
        type=parse_time,
        default=None,
        metavar="TIME",
        help="end of the scenario (ISO 8601) "
        "[2026-11-16T00:00Z: six weeks span the EU and US DST changes]",
    )
    p.add_argument(
        "--events",
        type=Path,
        default=None,
        metavar="FILE.jsonl",
        help="your events, as uba JSON Lines",
    )
    p.add_argument(
        "--labels",
        type=Path,
        default=None,
        metavar="LABELS.jsonl",
        help="labels of --events: one JSON object a line with kind, entity (user or source "
        "address, or a list), start, end; optional category (attack|benign), description, "
        "event_ids",
    )
    p.add_argument(
        "--database-url",
        default=None,
        help="database of the throwaway server [SQLite in a temporary directory]",
    )
    p.add_argument(
        "--detectors",
        default=None,
        metavar="FILE",
        help="detector settings for the throwaway server",
    )
    p.add_argument(
        "--train-after-days",
        type=float,
        default=None,
        help="train the model after this many days of history [60%% of the period]",
    )
    p.add_argument(
        "--slack-minutes",
        type=float,
        default=30.0,
        help="a finding this close to an attack's window still belongs to it [30]",
    )
    p.add_argument("--batch-size", type=int, default=1000, help="events per call, 1..1000 [1000]")
    p.add_argument(
        "--save",
        type=Path,
        default=None,
        metavar="DIR",
        help="write the scenario to DIR/events.jsonl and DIR/labels.jsonl (the --events and "
        "--labels formats) and stop; nothing is sent",
    )
    p.add_argument(
        "--keep", action="store_true", help="keep the throwaway server's directory (and say where)"
    )
    p.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")
    p.set_defaults(func=guarded(run))


# -- the throwaway server ----------------------------------------------------------


class ThrowawayServer:
    """`python -m uba serve` on port 0 with its own data directory; the
    user's UBA_* settings are not passed on, so it never touches their data."""

    def __init__(self, database_url: str | None, detectors: str | None, keep: bool):
        self.dir = Path(tempfile.mkdtemp(prefix="uba-evaluate-"))
        self.database_url = database_url
        self.detectors = detectors
        self.keep = keep
        self.address = ""
        self.key = ""
        self.proc: subprocess.Popen | None = None
        self.output: list[str] = []

    def start(self, timeout: float = 60.0) -> ThrowawayServer:
        args = [
            sys.executable,
            "-m",
            "uba",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            str(self.dir / "data"),
            "--train-interval",
            "0",
            "--rate-limit",
            "0",
            "--log-level",
            "warning",
        ]
        if self.database_url:
            args += ["--database-url", self.database_url]
        if self.detectors:
            args += ["--detectors", self.detectors]
        env = {k: v for k, v in os.environ.items() if not k.startswith("UBA_")}
        # The server runs from the same code as this command.
        import uba
        import uba_client

        paths = [
            str(Path(uba.__file__).parent.parent),
            str(Path(uba_client.__file__).parent.parent),
        ]
        env["PYTHONPATH"] = os.pathsep.join(
            dict.fromkeys(paths + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
        )
        self.proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        )
        ready = threading.Event()

        def pump() -> None:
            assert self.proc and self.proc.stdout
            for line in self.proc.stdout:
                if len(self.output) < 10_000:
                    self.output.append(line)
                match = _LISTENING.search(line)
                if match and not ready.is_set():
                    self.address = match.group(1)
                    ready.set()

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.monotonic() + timeout
        while not ready.wait(0.1):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise UsageError(
                    "the throwaway server did not start:\n" + "".join(self.output[-20:])
                )
        self.key = (self.dir / "data" / "admin.key").read_text().strip()
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.keep:
            note(f"uba: kept the throwaway server's directory {self.dir}")
        else:
            import shutil

            shutil.rmtree(self.dir, ignore_errors=True)


# -- sending and reading --------------------------------------------------------------


@dataclass
class RunStats:
    sent: int = 0
    accepted: int = 0
    duplicate: int = 0
    invalid: int = 0
    skipped_mfa: int = 0
    violations: list[str] = field(default_factory=list)
    model: str = ""
    seconds_sending: float = 0.0


def send(
    client,
    messages: Iterable,
    train_at: datetime | None,
    train_from: datetime,
    batch_size: int,
    stats: RunStats,
    progress,
) -> None:
    """Sends in time order; trains the model once history reaches train_at."""
    from uba_client import UbaError

    batch: list = []
    trained = train_at is None
    began = time.monotonic()

    def flush() -> None:
        if not batch:
            return
        result = client.record_batch(batch, max_batch=batch_size)
        stats.sent += len(batch)
        stats.accepted += result.accepted
        stats.duplicate += result.duplicate
        stats.invalid += result.invalid
        stats.violations.extend(
            f"{r.event_id}: {r.violations}" for r in result.results if r.status == "invalid"
        )
        batch.clear()
        progress(stats.sent)

    for message, at in messages:
        if not trained and at >= train_at:
            flush()
            trained = True
            try:
                reply = client.train_model(train_from, train_at)
                stats.model = (
                    f"trained on {reply.event_count:,} events ({reply.row_count:,} rows) up to "
                    f"{train_at:%Y-%m-%d %H:%M} UTC"
                )
            except UbaError as exc:
                stats.model = f"not trained: {exc.message}"
        batch.append(message)
        if len(batch) >= batch_size:
            flush()
    flush()
    stats.seconds_sending = time.monotonic() - began


def read_findings(client) -> tuple[list, list, list]:
    """The server's anomalies, alerts and incidents, as the scoring sees them."""
    from uba.evaluation.score import Finding
    from uba.v1 import incidents_pb2

    anomalies, alerts, incidents = [], [], []
    token = ""
    while True:
        page = client.list_anomalies(page_size=1000, page_token=token)
        for a in page.anomalies:
            anomalies.append(
                Finding(
                    "anomaly",
                    a.anomaly_id,
                    a.user_id,
                    a.detector,
                    a.severity,
                    a.occurred_at.ToDatetime(UTC),
                    None,
                    tuple(a.event_ids),
                )
            )
        token = page.next_page_token
        if not token:
            break
    for a in client.iter_alerts(page_size=1000):
        alerts.append(
            Finding(
                "alert",
                a.alert_id,
                a.user_id,
                a.detector,
                a.severity,
                a.first_seen_at.ToDatetime(UTC),
                a.last_seen_at.ToDatetime(UTC),
                (),
                tuple(a.anomaly_ids),
            )
        )
    source_kind = incidents_pb2.ENTITY_KIND_SOURCE_ADDRESS
    for i in client.iter_incidents(page_size=1000):
        about_source = i.entity_kind == source_kind
        incidents.append(
            Finding(
                "incident",
                i.incident_id,
                "" if about_source else i.entity_id,
                "incident",
                i.severity,
                i.first_seen_at.ToDatetime(UTC),
                i.last_seen_at.ToDatetime(UTC),
                (),
                tuple(i.anomaly_ids),
                tuple(i.alert_ids),
                i.entity_id if about_source else "",
            )
        )
    return anomalies, alerts, incidents


# -- labels files ---------------------------------------------------------------------


class LabelsRefused(UsageError):
    """Input refused as a whole, every problem with its line number."""

    def __init__(self, what: str, problems: list[str]):
        super().__init__(f"{what} refused, nothing was sent:\n" + "\n".join(problems))
        self.problems = problems


def parse_labels(
    lines: Iterable[str],
    users: set[str],
    sources: set[str],
    first: datetime,
    last: datetime,
    slack: timedelta = timedelta(0),
) -> list:
    """Labels from JSON Lines; every problem is collected with its line
    number and none of the labels is returned when there is one."""
    from uba.evaluation.score import ATTACK, BENIGN, Label
    from uba_client import events as ev

    labels, problems = [], []
    for no, raw in enumerate(lines, start=1):
        text = raw.strip()
        if not text:
            continue

        def bad(message: str, no: int = no) -> None:
            problems.append(f"line {no}: {message}")

        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            bad(f"not JSON: {exc.msg}")
            continue
        if not isinstance(record, dict):
            bad("not a JSON object")
            continue
        unknown = set(record) - {
            "kind",
            "entity",
            "start",
            "end",
            "category",
            "description",
            "event_ids",
        }
        if unknown:
            bad(f"{sorted(unknown)[0]}: unknown field")
        kind = record.get("kind")
        if not isinstance(kind, str) or not kind.strip():
            bad("kind: required")
            kind = ""
        category = record.get("category", ATTACK)
        if category not in (ATTACK, BENIGN):
            bad(f"category: must be {ATTACK!r} or {BENIGN!r}")
        entity = record.get("entity")
        entities = [entity] if isinstance(entity, str) else entity
        if (
            not entities
            or not isinstance(entities, list)
            or not all(isinstance(x, str) and x for x in entities)
        ):
            bad("entity: required (a user id or source address, or a list of them)")
            entities = []
        for x in entities:
            if x not in users and x not in sources:
                bad(f"entity: {x!r} is no user or source address of the events")
        times = {}
        for name in ("start", "end"):
            if name not in record:
                bad(f"{name}: required")
                continue
            try:
                times[name] = ev.to_datetime(record[name])
            except (ValueError, TypeError, OverflowError) as exc:
                bad(f"{name}: {exc}")
        if len(times) == 2:
            if times["end"] < times["start"]:
                bad("end: before start")
            for name, t in times.items():
                if not first - slack <= t <= last + slack:
                    bad(
                        f"{name}: {t.isoformat()} is outside the events' range "
                        f"{first.isoformat()} .. {last.isoformat()}"
                    )
        event_ids = record.get("event_ids", [])
        if not isinstance(event_ids, list) or not all(isinstance(x, str) for x in event_ids):
            bad("event_ids: must be a list of event ids")
            event_ids = []
        description = record.get("description", "")
        if not isinstance(description, str):
            bad("description: must be text")
        if not problems and len(times) == 2:
            labels.append(
                Label(
                    kind.strip(),
                    times["start"],
                    times["end"],
                    category,
                    tuple(x for x in entities if x in users),
                    tuple(x for x in entities if x in sources),
                    tuple(event_ids),
                    description,
                )
            )
    if problems:
        raise LabelsRefused("labels", problems)
    return labels


def _without_mfa(lines: Iterable[str], held_back: list[str]) -> Iterable[str]:
    """Blanks the lines of MFA events (keeping line numbers) for a contract
    that lacks their types; their event ids (or "") go into held_back."""
    for line in lines:
        if '"mfa_' in line or '"MFA_' in line or "ACTIVITY_TYPE_MFA_" in line:
            try:
                record = json.loads(line.strip().removesuffix(","))
                kind = str(record.get("type", "")).lower()
            except (json.JSONDecodeError, AttributeError):
                record, kind = {}, ""
            if kind.removeprefix("activity_type_") in MFA_TYPES:
                held_back.append(str(record.get("event_id", "")))
                yield ""
                continue
        yield line


def load_events(path: Path, skip_mfa: bool = False, held_back: list[str] | None = None) -> list:
    """The events of a uba JSON Lines file as messages, oldest first;
    refuses the file (every problem with its line number) when a line is bad.
    With skip_mfa, MFA events are left out, their ids added to held_back."""
    from uba.importers import make_importer

    importer = make_importer("jsonl", source_name=str(path))
    held_back = held_back if held_back is not None else []
    try:
        with open(path, encoding="utf-8") as f:
            events = list(importer.parse(_without_mfa(f, held_back) if skip_mfa else f))
    except OSError as exc:
        raise UsageError(f"--events: {exc.strerror}: {path}") from None
    if importer.stats.unparsed:
        raise LabelsRefused(
            str(path),
            [f"line {no}: {reason}" for no, reason, _ in importer.stats.samples]
            + (
                [f"... {importer.stats.unparsed} unusable lines in all"]
                if importer.stats.unparsed > len(importer.stats.samples)
                else []
            ),
        )
    if not events:
        raise UsageError(f"--events: no events in {path}")
    events.sort(key=lambda m: (m.occurred_at.seconds, m.occurred_at.nanos, m.event_id))
    return events


# -- the command ------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    from uba.evaluation import score as scoring

    if (args.events is None) != (args.labels is None):
        raise UsageError("--events and --labels go together")
    if args.save is not None and args.events is not None:
        raise UsageError("--save writes a generated scenario; not with --events")
    if not 1 <= args.batch_size <= 1000:
        raise UsageError("--batch-size must be within 1..1000")
    slack = timedelta(minutes=args.slack_minutes)
    skip_mfa = not mfa_sendable()
    stats = RunStats()
    setup: dict = {}

    if args.events is not None:
        held_back: list[str] = []
        messages = load_events(args.events, skip_mfa, held_back)
        stats.skipped_mfa = len(held_back)
        times = [m.occurred_at.ToDatetime(UTC) for m in messages]
        start, end = times[0], times[-1]
        users = {m.user_id for m in messages}
        sources_of = {m.event_id: m.source_ip for m in messages if m.source_ip}
        try:
            with open(args.labels, encoding="utf-8") as f:
                labels = parse_labels(f, users, set(sources_of.values()), start, end, slack)
        except OSError as exc:
            raise UsageError(f"--labels: {exc.strerror}: {args.labels}") from None
        if not labels:
            raise UsageError(f"--labels: no labels in {args.labels}")
        unsent = set(held_back) - {""}
        labels = [
            replace(lb, sendable=False)
            if lb.is_attack and unsent.intersection(lb.event_ids)
            else lb
            for lb in labels
        ]
        stream: Iterable[tuple[Any, datetime]] = list(zip(messages, times, strict=True))
        span = end - start
        setup = {"events_file": str(args.events), "labels_file": str(args.labels)}
    else:
        from uba.evaluation.scenario import DEFAULT_END, generate

        if not 1 <= args.users <= 100_000 or not 1 <= args.days <= 365:
            raise UsageError("--users must be within 1..100000 and --days within 1..365")
        end = args.end or DEFAULT_END
        if end > datetime.now(UTC):
            raise UsageError(
                "--end: the server refuses events more than 5 minutes in the future; "
                "pick a past end"
            )
        if not 1 <= args.instances <= 20:
            raise UsageError("--instances must be within 1..20")
        scenario = generate(
            args.users,
            args.days,
            args.seed,
            end=end,
            instances=args.instances,
            attack_shapes=args.attack_shapes,
        )
        if args.save is not None:
            from uba.evaluation.files import save

            try:
                paths = save(scenario.events, scenario.labels, args.save)
            except OSError as exc:
                raise UsageError(f"--save: {exc.strerror}: {exc.filename}") from None
            print(
                f"wrote {len(scenario.events):,} events to {paths[0]} and "
                f"{len(scenario.labels):,} labels to {paths[1]}"
            )
            return 0
        start, end = scenario.start, scenario.end
        users = {u.user_id for u in scenario.people}
        sources_of = {e.event_id: e.source_ip for e in scenario.events}
        labels = scenario.labels
        if skip_mfa:
            stats.skipped_mfa = sum(1 for e in scenario.events if e.type.value in MFA_TYPES)
            mfa_ids = {e.event_id for e in scenario.events if e.type.value in MFA_TYPES}
            labels = [
                replace(lb, sendable=False)
                if lb.is_attack and mfa_ids.intersection(lb.event_ids)
                else lb
                for lb in labels
            ]
        stream = to_messages(scenario.events, skip_mfa)
        span = end - start
        setup = {
            "users": args.users,
            "days": args.days,
            "seed": args.seed,
            "instances": args.instances,
            "attack_shapes": args.attack_shapes,
        }

    train_after = (
        timedelta(days=args.train_after_days)
        if args.train_after_days is not None
        else timedelta(seconds=span.total_seconds() * 0.6)
    )
    train_at = start + train_after
    if args.events is None:
        train_at = scenario.train_at if args.train_after_days is None else train_at

    server = None
    settings = ClientSettings.load(args)
    if args.timeout is None and not os.environ.get("UBA_TIMEOUT"):
        # A batch with every detector on a busy machine can take more than
        # the 10 s default; a retry after a timeout only stores duplicates.
        settings = replace(settings, timeout=120.0)
    if args.server is None:
        if not args.quiet:
            note(
                "uba: starting a throwaway server"
                + (
                    " on --database-url"
                    if args.database_url
                    else " on SQLite in a temporary directory"
                )
            )
        server = ThrowawayServer(args.database_url, args.detectors, args.keep).start()
        settings = replace(
            settings,
            server=server.address,
            api_key=server.key,
            tls=False,
            ca_file="",
            client_cert="",
            client_key="",
        )
    elif args.database_url or args.detectors:
        raise UsageError(
            "--database-url and --detectors configure the throwaway server; not with --server"
        )
    try:
        last_note = [time.monotonic()]

        def progress(sent: int) -> None:
            if not args.quiet and time.monotonic() - last_note[0] > 10:
                last_note[0] = time.monotonic()
                note(f"uba: {sent:,} events sent")

        with settings.client() as client:
            caps = client.capabilities()
            from uba.commands.common import analytics_mode_name as _mode

            mode, backend = _mode(caps.analytics_mode), caps.storage_backend
            forest = any(
                d.name == "isolation_forest" and d.available and d.enabled for d in caps.detectors
            )
            if not args.quiet:
                note(
                    f"uba: sending events in time order ({mode} mode, {backend}); "
                    f"training the model at {train_at:%Y-%m-%d %H:%M} UTC"
                    if forest
                    else f"uba: sending events in time order ({mode} mode, {backend})"
                )
            send(
                client,
                stream,
                train_at if forest else None,
                start,
                args.batch_size,
                stats,
                progress,
            )
            if not forest:
                stats.model = "no isolation forest in this mode"
            anomalies, alerts, incidents = read_findings(client)
    finally:
        if server is not None:
            server.stop()

    report = scoring.score(
        labels, anomalies, alerts, users, start, end, sources_of, slack, incidents
    )
    result = {
        "setup": {
            **setup,
            "mode": mode,
            "storage": backend,
            "mfa_sendable": not skip_mfa,
            "slack_minutes": args.slack_minutes,
        },
        "events": {
            "sent": stats.sent,
            "accepted": stats.accepted,
            "duplicate": stats.duplicate,
            "invalid": stats.invalid,
            "not_sendable_mfa": stats.skipped_mfa,
            "seconds_sending": round(stats.seconds_sending, 1),
        },
        "model": stats.model,
        **report.to_dict(),
    }
    for v in stats.violations[:5]:
        note(f"uba: invalid {v}")
    if args.json:
        print(json.dumps(result, indent=2, ensure_ascii=False))
    else:
        print_report(result)
    return 1 if stats.invalid else 0


def print_report(r: dict) -> None:
    s = r["setup"]
    what = (
        f"{s['users']} users, {s['days']} days, seed {s['seed']}, "
        f"{s['instances']} of each realistic attack"
        + (f" ({s['attack_shapes']} shapes)" if s.get("attack_shapes", "usual") != "usual" else "")
        if "users" in s
        else f"{s['events_file']} with {s['labels_file']}"
    )
    print(
        f"evaluation: {what}; {r['start'][:16]} .. {r['end'][:16]} UTC; "
        f"{s['mode']} mode, {s['storage']}"
    )
    e = r["events"]
    print(
        f"events: {e['sent']:,} sent ({e['accepted']:,} accepted, {e['duplicate']:,} duplicate, "
        f"{e['invalid']:,} invalid) in {e['seconds_sending']:.0f} s"
        + (
            f"; {e['not_sendable_mfa']:,} MFA events not sendable "
            "(the contract lacks the MFA types)"
            if e["not_sendable_mfa"]
            else ""
        )
    )
    print(f"model: {r['model']}")
    print()
    rows = []
    for a in r["attacks"]:
        if not a["sendable"]:
            rows.append([a["kind"], "not sendable", "-", "-", "-", "-", "-", "-"])
            continue
        caught = (
            "yes"
            if a["caught"] == a["sendable"]
            else ("no" if not a["caught"] else f"{a['caught']}/{a['sendable']}")
        )
        minutes = "-" if a["minutes_to_detect"] is None else f"{a['minutes_to_detect']:g}"
        incidents = (
            f"{a['incidents']} (max {a['incidents_per_attack_max']}, {a['best_incident_severity']})"
            if a["incidents"]
            else "0"
        )
        rows.append(
            [
                a["kind"],
                caught,
                a["best_severity"] if a["best_severity"] != "UNSPECIFIED" else "-",
                incidents,
                f"{a['alerts']} ({a['alerts_medium_plus']})",
                f"{a['anomalies']} ({a['anomalies_medium_plus']}, "
                f"{a['anomalies_medium_plus_on_its_events']})",
                minutes,
                ",".join(a["detectors"]) or "-",
            ]
        )
    table(
        rows,
        [
            "ATTACK",
            "CAUGHT",
            "BEST",
            "INCIDENTS (MAX PER ATTACK, BEST)",
            "ALERTS (MEDIUM+)",
            "ANOMALIES (MEDIUM+, ON ITS EVENTS)",
            "MINUTES TO DETECT",
            "DETECTORS (MEDIUM+)",
        ],
    )
    print()
    table(
        [
            [
                c["kind"],
                str(c["instances"]),
                str(c["incidents_medium_plus"]),
                str(c["alerts_medium_plus"]),
                str(c["anomalies_medium_plus"]),
                str(c["users_alerted"]),
                ",".join(c["detectors"]) or "-",
            ]
            for c in r["confounders"]
        ],
        [
            "BENIGN CONFOUNDER",
            "INSTANCES",
            "MEDIUM+ INCIDENTS",
            "MEDIUM+ ALERTS",
            "MEDIUM+ ANOMALIES",
            "USERS ALERTED",
            "DETECTORS (MEDIUM+)",
        ],
    )
    print()
    not_sendable = r["attack_classes_not_sendable"]
    partly = [a["kind"] for a in r["attacks"] if a["sendable"] and 0 < a["caught"] < a["sendable"]]
    print(
        f"attack classes caught: {r['attack_classes_caught']} of "
        f"{r['attack_classes_sendable']} in every instance"
        + (f", {len(partly)} in some ({', '.join(partly)})" if partly else "")
        + (f"; not sendable: {', '.join(not_sendable)}" if not_sendable else "")
    )
    print(
        f"false MEDIUM+ user-days: {r['false_medium_plus_user_days']:,} of "
        f"{r['attack_free_user_days']:,} attack-free user-days "
        f"({r['false_medium_plus_user_day_percent']:.2f}%)"
    )
    print(
        f"incidents: {r['incidents']:,} ({r['incidents_per_day']:g} a day); "
        f"{r['unattributed_incidents']:,} outside every attack "
        f"({r['unattributed_incidents_per_day_per_100_users']:g} a day per 100 users), "
        f"{r['unattributed_incidents_medium_plus']:,} of them MEDIUM+"
    )
    print_daily(r.get("daily", []))
    print(
        f"alerts: {r['alerts']:,} ({r['alerts_per_day']:g} a day); "
        f"MEDIUM+ {r['alerts_medium_plus']:,} ({r['alerts_medium_plus_per_day']:g} a day), "
        f"{r['unattributed_medium_plus_alerts']:,} of them attributed to no attack"
    )


def print_daily(daily: list[dict]) -> None:
    """The analyst's load by day beside the attack days: one column a day,
    bars scaled to each row's busiest day, `^` under a day an attack ran."""
    if not daily:
        return
    rows = [
        ("MEDIUM+ alerts", [d["alerts_medium_plus"] for d in daily]),
        ("incidents", [d["incidents"] for d in daily]),
    ]
    print(f"load by day (UTC), {daily[0]['date']} .. {daily[-1]['date']}:")
    for name, values in rows:
        print(f"  {name:<15} {sparkline(values)}  (at most {max(values)} a day)")
    print(f"  {'attack days':<15} " + "".join("^" if d["attacks"] else " " for d in daily))
