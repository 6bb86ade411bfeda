"""Growth: how ingest rate, ListLogs page latency, GetDashboard latency and
database size change as the store grows (by default 10,000 to 1,000,000
events; `--max-events 10000000` goes on to ten million).

The store is filled through the API (batch ingest, detection off, two
client processes) with a mixed stream: API calls, logins, logouts and
failed logins of 5000 users, all within the dashboard's default 24-hour
window (the worst case for the dashboard: every stored event is in the
window it counts). At each size: the fill rate of the last segment,
ListLogs first pages (unfiltered and filtered by user, type, source
address), ListIncidents first pages (unfiltered and filtered by user,
status OPEN, min_severity HIGH, tactic TA0006), GetDashboard, and the size
on disk. With detection off no incident arises, so after each segment the
suite stores one incident per 100 new events beside them (bench/incident_fill.py:
real Incident objects with their member rows, written through the storage
layer; its docstring says how they are spread). At the largest size the
suite times every SQL statement a dashboard and a list call issue (the
same repository code, in the suite's process) and shows the query plans.

Standalone (just this section):

    .venv/bin/python bench/growth.py [--smoke] [--max-events N] [--backends sqlite,postgresql]
"""

from __future__ import annotations

import math
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402 - after the sys.path set-up
import incident_fill  # noqa: E402 - after the sys.path set-up
import loadgen  # noqa: E402 - after the sys.path set-up
from common import Server, median  # noqa: E402 - after the sys.path set-up
from report import Figure  # noqa: E402 - after the sys.path set-up

WINDOW = timedelta(hours=23)
LIST_VARIANTS = ("none", "user", "type", "source_ip")
INCIDENT_VARIANTS = ("none", "user", "open", "high", "tactic")
USERS = 5000
# The figure: every ListIncidents first page under 10 ms at 1M events.
INCIDENTS_TARGET_MS = 10.0
INCIDENTS_TARGET_EVENTS = 1_000_000


def _list_request(variant: str):
    from uba.v1 import events_pb2, service_pb2

    r = service_pb2.ListLogsRequest(page_size=100)
    if variant == "user":
        r.user_id = "user17"
    elif variant == "type":
        r.type = events_pb2.ACTIVITY_TYPE_LOGIN_FAILURE
    elif variant == "source_ip":
        r.source_ip = "10.17.17.7"
    return r


def _incidents_request(variant: str):
    from uba.v1 import anomalies_pb2, incidents_pb2, service_pb2

    r = service_pb2.ListIncidentsRequest(page_size=50)
    if variant == "user":
        r.user_id = "user17"
    elif variant == "open":
        r.status = incidents_pb2.INCIDENT_STATUS_OPEN
    elif variant == "high":
        r.min_severity = anomalies_pb2.SEVERITY_HIGH
    elif variant == "tactic":
        r.tactic = "TA0006"
    return r


def _timed(fn, n: int) -> float:
    """Median milliseconds of n calls after one warm-up call."""
    fn()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return median(times)


def _timed_round_robin(calls: dict, n: int) -> dict:
    """Median milliseconds of n calls of each, after one warm-up call each;
    the calls take turns, so a burst of load elsewhere on the machine
    touches every one of them a little rather than one of them wholly."""
    for fn in calls.values():
        fn()
    times: dict = {name: [] for name in calls}
    for _ in range(n):
        for name, fn in calls.items():
            t0 = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - t0) * 1000)
    return {name: median(values) for name, values in times.items()}


def _analyze(url: str) -> None:
    """ANALYZE (every table: events and the rollups), as autovacuum would soon after a load: the
    fill is faster than autovacuum's schedule, and stale statistics (a
    million rows estimated as a hundred) would time the planner's guess
    instead of the steady state."""
    if not url:
        return
    import psycopg2

    conn = psycopg2.connect(common.pg_dsn(url))
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("ANALYZE")
    conn.close()


def _measure(server: Server, url: str, data_dir: Path, p) -> dict:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from uba.v1 import service_pb2, service_pb2_grpc

    _analyze(url)

    md = server.metadata
    with grpc.insecure_channel(
        server.address, options=[("grpc.max_receive_message_length", 64 << 20)]
    ) as ch:
        stub = service_pb2_grpc.BehaviorAnalyticsServiceStub(ch)
        list_ms = {}
        for variant in LIST_VARIANTS:
            request = _list_request(variant)
            list_ms[variant] = _timed(
                lambda request=request: stub.ListLogs(request, metadata=md, timeout=600),
                p.growth_calls,
            )
        requests = {v: _incidents_request(v) for v in INCIDENT_VARIANTS}
        # The no-op (grpc.health.v1 Check) takes its turn too: what a call
        # costs on this machine at that moment, without any work.
        health = health_pb2_grpc.HealthStub(ch)
        check = health_pb2.HealthCheckRequest(service="uba.v1.BehaviorAnalyticsService")
        incidents_ms = _timed_round_robin(
            {
                "noop": lambda: health.Check(check, metadata=md, timeout=600),
                **{
                    v: lambda r=r: stub.ListIncidents(r, metadata=md, timeout=600)
                    for v, r in requests.items()
                },
            },
            p.growth_incident_calls,
        )
        noop_ms = incidents_ms.pop("noop")
        incidents_found = {
            v: len(stub.ListIncidents(r, metadata=md, timeout=600).incidents)
            for v, r in requests.items()
        }
        dash = service_pb2.GetDashboardRequest()
        dashboard_ms = _timed(
            lambda: stub.GetDashboard(dash, metadata=md, timeout=600), p.growth_dash_calls
        )
        total = stub.GetDashboard(dash, metadata=md, timeout=600).totals.event_count
    size = common.database_size_bytes(url, data_dir)
    return {
        "list_ms": list_ms,
        "incidents_ms": incidents_ms,
        "incidents_on_first_page": incidents_found,
        "noop_ms": noop_ms,
        "load_average": os.getloadavg()[0],
        "dashboard_ms": dashboard_ms,
        "db_bytes": size["measure"],
        "db": size,
        "dashboard_event_count": total,
    }


def _fill(ctx, server: Server, start: int, stop: int, t0: datetime, spacing_us: int) -> dict:
    """Stores events [start, stop) of the stream; returns events/s while
    sending (generation in the client processes is not timed)."""
    loaders = ctx.workers.workers[:2]
    sent = 0
    seconds = 0.0
    for chunk_start in range(start, stop, ctx.p.growth_chunk):
        chunk_stop = min(stop, chunk_start + ctx.p.growth_chunk)
        spec = loadgen.api_spec("g", chunk_start, chunk_stop, USERS, t0, spacing_us)
        ctx.workers.all(
            "prepare_batches",
            [dict(share=i, shares=len(loaders)) for i in range(len(loaders))],
            loaders,
            address=server.address,
            key=server.api_key,
            spec=spec,
        )
        results = ctx.workers.all(
            "run_batches", workers=loaders, start_at=time.monotonic() + 0.05, concurrency=2
        )
        bad = [r for r in results if r["invalid"] or r["duplicate"]]
        if bad:
            raise RuntimeError(f"growth fill refused events: {bad[0]['first_invalid']}")
        sent += sum(r["accepted"] for r in results)
        seconds += max(r["end"] for r in results) - min(r["start"] for r in results)
    return {"events": sent, "seconds": seconds, "per_s": sent / seconds if seconds else None}


def _statements(url: str, data_dir: Path, backend: str) -> dict:
    """Every SQL statement a dashboard call and the list calls issue, timed
    (median of 3, executed and fetched with the driver) with its plan."""
    from sqlalchemy import event

    from uba.domain.anomalies import Severity
    from uba.domain.dashboard import DashboardService
    from uba.domain.events import ActivityType, EventFilter
    from uba.domain.incidents import IncidentStatus
    from uba.domain.ingest import utcnow
    from uba.domain.logs import LogService
    from uba.domain.risk import RiskPolicy
    from uba.storage.database import Database
    from uba.storage.store import Store

    database = Database(common.Databases.url_of(url, data_dir), pool_size=2)
    captured: list[tuple[str, object]] = []

    def capture(conn, cursor, statement, parameters, context, executemany):
        captured.append((statement, parameters))

    event.listen(database.engine, "before_cursor_execute", capture)
    store = Store(database)
    calls = {
        "GetDashboard": lambda: DashboardService(store, utcnow, RiskPolicy()).get(None),
        "ListLogs (no filter)": lambda: LogService(store).list(EventFilter(), 100, ""),
        "ListLogs (user)": lambda: LogService(store).list(EventFilter(user_id="user17"), 100, ""),
        "ListLogs (type)": lambda: LogService(store).list(
            EventFilter(type=ActivityType.LOGIN_FAILURE), 100, ""
        ),
        "ListLogs (source_ip)": lambda: LogService(store).list(
            EventFilter(source_ip="10.17.17.7"), 100, ""
        ),
        # What IncidentService.list asks for a first page of 50.
        "ListIncidents (no filter)": lambda: store.page_incidents(51, None),
        "ListIncidents (user)": lambda: store.page_incidents(51, None, user_id="user17"),
        "ListIncidents (status OPEN)": lambda: store.page_incidents(
            51, None, status=IncidentStatus.OPEN
        ),
        "ListIncidents (min_severity HIGH)": lambda: store.page_incidents(
            51, None, min_severity=int(Severity.HIGH)
        ),
        "ListIncidents (tactic)": lambda: store.page_incidents(51, None, tactic="TA0006"),
    }
    out = {}
    try:
        for name, fn in calls.items():
            captured.clear()
            fn()
            statements = [(s, p) for s, p in captured if s.lstrip().upper().startswith("SELECT")]
            out[name] = [_explain(database, backend, s, p) for s, p in statements]
    finally:
        database.dispose()
    return out


def _statements_now(url: str, data_dir: Path, backend: str) -> dict:
    """`_statements` in a fresh process: the repository code the server
    runs now, even if it changed since the suite started."""
    import json
    import subprocess

    code = (
        "import json, sys; sys.path.insert(0, 'bench'); import growth; "
        f"print(json.dumps(growth._statements({url!r}, growth.Path({str(data_dir)!r}), "
        f"{backend!r})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=common.ROOT, capture_output=True, text=True, timeout=1800
    )
    if out.returncode != 0:
        raise RuntimeError(f"statement analysis failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _explain(database, backend: str, statement: str, params) -> dict:
    raw = database.engine.raw_connection()
    try:
        cur = raw.cursor()
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            cur.execute(statement, params)
            cur.fetchall()
            times.append((time.perf_counter() - t0) * 1000)
        if backend == "postgresql":
            cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, params)
            plan = "\n".join(r[0] for r in cur.fetchall())
        else:
            cur.execute("EXPLAIN QUERY PLAN " + statement, params)
            plan = "\n".join(str(r[-1]) for r in cur.fetchall())
        raw.rollback()
    finally:
        raw.close()
    return {
        "sql": " ".join(statement.split()),
        "params": repr(params),
        "ms": median(times),
        "plan": plan,
    }


def _slope(points: list[dict], field: str, sub: str | None = None) -> float | None:
    """Exponent k of value ~ events^k, least squares in log-log."""
    xs, ys = [], []
    for pt in points:
        v = pt.get(field)
        if sub is not None and isinstance(v, dict):
            v = v.get(sub)
        if v:
            xs.append(math.log(pt["events"]))
            ys.append(math.log(v))
    if len(xs) < 2:
        return None
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else None


def growth_section(ctx) -> None:
    p = ctx.p
    sizes = p.growth_sizes
    url, data_dir = ctx.dbs.new("growth")
    server = Server("growth", data_dir, url, extra_args=["--disable-detection"]).start()
    t0 = datetime.now(UTC) - WINDOW
    spacing_us = max(1, int(WINDOW / timedelta(microseconds=1) / sizes[-1]))
    points = []
    stored = 0
    started = time.monotonic()
    try:
        for size in sizes:
            fill = _fill(ctx, server, stored, size, t0, spacing_us)
            incidents = incident_fill.store_incidents(
                common.Databases.url_of(url, data_dir),
                incident_fill.incidents_for_events(stored),
                incident_fill.incidents_for_events(size),
                USERS,
                t0,
                spacing_us,
            )
            stored = size
            point = {
                "events": size,
                "incidents": incident_fill.incidents_for_events(size),
                "ingest_events_per_s": fill["per_s"],
                "fill": fill,
                "incident_fill": incidents,
                **_measure(server, url, data_dir, p),
            }
            points.append(point)
            print(
                f"    {size:>10,} events: fill {fill['per_s'] or 0:,.0f}/s, list "
                + ", ".join(f"{k} {v:.1f}" for k, v in point["list_ms"].items())
                + " ms; incidents "
                + ", ".join(f"{k} {v:.1f}" for k, v in point["incidents_ms"].items())
                + f" ms (no-op {point['noop_ms']:.1f}), dashboard {point['dashboard_ms']:.1f} ms, "
                f"{point['db_bytes'] / size:,.0f} bytes/event",
                flush=True,
            )
        statements = _statements_now(url, data_dir, ctx.backend)
    finally:
        server.stop()
    first, last = points[0], points[-1]
    section = ctx.report.section("Growth", ctx.backend)
    section["points"] = points
    section["statements_at_largest"] = statements
    section["seconds"] = time.monotonic() - started
    slopes = {
        "ingest": _slope(points, "ingest_events_per_s"),
        "dashboard": _slope(points, "dashboard_ms"),
        "db_bytes": _slope(points, "db_bytes"),
        **{f"list_{v}": _slope(points, "list_ms", v) for v in LIST_VARIANTS},
        **{f"incidents_{v}": _slope(points, "incidents_ms", v) for v in INCIDENT_VARIANTS},
    }
    section["slopes"] = slopes
    sizes_text = ", ".join(f"{s:,}" for s in sizes)

    def k(name):
        return "n/a" if slopes[name] is None else f"{slopes[name]:.2f}"

    ctx.report.add(
        Figure(
            key="growth_ingest",
            backend=ctx.backend,
            value=last["ingest_events_per_s"],
            unit="events/s",
            baseline=f"the same fill at {first['events']:,} events",
            baseline_value=first["ingest_events_per_s"],
            ratio=(last["ingest_events_per_s"] / first["ingest_events_per_s"])
            if first["ingest_events_per_s"]
            else None,
            target="stated (curve)",
            met=None,
            note=f"at {last['events']:,} events; rate ~ N^{k('ingest')}",
            details={"sizes": sizes, "slope": slopes["ingest"]},
        )
    )
    worst = max(LIST_VARIANTS, key=lambda v: last["list_ms"][v])
    ctx.report.add(
        Figure(
            key="growth_list_logs",
            backend=ctx.backend,
            value=last["list_ms"]["none"],
            unit="ms",
            baseline=f"at {first['events']:,} events",
            baseline_value=first["list_ms"]["none"],
            ratio=last["list_ms"]["none"] / first["list_ms"]["none"],
            target="stated (curve)",
            met=None,
            note=(
                f"unfiltered ~ N^{k('list_none')}; slowest filter '{worst}' "
                f"{last['list_ms'][worst]:.1f} ms (~ N^{k('list_' + worst)})"
            ),
            details={
                "list_ms_at_largest": last["list_ms"],
                "slopes": {v: slopes[f"list_{v}"] for v in LIST_VARIANTS},
            },
        )
    )
    slowest = max(INCIDENT_VARIANTS, key=lambda v: last["incidents_ms"][v])
    slowest_ms = last["incidents_ms"][slowest]
    ctx.report.add(
        Figure(
            key="growth_list_incidents",
            backend=ctx.backend,
            value=slowest_ms,
            unit="ms",
            baseline=f"at {first['events']:,} events",
            baseline_value=first["incidents_ms"][slowest],
            ratio=slowest_ms / first["incidents_ms"][slowest],
            target=f"< {INCIDENTS_TARGET_MS:g} ms at {INCIDENTS_TARGET_EVENTS:,} events",
            met=slowest_ms < INCIDENTS_TARGET_MS
            if last["events"] >= INCIDENTS_TARGET_EVENTS
            else None,
            note=(
                f"slowest filter '{slowest}' at {last['events']:,} events and "
                f"{last['incidents']:,} incidents (~ N^{k('incidents_' + slowest)}); "
                + ", ".join(f"{v} {last['incidents_ms'][v]:.1f}" for v in INCIDENT_VARIANTS)
                + f" ms; a no-op call (health Check) taking turns: {last['noop_ms']:.1f} ms"
            ),
            details={
                "incidents_ms_at_largest": last["incidents_ms"],
                "slopes": {v: slopes[f"incidents_{v}"] for v in INCIDENT_VARIANTS},
            },
        )
    )
    ctx.report.add(
        Figure(
            key="growth_dashboard",
            backend=ctx.backend,
            value=last["dashboard_ms"],
            unit="ms",
            baseline=f"at {first['events']:,} events",
            baseline_value=first["dashboard_ms"],
            ratio=last["dashboard_ms"] / first["dashboard_ms"],
            target="stated (curve)",
            met=None,
            note=f"at {last['events']:,} events, all in the 24 h window; ~ N^{k('dashboard')}",
            details={"slope": slopes["dashboard"]},
        )
    )
    ctx.report.add(
        Figure(
            key="growth_db_size",
            backend=ctx.backend,
            value=last["db_bytes"] / last["events"],
            unit="bytes/event",
            baseline=f"at {first['events']:,} events",
            baseline_value=first["db_bytes"] / first["events"],
            ratio=(last["db_bytes"] / last["events"]) / (first["db_bytes"] / first["events"]),
            target="stated",
            met=None,
            note=(
                f"{last['db_bytes'] / 1e6:,.0f} MB at {last['events']:,} events "
                f"({last['db']['measure_is']})"
            ),
            details={"db_at_largest": last["db"]},
        )
    )

    rows = [
        "| events | fill events/s | ListLogs ms: none / user / type / source_ip | incidents "
        "| ListIncidents ms: none / user / open / high / tactic | no-op call ms "
        "| GetDashboard ms | DB size MB | bytes/event |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for pt in points:
        lm, im = pt["list_ms"], pt["incidents_ms"]
        rows.append(
            f"| {pt['events']:,} | {pt['ingest_events_per_s'] or 0:,.0f} | "
            + " / ".join(f"{lm[v]:.1f}" for v in LIST_VARIANTS)
            + f" | {pt['incidents']:,} | "
            + " / ".join(f"{im[v]:.1f}" for v in INCIDENT_VARIANTS)
            + f" | {pt['noop_ms']:.1f} | {pt['dashboard_ms']:.1f} | {pt['db_bytes'] / 1e6:,.1f} "
            f"| {pt['db_bytes'] / pt['events']:,.0f} |"
        )
    md = [
        f"Sizes run: {sizes_text} events (filled in {section['seconds']:.0f} s)"
        f"{'; ANALYZE before each measurement (as autovacuum would)' if url else ''}. Fitted "
        f"exponents (value ~ events^k): ingest {k('ingest')}, ListLogs unfiltered "
        f"{k('list_none')}, user {k('list_user')}, type {k('list_type')}, source_ip "
        f"{k('list_source_ip')}, ListIncidents unfiltered {k('incidents_none')}, user "
        f"{k('incidents_user')}, open {k('incidents_open')}, high {k('incidents_high')}, tactic "
        f"{k('incidents_tactic')}, dashboard {k('dashboard')}, size {k('db_bytes')}.",
        "",
        f"Incidents: {incident_fill.EVENTS_PER_INCIDENT} events per stored incident, written "
        "through the storage layer after each segment's fill (bench/incident_fill.py); the "
        "database size counts " + ("the events table only." if url else "them too (one file)."),
        "",
        *rows,
        "",
        f"Where the time goes at {last['events']:,} events (each statement the call issues, run "
        "with the driver, median of 3):",
        "",
    ]
    for call, stmts in statements.items():
        total = sum(s["ms"] for s in stmts)
        md.append(f"- **{call}**: {total:.1f} ms in {len(stmts)} statement(s)")
        for s in sorted(stmts, key=lambda s: -s["ms"])[:3]:
            md.append(
                f"  - {s['ms']:.1f} ms: `{s['sql'][:220]}{'...' if len(s['sql']) > 220 else ''}`"
            )
    slow = sorted(
        ((s["ms"], call, s) for call, stmts in statements.items() for s in stmts),
        key=lambda x: -x[0],
    )[:3]
    for ms, call, s in slow:
        md += [
            "",
            f"Plan of the {ms:.1f} ms statement of {call}:",
            "",
            "```",
            s["plan"][:3000],
            "```",
        ]
    section["markdown"] = "\n".join(md)


if __name__ == "__main__":
    import suite

    sys.exit(suite.main(sys.argv[1:], only={"growth"}))
