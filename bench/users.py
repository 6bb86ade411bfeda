"""Users: ingest rate and server memory against the number of distinct
users, and the memory of a process per cached user (issue #22).

A process keeps at most --cached-users users in memory: their baselines
and every detector's state keyed by user (and address, and value). Users
beyond that are evicted, least recently active first, and cost a database
read when they come back; partitioning users over workers (the event log,
docs/scaling.md) is what keeps each worker's users cached. Three parts:

- Rate against distinct users, one embedded process: `uba serve` on SQLite
  (enhanced mode, default --cached-users), a stream cycling over U users
  (consecutive events belong to different users: the worst case for the
  cache), U from 1,000 to 1,000,000 with a few events per user (one at the
  largest), batches of 500 from two client processes, two batches in
  flight each. Events/s of each chunk and the server's RSS after it.
- The same stream through the event log on PostgreSQL: a nats-server the
  bench starts on a free port, one front end (`uba serve --event-log`) and
  one `uba worker`. Everything is published first (the front end's ack
  rate), then the worker is started and drains the backlog: its rate is
  events stored in PostgreSQL per second, its RSS sampled while it works.
- Warm against cold: the same embedded stream of U users once with the
  default --cached-users (below U: every event finds its user evicted) and
  once with --cached-users above U (every user stays cached), which is
  what partitioning users over workers gives each worker.
- Memory per cached user: `uba serve` on SQLite with --cached-users C at
  two values of C, fed 1.5 C users with a little of everything each
  (login, MFA prompts, API calls in two sessions, logout, a failed login),
  so every structure a user's ordinary activity fills is full and evicting.
  The slope of RSS between the two C is the memory per cached user. Beside
  it, in this process (tracemalloc), the bytes per user of each structure,
  with the ones only rarer activity fills (a session's risk, a dormant
  account's return, distribution-shift episodes) filled directly.

Standalone (just this section):

    .venv/bin/python bench/users.py [--smoke] [--backends sqlite,postgresql]
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402 - after the sys.path set-up
from common import Server  # noqa: E402 - after the sys.path set-up
from report import Figure  # noqa: E402 - after the sys.path set-up

BATCH = 500
# Events of the memory stream per user, in this order (see rich_event).
RICH_STEPS = 7
_ZONES = (("DE", "Europe/Berlin"), ("US", "America/New_York"), ("JP", "Asia/Tokyo"))


# -- event streams (built in the client processes, bench/loadgen.py) -----------------------


def _user_fields(u: int) -> dict:
    """What stays the same across a user's events: their own address,
    device and session, one of three countries, one of 20 teams."""
    country, zone = _ZONES[u % 3]
    return dict(
        user_id=f"user{u}",
        # A network (/24) of their own, for the first 65,536 users.
        source_ip=f"10.{u >> 8 & 255}.{u & 255}.{(u >> 16 & 255) + 1}",
        device_id=f"laptop-{u}",
        user_agent="Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0",
        country_code=country,
        timezone=zone,
        peer_group=f"team{u % 20}",
    )


def cycle_event(tag: str, i: int, users: int, at: datetime):
    """Event i of a stream cycling over `users` users (user i % users): an
    API call, every 10th a login, every 10th+5 a logout, every 97th a
    failed login, whatever the number of users."""
    from uba.domain.events import ActivityEvent, ActivityType

    u = i % users
    kind = common.mixed_kind(i)
    api = kind is ActivityType.API_CALL
    return ActivityEvent(
        event_id=f"{tag}-{i}",
        type=kind,
        occurred_at=at,
        session_id=f"s{u}" if kind is not ActivityType.LOGIN_FAILURE else "",
        api_method="GET" if api else "",
        api_path=f"/v1/items/{i % 100}" if api else "",
        status_code=200 if api else 0,
        bytes_transferred=1000 + i % 5000 if api else 0,
        **_user_fields(u),
    )


def rich_event(tag: str, i: int, at: datetime):
    """Event i of the memory stream: user i // RICH_STEPS logs in, is
    prompted twice for MFA (denies), calls the API from the laptop and from
    a phone (a second session), logs out after 30 minutes, and fails a
    login: every per-user structure their ordinary activity fills."""
    from uba.domain.events import ActivityEvent, ActivityType

    u, step = divmod(i, RICH_STEPS)
    fields = _user_fields(u)
    kind, session = (
        (ActivityType.LOGIN_SUCCESS, "a"),
        (ActivityType.MFA_CHALLENGE, "a"),
        (ActivityType.MFA_DENIED, "a"),
        (ActivityType.API_CALL, "a"),
        (ActivityType.API_CALL, "b"),
        (ActivityType.LOGOUT, "a"),
        (ActivityType.LOGIN_FAILURE, ""),
    )[step]
    if session == "b":
        fields["device_id"] = f"phone-{u}"
    api = kind is ActivityType.API_CALL
    return ActivityEvent(
        event_id=f"{tag}-{i}",
        type=kind,
        occurred_at=at,
        session_id=f"s{u}{session}" if session else "",
        api_method="GET" if api else "",
        api_path=f"/v1/reports/{u % 50}/rows" if api else "",
        status_code=200 if api else 0,
        bytes_transferred=20_000 if api else 0,
        session_duration=timedelta(minutes=30) if kind is ActivityType.LOGOUT else None,
        **fields,
    )


def build_stream(spec: dict) -> list:
    """The events [start, stop) of a stream spec (kind "users")."""
    t0 = datetime.fromisoformat(spec["t0"])
    step = timedelta(microseconds=spec["spacing_us"])
    if spec.get("rich"):
        return [
            rich_event(spec["tag"], i, t0 + step * i) for i in range(spec["start"], spec["stop"])
        ]
    return [
        cycle_event(spec["tag"], i, spec["users"], t0 + step * i)
        for i in range(spec["start"], spec["stop"])
    ]


# -- sending --------------------------------------------------------------------------------


def _send(ctx, address: str, key: str, spec: dict) -> dict:
    """Sends the events of `spec` in batches of 500 from two client
    processes, two batches in flight each; every event must be accepted."""
    loaders = ctx.workers.workers[:2]
    ctx.workers.all(
        "prepare_batches",
        [dict(share=i, shares=len(loaders)) for i in range(len(loaders))],
        loaders,
        address=address,
        key=key,
        spec=spec,
        batch_size=BATCH,
    )
    results = ctx.workers.all(
        "run_batches", workers=loaders, start_at=time.monotonic() + 0.05, concurrency=2
    )
    bad = [r for r in results if r["invalid"] or r["duplicate"]]
    if bad:
        raise RuntimeError(f"events refused: {bad[0]['first_invalid'] or 'duplicates'}")
    accepted = sum(r["accepted"] for r in results)
    seconds = max(r["end"] for r in results) - min(r["start"] for r in results)
    return {"events": accepted, "seconds": seconds, "per_s": accepted / seconds}


def _stream(ctx, address: str, key: str, spec: dict, after_chunk=None) -> list[dict]:
    """Sends the stream chunk by chunk (the client processes build a chunk
    while the server waits); after each chunk `after_chunk(point)` may add
    to the point."""
    points = []
    chunk = ctx.p.users_chunk
    for start in range(spec["start"], spec["stop"], chunk):
        stop = min(spec["stop"], start + chunk)
        point = _send(ctx, address, key, {**spec, "start": start, "stop": stop})
        point["sent"] = stop - spec["start"]
        if after_chunk is not None:
            after_chunk(point)
        points.append(point)
    return points


def _stream_spec(tag: str, users: int, events: int, t0: datetime, spacing_us: int) -> dict:
    return {
        "kind": "users",
        "tag": tag,
        "users": users,
        "start": 0,
        "stop": events,
        "t0": t0.isoformat(),
        "spacing_us": spacing_us,
    }


def _spacing_us(events: int) -> int:
    """Event spacing that fits the stream into the two hours before now."""
    return max(1, min(1000, int(2 * 3600e6 / max(events, 1))))


# -- part 1: one embedded process --------------------------------------------------------------


def embedded(ctx, tmp: Path, users: int, events: int, cached: int = 0) -> dict:
    """One embedded server (--cached-users `cached`, default when 0) fed the stream."""
    server = Server(
        f"users-{users}-{cached}",
        tmp / f"embedded-{users}-{cached}",
        extra_args=["--cached-users", str(cached)] if cached else [],
    ).start()
    t0 = datetime.now(UTC) - timedelta(hours=2, minutes=5)
    try:
        idle = server.memory_mb()["rss_mb"]

        def sample(point: dict) -> None:
            point["rss_mb"] = server.memory_mb()["rss_mb"]

        points = _stream(
            ctx,
            server.address,
            server.api_key,
            _stream_spec(f"e{users}", users, events, t0, _spacing_us(events)),
            sample,
        )
        memory = server.memory_mb()
    finally:
        server.stop()
    seconds = sum(p["seconds"] for p in points)
    return {
        "users": users,
        "events": events,
        "cached_users": cached or None,
        "per_s": events / seconds,
        "last_chunk_per_s": points[-1]["per_s"],
        "first_chunk_per_s": points[0]["per_s"],
        "rss_mb_idle": idle,
        "rss_mb": memory["rss_mb"],
        "peak_rss_mb": memory["peak_rss_mb"],
        "points": points,
    }


# -- part 2: one worker behind the event log ---------------------------------------------------


def _rss_mb(pid: int) -> tuple[float | None, float | None]:
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(("VmRSS:", "VmHWM:")):
                out[line.split(":")[0]] = int(line.split()[1]) / 1024
    except OSError:
        pass
    return out.get("VmRSS"), out.get("VmHWM")


def behind_the_log(ctx, tmp: Path, dbs: common.Databases, users: int, events: int) -> dict:
    from support.eventlog import NatsServer, WorkerProcess

    url, data_dir = dbs.new(f"log-{users}")
    nats = NatsServer(tmp / f"nats-{users}").start()
    front = worker = None
    t0 = datetime.now(UTC) - timedelta(hours=2, minutes=5)
    try:
        front = Server(
            f"front-{users}",
            data_dir / "front",
            url,
            extra_args=[
                "--event-log",
                nats.url,
                "--event-log-max-msgs",
                str(max(2 * events, 1_000_000)),
                "--event-log-max-bytes",
                str(8 << 30),
            ],
        ).start()
        points = _stream(
            ctx,
            front.address,
            front.api_key,
            _stream_spec(f"l{users}", users, events, t0, _spacing_us(events)),
        )
        published = sum(p["seconds"] for p in points)
        worker = WorkerProcess(data_dir / "worker", url, nats.url).start(timeout=120)
        started = time.monotonic()
        pid = worker.proc.pid
        samples = []
        deadline = started + 600 + events / 200
        stored = 0
        while stored < events:
            if worker.proc.poll() is not None:
                raise RuntimeError("the worker stopped:\n" + worker.log()[-3000:])
            if time.monotonic() > deadline:
                raise RuntimeError(f"the worker stored {stored} of {events} events in time")
            time.sleep(min(1.0, max(0.1, events / 100_000)))
            stored = common.count_events(url)
            rss, _ = _rss_mb(pid)
            samples.append(
                {"seconds": round(time.monotonic() - started, 2), "stored": stored, "rss_mb": rss}
            )
        drained = time.monotonic() - started
        rss, peak = _rss_mb(pid)
        front_rss, front_peak = _rss_mb(front.pid)
    finally:
        if worker is not None:
            try:
                worker.stop()
            except Exception:  # noqa: BLE001 - a stuck worker is killed
                worker.kill()
        if front is not None:
            front.stop()
        nats.stop()
    return {
        "users": users,
        "events": events,
        "published_per_s": events / published,
        "per_s": events / drained,
        "rss_mb": rss,
        "peak_rss_mb": peak,
        "front_rss_mb": front_rss,
        "front_peak_rss_mb": front_peak,
        "samples": samples,
    }


# -- part 3: memory per cached user ------------------------------------------------------------


def filled(ctx, tmp: Path, cached: int) -> dict:
    """RSS of a server with --cached-users `cached` fed 1.5 x that many users."""
    users = cached * 3 // 2
    events = users * RICH_STEPS
    server = Server(
        f"cached-{cached}", tmp / f"cached-{cached}", extra_args=["--cached-users", str(cached)]
    ).start()
    t0 = datetime.now(UTC) - timedelta(hours=2, minutes=5)
    try:
        idle = server.memory_mb()["rss_mb"]

        def sample(point: dict) -> None:
            point["users"] = point["sent"] // RICH_STEPS
            point["rss_mb"] = server.memory_mb()["rss_mb"]

        spec = _stream_spec(f"m{cached}", users, events, t0, _spacing_us(events))
        points = _stream(ctx, server.address, server.api_key, {**spec, "rich": True}, sample)
        time.sleep(1.0)
        memory = server.memory_mb()
    finally:
        server.stop()
    return {
        "cached_users": cached,
        "users": users,
        "events": events,
        "rss_mb_idle": idle,
        "rss_mb": memory["rss_mb"],
        "peak_rss_mb": memory["peak_rss_mb"],
        "per_s": events / sum(p["seconds"] for p in points),
        "points": points,
    }


def structure_costs(users: int) -> dict:
    """Bytes per user of each in-memory structure (tracemalloc), with every
    structure holding every user: the engine (enhanced when available) fed
    the memory stream, the rarer structures filled directly."""
    import gc
    import tracemalloc

    from uba.detectors.base import STATE_BOUNDS
    from uba.detectors.engine import DetectionEngine
    from uba.detectors.registry import default_registry
    from uba.domain.priors import PriorBaselines
    from uba.domain.shared_state import SharedState
    from uba.domain.user_baseline import UserBaseline

    registry = default_registry()
    config = {n: {"enabled": True} for n, e in registry.entries.items() if e.available}
    engine = DetectionEngine(registry, config, defaults=dict.fromkeys(STATE_BOUNDS, 10 * users))
    shared, prior = SharedState(), PriorBaselines()
    t0 = datetime.now(UTC) - timedelta(hours=1)
    gc.collect()
    tracemalloc.start()
    baselines: dict = {}
    for i in range(users * RICH_STEPS):
        event = rich_event("c", i, t0 + timedelta(milliseconds=i))
        baseline = baselines.get(event.user_id)
        if baseline is None:
            baseline = baselines[event.user_id] = UserBaseline(event.user_id)
        engine.process(event, baseline, prior, shared)
        if i % BATCH == BATCH - 1:
            engine.flush()
    engine.flush()
    # What only rarer activity fills: a burst's risk, a dormant account's
    # return, distribution-shift episodes (one per user; up to four).
    ts = t0.timestamp()
    for name, span, value in (
        ("session_risk", 7200.0, "5|1|network {net}, device laptop-{u}"),
        ("dormant_account", 28800.0, "1|2|30"),
        ("distribution_shift.episodes", 7 * 86400.0, "1"),
    ):
        for u in range(users):
            key = f"user{u}\thours" if name.endswith("episodes") else f"user{u}"
            shared.windows(name, span, 40 * users, 64).add(
                key, ts, value.format(net=f"10.{u & 255}.0.0/24", u=u)
            )
    # The detector windows are saved as one JSON document every 30 s.
    checkpoint = len(json.dumps(shared.to_dict(), separators=(",", ":")))
    gc.collect()
    costs: dict[str, dict] = {}
    before = tracemalloc.get_traced_memory()[0]
    del baselines
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    costs["baselines (the cache)"] = {"keys": users, "bytes_per_user": (before - after) / users}
    state = shared._windows  # noqa: SLF001 - measuring each structure by dropping it
    for name in sorted(state):
        keys = len(state[name])
        before = tracemalloc.get_traced_memory()[0]
        del state[name]
        for detector in engine.detectors:  # the record stores some detectors keep a handle on
            if hasattr(detector, "store_"):
                del detector.store_
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
        costs[name] = {"keys": keys, "bytes_per_user": (before - after) / users}
    tracemalloc.stop()
    per_user = {n: c for n, c in costs.items() if c["keys"] >= users // 2}
    return {
        "users": users,
        "structures": costs,
        "per_user_structures_bytes": sum(c["bytes_per_user"] for c in per_user.values()),
        "all_structures_bytes": sum(c["bytes_per_user"] for c in costs.values()),
        "checkpoint_bytes_per_user": checkpoint / users,
        "analytics": "enhanced"
        if any(d.family == "enhanced" for d in engine.detectors)
        else "basic",
    }


# -- the section ------------------------------------------------------------------------------


def users_section(ctx) -> None:
    p = ctx.p
    backends = getattr(ctx, "backends", ["sqlite", "postgresql"])
    log_possible = "postgresql" in backends and _log_available()
    with tempfile.TemporaryDirectory(prefix="uba-bench-users-") as tmp_name:
        tmp = Path(tmp_name)
        dbs = common.Databases("postgresql", tmp / "pg")
        try:
            rows = []
            for users, per_user in p.users_plan:
                row: dict = {"users": users, "events": users * per_user}
                print(f"  {users:,} users, {users * per_user:,} events", flush=True)
                if "sqlite" in backends:
                    row["embedded"] = embedded(ctx, tmp, users, users * per_user)
                    e = row["embedded"]
                    print(
                        f"    embedded: {e['per_s']:,.0f}/s (last chunk "
                        f"{e['last_chunk_per_s']:,.0f}/s), RSS {e['rss_mb']:.0f} MB "
                        f"(peak {e['peak_rss_mb']:.0f})",
                        flush=True,
                    )
                if log_possible:
                    row["log"] = behind_the_log(ctx, tmp, dbs, users, users * per_user)
                    g = row["log"]
                    print(
                        f"    log: published {g['published_per_s']:,.0f}/s, worker stored "
                        f"{g['per_s']:,.0f}/s, worker RSS {g['rss_mb']:.0f} MB (peak "
                        f"{g['peak_rss_mb']:.0f}), front end {g['front_rss_mb']:.0f} MB",
                        flush=True,
                    )
                rows.append(row)
            warm_users, warm_per_user, warm_cached = p.users_warm
            warm = [
                embedded(ctx, tmp, warm_users, warm_users * warm_per_user, cached)
                for cached in warm_cached
            ]
            for w in warm:
                print(
                    f"  {warm_users:,} users, --cached-users {w['cached_users']:,}: "
                    f"{w['per_s']:,.0f}/s, RSS {w['rss_mb']:.0f} MB",
                    flush=True,
                )
            memory = [filled(ctx, tmp, cached) for cached in p.users_cached]
            for m in memory:
                print(
                    f"  --cached-users {m['cached_users']:,}: {m['users']:,} users fed, RSS "
                    f"{m['rss_mb']:.0f} MB (idle {m['rss_mb_idle']:.0f})",
                    flush=True,
                )
            costs = structure_costs(p.users_structure_users)
        finally:
            dbs.drop_all()
    _report(ctx, rows, memory, costs, log_possible, warm)


def _log_available() -> str:
    from support.eventlog import NATS_SERVER

    try:
        import nats  # noqa: F401
    except ImportError:
        return ""
    return NATS_SERVER if Path(NATS_SERVER).exists() else ""


def _report(
    ctx, rows: list[dict], memory: list[dict], costs: dict, log_possible: bool, warm: list[dict]
) -> None:
    low, high = memory[0], memory[-1]
    slope_kb = (
        (high["rss_mb"] - low["rss_mb"]) * 1024 / (high["cached_users"] - low["cached_users"])
    )
    ctx.report.add(
        Figure(
            key="users_memory_per_cached_user",
            backend="any",
            value=slope_kb,
            unit="KB per cached user",
            target="stated",
            met=None,
            note=(
                f"RSS {low['rss_mb']:.0f} MB at --cached-users {low['cached_users']:,}, "
                f"{high['rss_mb']:.0f} MB at {high['cached_users']:,} (each fed 1.5 times as many "
                f"users, SQLite, {costs['analytics']}); the structures themselves "
                f"{costs['per_user_structures_bytes'] / 1024:.1f} KB per user filled by ordinary "
                f"activity, {costs['all_structures_bytes'] / 1024:.1f} KB with every structure "
                "holding the user (tracemalloc)"
            ),
            details={"servers": memory, "structures": costs},
        )
    )
    last = rows[-1]
    if "embedded" in last:
        ctx.report.add(
            _rate_figure(
                rows,
                "embedded",
                "users_rate_embedded",
                "sqlite",
                "{users:,} distinct users; RSS {rss:.0f} MB "
                "(at {first_users:,} users {first_rss:.0f} MB)",
            )
        )
    if not log_possible and "postgresql" in getattr(ctx, "backends", []):
        ctx.report.add(
            Figure(
                key="users_rate_log",
                backend="postgresql",
                value=None,
                unit="events/s",
                note="not measured: needs nats-server and nats-py (the eventlog extra)",
            )
        )
    if log_possible and "log" in last:
        ctx.report.add(
            _rate_figure(
                rows,
                "log",
                "users_rate_log",
                "postgresql",
                "one worker draining the log, {users:,} distinct users; worker RSS {rss:.0f} MB "
                "(at {first_users:,} users {first_rss:.0f} MB)",
            )
        )
    cold, hot = warm[0], warm[-1]
    ctx.report.add(
        Figure(
            key="users_warm_cache",
            backend="sqlite",
            value=hot["per_s"],
            unit="events/s",
            baseline=f"--cached-users {cold['cached_users']:,}, same run",
            baseline_value=cold["per_s"],
            ratio=hot["per_s"] / cold["per_s"],
            target="stated",
            met=None,
            note=(
                f"{hot['users']:,} users, {hot['events'] // hot['users']} events each, "
                f"--cached-users {hot['cached_users']:,}: RSS {hot['rss_mb']:.0f} MB (against "
                f"{cold['rss_mb']:.0f} MB)"
            ),
            details={"runs": warm},
        )
    )
    ctx.report.section("Users", "any").update(
        rows=rows,
        memory=memory,
        costs=costs,
        warm=warm,
        markdown=_markdown(rows, memory, costs, slope_kb, warm),
    )


def _mb(value) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _markdown(
    rows: list[dict], memory: list[dict], costs: dict, slope_kb: float, warm: list[dict]
) -> str:
    lines = [
        "Rate and memory against distinct users (batches of 500, 4 in flight, enhanced mode, "
        "default --cached-users). Embedded: one `uba serve` on SQLite. Log: one front end and "
        "one `uba worker` on PostgreSQL with their own nats-server; the worker drains what the "
        "front end published.",
        "",
        "| Users | Events | Embedded events/s (first, last chunk) | Embedded RSS MB (peak) "
        "| Log: published/s | Log: worker stored/s | Worker RSS MB (peak) | Front end RSS MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        e, g = r.get("embedded"), r.get("log")
        lines.append(
            f"| {r['users']:,} | {r['events']:,} | "
            + (
                f"{e['per_s']:,.0f} ({e['first_chunk_per_s']:,.0f}, {e['last_chunk_per_s']:,.0f})"
                f" | {_mb(e['rss_mb'])} ({_mb(e['peak_rss_mb'])})"
                if e
                else "- | -"
            )
            + " | "
            + (
                f"{g['published_per_s']:,.0f} | {g['per_s']:,.0f} | {_mb(g['rss_mb'])} "
                f"({_mb(g['peak_rss_mb'])}) | {_mb(g['front_rss_mb'])}"
                if g
                else "- | - | - | -"
            )
            + " |"
        )
    lines += [
        "",
        "The same embedded stream with users evicted (cold) and all cached (warm):",
        "",
        "| Users | Events | --cached-users | events/s | RSS MB at the end (peak) |",
        "|---|---|---|---|---|",
    ]
    for w in warm:
        lines.append(
            f"| {w['users']:,} | {w['events']:,} | {w['cached_users']:,} | {w['per_s']:,.0f} | "
            f"{_mb(w['rss_mb'])} ({_mb(w['peak_rss_mb'])}) |"
        )
    lines += [
        "",
        f"Memory per cached user: {slope_kb:.1f} KB (RSS slope between the two --cached-users "
        "values, each server fed 1.5 times as many users, each user a login, two MFA prompts, "
        "API calls in two sessions, a logout and a failed login).",
        "",
        "| --cached-users | Users fed | Events | RSS idle MB | RSS MB at the end (peak) "
        "| events/s |",
        "|---|---|---|---|---|---|",
    ]
    for m in memory:
        lines.append(
            f"| {m['cached_users']:,} | {m['users']:,} | {m['events']:,} | {_mb(m['rss_mb_idle'])} "
            f"| {_mb(m['rss_mb'])} ({_mb(m['peak_rss_mb'])}) | {m['per_s']:,.0f} |"
        )
    lines += [
        "",
        f"The detector windows' checkpoint (JSON, written every 30 s): "
        f"{costs['checkpoint_bytes_per_user']:,.0f} bytes per user.",
        "",
        f"Bytes per user of each structure ({costs['users']:,} users, tracemalloc, "
        f"{costs['analytics']} detectors; population structures shared by all users are listed "
        "divided by users too):",
        "",
        "| Structure | Keys | Bytes per user |",
        "|---|---|---|",
    ]
    for name, c in sorted(costs["structures"].items(), key=lambda kv: -kv[1]["bytes_per_user"]):
        lines.append(f"| {name} | {c['keys']:,} | {c['bytes_per_user']:,.0f} |")
    return "\n".join(lines)


def _rate_figure(rows: list[dict], kind: str, key: str, backend: str, note: str) -> Figure:
    """The rate at the most distinct users against the fewest, same run."""
    first, last = rows[0], rows[-1]
    r0, r1 = first[kind], last[kind]
    return Figure(
        key=key,
        backend=backend,
        value=r1["per_s"],
        unit="events/s",
        baseline=f"{first['users']:,} users, same run",
        baseline_value=r0["per_s"],
        ratio=r1["per_s"] / r0["per_s"],
        target="stated",
        met=None,
        note=note.format(
            users=last["users"],
            rss=r1["rss_mb"],
            first_users=first["users"],
            first_rss=r0["rss_mb"],
        ),
        details={"rows": [r[kind] for r in rows]},
    )


if __name__ == "__main__":
    import suite

    sys.exit(suite.main(sys.argv[1:], only={"users"}))
