"""Ingest benchmark: unary and batch RecordActivity on SQLite and PostgreSQL,
each beside its baseline measured in the same run.

Baselines:
- a no-op RPC on the same server stack (grpc.health.v1 Check: same server,
  same interceptors, no storage), for unary RecordActivity;
- a raw bulk insert of the same rows with the database driver
  (psycopg2 execute_values / sqlite3 executemany) into the same schema, for
  batch ingest.

The server runs in its own process; the load comes from one client process
(grpc.aio, fixed concurrency). Prints a table and writes
bench/results/ingest.json. Not a test: nothing here asserts a timing.

    .venv/bin/python bench/ingest.py [--events 200000] [--unary-calls 20000] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from support import postgres  # noqa: E402
from support.server import ServerProcess  # noqa: E402
from uba.domain.events import ActivityEvent, ActivityType  # noqa: E402
from uba.storage.database import Database  # noqa: E402
from uba.v1 import events_pb2, service_pb2, service_pb2_grpc  # noqa: E402

RESULTS = ROOT / "bench" / "results"
START = datetime.now(timezone.utc) - timedelta(days=1)


def make_events(n: int, run: str, per_user_run: int = 1) -> list[events_pb2.ActivityEvent]:
    """Realistic-looking API-call events with client-supplied ids, spread
    over 5000 users: `per_user_run` consecutive events belong to one user
    (1: every event another user, the worst case for baseline writes)."""
    out = []
    for i in range(n):
        m = events_pb2.ActivityEvent(
            event_id=f"{run}-{i}", user_id=f"user{(i // per_user_run) % 5000}", type=events_pb2.ACTIVITY_TYPE_API_CALL,
            source_ip=f"10.{i % 200}.{i % 250}.7", user_agent="svc-client/2.1", session_id=f"s{i % 9000}",
            api_method="GET", api_path=f"/v1/items/{i % 100}", status_code=200, bytes_transferred=1000 + i % 5000,
            country_code="DE", timezone="Europe/Berlin",
        )
        at = START + timedelta(milliseconds=i)
        m.occurred_at.FromDatetime(at)
        out.append(m)
    return out


async def run_calls(make_call, total: int, concurrency: int) -> tuple[float, list[float]]:
    """Runs `total` calls with `concurrency` in flight; returns (seconds, latencies)."""
    latencies: list[float] = []
    next_index = 0

    async def worker():
        nonlocal next_index
        while next_index < total:
            i = next_index
            next_index += 1
            t0 = time.perf_counter()
            await make_call(i)
            latencies.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - t0, latencies


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))] * 1000


async def grpc_figures(address: str, args, run: str) -> dict:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = service_pb2_grpc.BehaviorAnalyticsServiceStub(channel)
        health = health_pb2_grpc.HealthStub(channel)
        check = health_pb2.HealthCheckRequest(service="uba.v1.BehaviorAnalyticsService")
        figures = {}

        # Warm up both paths.
        warm = make_events(200, run + "-warm")
        for m in warm:
            await stub.RecordActivity(service_pb2.RecordActivityRequest(event=m))
            await health.Check(check)

        noop_s, noop_lat = await run_calls(lambda i: health.Check(check), args.unary_calls, args.concurrency)
        unary_events = [service_pb2.RecordActivityRequest(event=m) for m in make_events(args.unary_calls, run + "-u")]
        unary_s, unary_lat = await run_calls(lambda i: stub.RecordActivity(unary_events[i]), args.unary_calls,
                                             args.concurrency)
        figures["noop_calls_per_s"] = args.unary_calls / noop_s
        figures["noop_p50_ms"], figures["noop_p99_ms"] = pct(noop_lat, 50), pct(noop_lat, 99)
        figures["unary_events_per_s"] = args.unary_calls / unary_s
        figures["unary_p50_ms"], figures["unary_p99_ms"] = pct(unary_lat, 50), pct(unary_lat, 99)
        figures["unary_ratio_to_noop"] = figures["unary_events_per_s"] / figures["noop_calls_per_s"]

        events = make_events(args.events, run + "-b")
        batches = [service_pb2.RecordActivitiesRequest(events=events[i:i + 1000]) for i in range(0, len(events), 1000)]

        async def send_batch(i):
            reply = await stub.RecordActivities(batches[i])
            assert reply.accepted_count == len(batches[i].events), reply.invalid_count

        batch_s, batch_lat = await run_calls(send_batch, len(batches), args.batch_concurrency)
        figures["batch_events_per_s"] = args.events / batch_s
        figures["batch_p50_ms"], figures["batch_p99_ms"] = pct(batch_lat, 50), pct(batch_lat, 99)
        return figures


def raw_insert_rate(url: str, n: int, run: str) -> float:
    """The driver alone, the same rows into the same schema, no service:
    COPY on PostgreSQL (the fastest bulk path), executemany on SQLite."""
    from uba.api.converters import event_from_pb
    from uba.storage.events import _copy_value, _row_values, to_us  # the exact rows ingest writes
    from uba.storage.models import EVENT_INSERT_COLUMNS

    database = Database(url)
    database.upgrade()
    received = to_us(datetime.now(timezone.utc))
    rows = [_row_values(event_from_pb(m), received) for m in make_events(n, run + "-raw")]
    columns = ", ".join(EVENT_INSERT_COLUMNS)
    raw = database.engine.raw_connection()
    try:
        cur = raw.cursor()
        t0 = time.perf_counter()
        for i in range(0, n, 1000):
            chunk = rows[i:i + 1000]
            if database.backend == "postgresql":
                text = "".join("\t".join(map(_copy_value, row)) + "\n" for row in chunk)
                cur.copy_expert(f"COPY events ({columns}) FROM STDIN", io.StringIO(text))
                raw.commit()
            else:
                cur.execute("BEGIN IMMEDIATE")
                cur.executemany(f"INSERT INTO events ({columns}) VALUES ({', '.join('?' * len(EVENT_INSERT_COLUMNS))})",
                                chunk)
                cur.execute("COMMIT")
        elapsed = time.perf_counter() - t0
    finally:
        raw.close()
        database.dispose()
    return n / elapsed


def bench_backend(backend: str, args) -> dict:
    run = f"{backend}-{os.getpid()}-{int(time.time())}"
    with tempfile.TemporaryDirectory() as tmp:
        url = postgres.create_database() if backend == "postgresql" else ""
        raw_url = postgres.create_database() if backend == "postgresql" else f"sqlite:///{tmp}/raw.db"
        server = ServerProcess(Path(tmp) / "data", url).start()
        try:
            figures = asyncio.run(grpc_figures(server.address, args, run))
        finally:
            server.stop()
            if url:
                postgres.drop_database(url)
        figures["raw_insert_rows_per_s"] = raw_insert_rate(raw_url, args.events, run)
        if backend == "postgresql":
            postgres.drop_database(raw_url)
        figures["batch_ratio_to_raw_insert"] = figures["batch_events_per_s"] / figures["raw_insert_rows_per_s"]
        return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000, help="events for the batch figures")
    parser.add_argument("--unary-calls", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=32, help="unary calls in flight")
    parser.add_argument("--batch-concurrency", type=int, default=4, help="batches in flight")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the script runs")
    args = parser.parse_args()
    if args.quick:
        args.events, args.unary_calls, args.concurrency = 3000, 300, 8

    report = {
        "machine": f"{platform.node() and 'this machine'}: {os.cpu_count()} cores, {platform.machine()}, "
                   f"Python {platform.python_version()}",
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "params": vars(args),
        "backends": {},
    }
    for backend in args.backends.split(","):
        report["backends"][backend] = figures = bench_backend(backend, args)
        print(f"\n{backend}")
        for key, value in figures.items():
            print(f"  {key:28s} {value:12.2f}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / ("ingest-quick.json" if args.quick else "ingest.json")).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
