"""Detection benchmarks: alert latency from the ingest acknowledgement to a
StreamAlerts subscriber; Isolation Forest scoring in the service's path
against scikit-learn's score_samples on the same rows; memory of mature
baselines; start-up time and RSS in basic and enhanced mode.

Standalone (just these sections):

    .venv/bin/python bench/detection.py [--smoke] [--backends sqlite,postgresql]
"""

from __future__ import annotations

import inspect
import json
import pickle
import random
import sys
import threading
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402 - after the sys.path set-up
from common import Server, median, pct_ms  # noqa: E402 - after the sys.path set-up
from report import Figure  # noqa: E402 - after the sys.path set-up

# -- alert latency ----------------------------------------------------------------------


def _bursts(
    server: Server, count: int, time_limit: float, tag: str, senders: int = 1
) -> list[float]:
    """Seconds from the acknowledgement of a failed-login burst (10 failures
    in a minute, a new user each time) to the subscriber holding the alert
    it raised; `senders` threads send bursts at once (more samples when
    each acknowledgement waits behind other ingest)."""
    import grpc

    from uba.v1 import events_pb2, service_pb2, service_pb2_grpc

    channel = grpc.insecure_channel(server.address)
    stub = service_pb2_grpc.BehaviorAnalyticsServiceStub(channel)
    arrived: dict[str, float] = {}
    lock = threading.Condition()
    started = threading.Event()
    call = stub.StreamAlerts(service_pb2.StreamAlertsRequest(), metadata=server.metadata)

    def read() -> None:
        try:
            for message in call:
                started.set()
                if message.HasField("alert"):
                    t = time.perf_counter()
                    with lock:
                        arrived.setdefault(message.alert.user_id, t)
                        lock.notify_all()
        except grpc.RpcError:
            pass

    threading.Thread(target=read, daemon=True).start()
    started.wait(10)
    latencies = []
    deadline = time.monotonic() + time_limit
    numbers = iter(range(count))

    def send() -> None:
        for n in numbers:
            if time.monotonic() > deadline:
                return
            user = f"{tag}-{n}"
            now = datetime.now(UTC)
            request = service_pb2.RecordActivitiesRequest()
            for i in range(10):
                m = request.events.add(
                    user_id=user,
                    type=events_pb2.ACTIVITY_TYPE_LOGIN_FAILURE,
                    source_ip="203.0.113.4",
                )
                m.occurred_at.FromDatetime(now - timedelta(seconds=60 - i))
            stub.RecordActivities(request, metadata=server.metadata, timeout=120)
            acked = time.perf_counter()
            with lock:
                lock.wait_for(lambda user=user: user in arrived, timeout=10)
                if user in arrived:
                    latencies.append(arrived[user] - acked)

    threads = [threading.Thread(target=send) for _ in range(senders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    call.cancel()
    channel.close()
    return latencies


def alert_latency_section(ctx, services) -> None:
    p = ctx.p
    server = services["enhanced"]
    idle = _bursts(server, p.alert_bursts, 120, f"lat-idle-{time.monotonic_ns()}")
    loaders = ctx.workers.workers[: p.load_workers]
    settle = min(1.0, p.load_seconds / 2)
    until = time.monotonic() + p.load_seconds + settle
    for i, w in enumerate(loaders):
        w.submit(
            "background_batches",
            address=server.address,
            key=server.api_key,
            until=until,
            tag=f"bg{i}-{time.monotonic_ns()}",
            concurrency=2,
        )
    time.sleep(settle)
    loaded = _bursts(
        server, p.alert_bursts, p.load_seconds, f"lat-load-{time.monotonic_ns()}", senders=4
    )
    background = [w.collect() for w in loaders]
    for key, lat, extra in (
        ("alert_latency_idle", idle, {}),
        (
            "alert_latency_under_load",
            loaded,
            {
                "background_events": sum(b["events"] for b in background),
                "background": f"{len(loaders)} client processes, 2 batches of 1000 in flight each",
                "senders": 4,
            },
        ),
    ):
        p50, p99 = pct_ms(lat, 50), pct_ms(lat, 99)
        ctx.report.add(
            Figure(
                key=key,
                backend=ctx.backend,
                value=p99,
                unit="ms p99",
                target="p99 < 50 ms",
                met=None if p99 is None else p99 < 50,
                note="no alert arrived"
                if p99 is None
                else f"p50 {p50:.1f} ms, max {max(lat) * 1000:.1f} ms, {len(lat)} alerts",
                details={
                    "p50_ms": p50,
                    "p99_ms": p99,
                    "alerts": len(lat),
                    "latencies_ms": [x * 1000 for x in lat],
                    "server": "default configuration (enhanced)",
                    **extra,
                },
            )
        )


# -- Isolation Forest scoring -------------------------------------------------------------


def isolation_forest_section(ctx) -> None:
    """The detector as the ingest writer drives it (deferred: score_one
    computes each event's features and buffers the row, flush scores the
    group in one batch through the fitted trees, finding what score_samples
    would flag, and explains it), against score_samples alone on the same
    rows in the same groups."""
    import numpy as np

    from uba.detectors.base import DetectionContext
    from uba.detectors.features import event_features, observe
    from uba.detectors.forest_training import replay_rows
    from uba.detectors.isolation_forest import IsolationForestDetector
    from uba.domain.shared_state import SharedState
    from uba.domain.user_baseline import UserBaseline

    p = ctx.p
    history = common.persona_history(p.if_users)
    rows, facts = replay_rows(history)
    detector = IsolationForestDetector(defer=True)
    detector.fit(rows, facts=facts)
    estimator = detector.model_.estimator
    baselines: dict[str, UserBaseline] = {}
    shared = SharedState()
    for e in history:
        b = baselines.get(e.user_id) or baselines.setdefault(e.user_id, UserBaseline(e.user_id))
        clock = b.clock(e)
        b.learn(e, clock)
        observe(e, shared, clock)
    snapshot = pickle.dumps((baselines, shared))
    events = common.persona_block(
        p.if_users, 0, p.if_events, "if", days_per_block=common.block_days(p.if_users, p.if_events)
    )
    group = 1000

    def dry_rows() -> tuple[list[list[list[float]]], float]:
        """The feature rows of the events, per group (what the service scores)."""
        bl, sh = pickle.loads(snapshot)
        groups, features_s = [], 0.0
        for start in range(0, len(events), group):
            rows_g = []
            for e in events[start : start + group]:
                b = bl[e.user_id]
                clock = b.clock(e)
                if b.mature:
                    t0 = time.perf_counter()
                    rows_g.append(event_features(e, b, sh, clock))
                    features_s += time.perf_counter() - t0
                b.learn(e, clock)
                observe(e, sh, clock)
            groups.append(rows_g)
        return groups, features_s

    groups, features_s = dry_rows()
    n_rows = sum(len(g) for g in groups)
    arrays = [np.asarray(g, dtype=np.float32) for g in groups if g]

    def sklearn_run() -> dict:
        t0 = time.perf_counter()
        for a in arrays:
            estimator.score_samples(a)
        s = time.perf_counter() - t0
        return {"per_s": n_rows / s, "seconds": s}

    def service_run() -> dict:
        bl, sh = pickle.loads(snapshot)
        detector.pending_, detector.ready_ = [], []
        spent = 0.0
        found = 0
        for start in range(0, len(events), group):
            for e in events[start : start + group]:
                b = bl[e.user_id]
                clock = b.clock(e)
                c = DetectionContext(b, None, "no prior", sh, clock)
                t0 = time.perf_counter()
                detector.score_one(e, c)
                spent += time.perf_counter() - t0
                b.learn(e, clock)
                t0 = time.perf_counter()
                detector.learn_one(e, c)
                spent += time.perf_counter() - t0
            t0 = time.perf_counter()
            found += len(detector.flush())
            spent += time.perf_counter() - t0
        return {"per_s": n_rows / spent, "seconds": spent, "flagged": found}

    runs_b, runs_s, ratios = [sklearn_run()], [], []
    for _ in range(p.repeats):
        s = service_run()
        b = sklearn_run()
        ratios.append(s["per_s"] / ((runs_b[-1]["per_s"] + b["per_s"]) / 2))
        runs_s.append(s)
        runs_b.append(b)
    ratio = median(ratios)
    sk = median(x["per_s"] for x in runs_b)
    service_s = median(x["seconds"] for x in runs_s)
    without_features = n_rows / max(service_s - features_s, 1e-9)
    ctx.report.add(
        Figure(
            key="isolation_forest_scoring",
            backend="any",
            value=median(x["per_s"] for x in runs_s),
            unit="rows/s",
            baseline="scikit-learn score_samples on the same rows, same groups of 1000",
            baseline_value=sk,
            ratio=ratio,
            target="ratio >= 0.8",
            met=ratio >= 0.8,
            note=f"of which feature computation {features_s / service_s:.0%}; without it "
            f"{without_features:,.0f} rows/s = {without_features / sk:.2f}x",
            details={
                "rows": n_rows,
                "events": len(events),
                "group": group,
                "service_runs": runs_s,
                "sklearn_runs": runs_b,
                "ratios": ratios,
                "features_seconds": features_s,
                "rows_per_s_without_features": without_features,
                "ratio_without_features": without_features / sk,
                "training_rows": len(rows),
                "users": p.if_users,
                "what": (
                    "IsolationForestDetector(defer=True): score_one (features + buffer) and "
                    "learn_one per event, flush (the group in one batch through the fitted trees, "
                    "the rows that score_samples would flag with its scores, and their "
                    "explanations) per group, as the ingest writer calls them; in the suite's "
                    "process, so only the detector is timed"
                ),
            },
        )
    )


# Detectors of the user signals (sessions, novelty, peers, time), measured
# one by one in the engine cost table.
USER_SIGNAL_DETECTORS = (
    "login_time",
    "new_ip",
    "new_device",
    "new_country",
    "api_new_endpoint",
    "session_duration",
    "session_hijack",
    "session_risk",
    "dormant_account",
)


def engine_cost_section(ctx) -> None:
    """Microseconds per event of the detection engine in-process (scoring
    and learning, no storage), per detector configuration, on the same
    events of personas with mature baselines: where the detection share of
    ingest goes."""
    from uba.detectors.engine import DetectionEngine
    from uba.detectors.forest_training import replay_rows
    from uba.detectors.registry import BUILTIN_DETECTORS, ENHANCED_DETECTORS, default_registry
    from uba.domain.priors import PriorBaselines
    from uba.domain.shared_state import SharedState
    from uba.domain.user_baseline import UserBaseline

    p = ctx.p
    history = common.persona_history(p.if_users)
    rows, facts = replay_rows(history)
    registry = default_registry()
    everything = list(BUILTIN_DETECTORS) + list(ENHANCED_DETECTORS)

    def config(enabled: set[str]) -> dict:
        c = {n: {"enabled": n in enabled} for n in everything}
        if "isolation_forest" in enabled:
            c["isolation_forest"]["defer"] = True
        return c

    baselines: dict[str, UserBaseline] = {}
    shared, prior = SharedState(), PriorBaselines()
    learner = DetectionEngine(registry, config(set()))
    for e in history:
        b = baselines.get(e.user_id) or baselines.setdefault(e.user_id, UserBaseline(e.user_id))
        learner.process(e, b, prior, shared)
    snapshot = pickle.dumps((baselines, shared, prior))
    events = common.persona_block(
        p.if_users,
        0,
        p.if_events,
        "cost",
        days_per_block=common.block_days(p.if_users, p.if_events),
    )
    # Detectors of signals beyond one user's hour (population waves, MFA
    # prompts, days of volume), each alone and the basic set without them.
    population = {"credential_stuffing", "mfa_fatigue", "sustained_volume"} & set(BUILTIN_DETECTORS)
    configs = {
        "learning only (no detector)": set(),
        "basic detectors": set(BUILTIN_DETECTORS),
        "basic detectors without " + ", ".join(sorted(population)): set(BUILTIN_DETECTORS)
        - population,
        **{f"{name} only": {name} for name in sorted(population)},
        "distribution_shift only": {"distribution_shift"},
        "isolation_forest only": {"isolation_forest"},
        "enhanced (all)": set(everything),
    }
    # One row per user-signal detector: its own cost over learning only.
    for name in USER_SIGNAL_DETECTORS:
        configs[f"{name} only"] = {name}
    engines = {}
    for name, enabled in configs.items():
        engine = DetectionEngine(registry, config(enabled))
        for d in engine.detectors:
            if d.name == "isolation_forest":
                d.fit(rows, facts=facts)
        engines[name] = engine
    runs: dict[str, list[float]] = {name: [] for name in configs}
    for _ in range(max(1, p.repeats)):
        for name, engine in engines.items():
            bl, sh, pr = pickle.loads(snapshot)
            t0 = time.perf_counter()
            for start in range(0, len(events), 1000):
                for e in events[start : start + 1000]:
                    engine.process(e, bl[e.user_id], pr, sh)
                engine.flush()
            runs[name].append((time.perf_counter() - t0) / len(events) * 1e6)
    us = {name: median(v) for name, v in runs.items()}
    section = ctx.report.section("Detection cost per event (in-process)")
    section["us_per_event"] = us
    section["runs"] = runs
    base = us["learning only (no detector)"]
    lines = [
        f"The detection engine alone (score, then learn; no storage, no RPC) over {len(events):,} "
        f"events of {p.if_users} personas with mature baselines, groups of 1000, median of "
        f"{max(1, p.repeats)}:",
        "",
        "| configuration | us per event | over learning only |",
        "|---|---|---|",
    ]
    for name, v in us.items():
        lines.append(f"| {name} | {v:.1f} | {v - base:+.1f} |")
    section["markdown"] = "\n".join(lines)
    print("  engine us/event: " + ", ".join(f"{k} {v:.1f}" for k, v in us.items()), flush=True)


# -- baselines in memory ------------------------------------------------------------------


def baseline_memory_section(ctx) -> None:
    """tracemalloc of N mature baselines (six weeks of routine), scaled to
    100,000 users; the server keeps at most --cached-users of them (with
    the rest of each user's state: bench/users.py, docs/scaling.md)."""
    from uba.domain.analysis import Analyzer
    from uba.domain.user_baseline import UserBaseline
    from uba.testing.synthetic import Persona

    users = ctx.p.baseline_users
    template = Persona().history(random.Random(3))
    tracemalloc.start()
    baselines = []
    for i in range(users):
        b = UserBaseline(f"user{i}")
        for e in template:
            b.learn(e)
        baselines.append(b)
    current, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    per = current / users
    json_bytes = sum(
        len(json.dumps(b.to_dict(), separators=(",", ":"))) for b in baselines[:200]
    ) / min(200, users)
    cache = inspect.signature(Analyzer.__init__).parameters["cache_size"].default
    ctx.report.add(
        Figure(
            key="baseline_memory",
            backend="any",
            value=per * 100_000 / 1e6,
            unit="MB per 100k users",
            target="stated and bounded",
            met=None,
            note=(
                f"{per / 1024:.1f} KB per baseline in memory, {json_bytes / 1024:.2f} KB as stored "
                f"JSON; a server caches at most --cached-users ({cache:,} by default) baselines = "
                f"{per * cache / 1e6:,.0f} MB, beside the detectors' state of the same users "
                "(memory per cached user: docs/scaling.md)"
            ),
            details={
                "users_measured": users,
                "bytes_per_baseline": per,
                "json_bytes_per_baseline": json_bytes,
                "mb_per_100k_stored_json": json_bytes * 100_000 / 1e6,
                "analyzer_cache_size": cache,
                "cache_bound_mb": per * cache / 1e6,
                "events_learned_per_baseline": len(template),
            },
        )
    )


def baseline_stored_section(ctx, services) -> None:
    """Bytes per stored baseline in the basic server's database (mature
    personas, after the batch runs)."""
    url, data_dir = services.urls["basic"]
    if ctx.backend == "postgresql":
        import psycopg2

        conn = psycopg2.connect(common.pg_dsn(url))
        with conn.cursor() as cur:
            cur.execute(
                "SELECT count(*), coalesce(sum(octet_length(data)), 0), "
                "pg_total_relation_size('baselines') FROM baselines"
            )
            count, data_bytes, table_bytes = cur.fetchone()
        conn.close()
    else:
        import sqlite3

        conn = sqlite3.connect(f"file:{data_dir}/uba.db?mode=ro", uri=True)
        count, data_bytes = conn.execute(
            "SELECT count(*), coalesce(sum(length(data)), 0) FROM baselines"
        ).fetchone()
        table_bytes = None
        try:
            table_bytes = conn.execute(
                "SELECT sum(pgsize) FROM dbstat WHERE name IN "
                "('baselines', 'sqlite_autoindex_baselines_1')"
            ).fetchone()[0]
        except sqlite3.Error:
            pass
        conn.close()
    per = data_bytes / count if count else None
    ctx.report.add(
        Figure(
            key="baseline_stored",
            backend=ctx.backend,
            value=None if per is None else per / 1024,
            unit="KB per baseline",
            target="stated",
            met=None,
            note=""
            if per is None
            else f"{per * 100_000 / 1e6:,.0f} MB per 100k users as JSON"
            + (
                ""
                if not table_bytes
                else f"; table with index {table_bytes / count / 1024:.1f} KB per row"
            ),
            details={"baselines": count, "data_bytes": data_bytes, "table_bytes": table_bytes},
        )
    )


# -- start-up -------------------------------------------------------------------------------


def startup_section(ctx) -> None:
    """First start (creates the schema) and restarts on the existing
    database; RSS when it starts listening. Basic mode: the enhanced
    detectors configured off (numpy, SciPy and scikit-learn are then never
    imported); enhanced: the default configuration with them installed."""
    p = ctx.p
    for mode, detectors in (("basic", common.ENHANCED_OFF), ("enhanced", None)):
        url, data_dir = ctx.dbs.new(f"startup-{mode}")
        first = Server(f"startup-{mode}", data_dir, url, detectors=detectors).start()
        first_run = {"seconds": first.startup_s, **first.memory_mb()}
        first.stop()
        restarts = [] if p.startup_repeats else [dict(first_run, line="")]
        for _ in range(p.startup_repeats):
            s = Server(f"startup-{mode}", data_dir, url, detectors=detectors).start()
            time.sleep(0.2)
            restarts.append(
                {
                    "seconds": s.startup_s,
                    **s.memory_mb(),
                    "line": next((line.strip() for line in s.output if "listening" in line), ""),
                }
            )
            s.stop()
        seconds = median(r["seconds"] for r in restarts)
        rss = median(r["rss_mb"] for r in restarts)
        ctx.report.add(
            Figure(
                key=f"startup_{mode}",
                backend=ctx.backend,
                value=seconds,
                unit="s to listening",
                target="stated",
                met=None,
                note=(
                    f"RSS {rss:.0f} MB at start; first start on an empty database "
                    f"{first_run['seconds']:.2f} s"
                ),
                details={"first_start": first_run, "restarts": restarts, "rss_mb": rss},
            )
        )


if __name__ == "__main__":
    import suite

    sys.exit(suite.main(sys.argv[1:], only={"alerts", "isolation_forest", "memory", "startup"}))
