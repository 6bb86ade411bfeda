"""API benchmarks: ExportLogs (CSV, NDJSON) over gRPC against a raw SELECT
plus csv.writer of the same rows, and REST through the Envoy gateway
against direct gRPC (RecordActivity, GetDashboard).

Standalone (just these sections):

    .venv/bin/python bench/api.py [--smoke] [--backends sqlite,postgresql]
"""

from __future__ import annotations

import csv
import io
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402 - after the sys.path set-up
from common import median  # noqa: E402 - after the sys.path set-up
from report import Figure  # noqa: E402 - after the sys.path set-up

CHUNK = 64 * 1024


def _raw_export(backend: str, url: str, data_dir: Path) -> dict:
    """SELECT every event in export order with the driver and write CSV
    with csv.writer into 64 KB chunks (thrown away), as a service could at
    best."""
    from uba.storage.models import EVENT_INSERT_COLUMNS

    sql = f"SELECT {', '.join(EVENT_INSERT_COLUMNS)} FROM events ORDER BY occurred_at_us, id"
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(EVENT_INSERT_COLUMNS)
    rows = 0
    out_bytes = 0
    t0 = time.perf_counter()
    if backend == "postgresql":
        import psycopg2

        conn = psycopg2.connect(common.pg_dsn(url))
        cur = conn.cursor(name="export")  # server-side cursor: streamed, not all in memory
        cur.itersize = 2000
        cur.execute(sql)
        source = cur
    else:
        import sqlite3

        conn = sqlite3.connect(f"file:{data_dir}/uba.db?mode=ro", uri=True)
        source = conn.execute(sql)
    for row in source:
        writer.writerow(row)
        rows += 1
        if buffer.tell() >= CHUNK:
            out_bytes += len(buffer.getvalue().encode())
            buffer.seek(0)
            buffer.truncate()
    out_bytes += len(buffer.getvalue().encode())
    elapsed = time.perf_counter() - t0
    conn.close()
    return {"per_s": rows / elapsed, "rows": rows, "seconds": elapsed, "bytes": out_bytes}


def _grpc_export(server, fmt: str) -> dict:
    import grpc

    from uba.v1 import service_pb2, service_pb2_grpc

    with grpc.insecure_channel(
        server.address, options=[("grpc.max_receive_message_length", 64 << 20)]
    ) as channel:
        stub = service_pb2_grpc.BehaviorAnalyticsServiceStub(channel)
        lines = 0
        out_bytes = 0
        t0 = time.perf_counter()
        for chunk in stub.ExportLogs(
            service_pb2.ExportLogsRequest(format=fmt), metadata=server.metadata, timeout=3600
        ):
            lines += chunk.data.count(b"\n")
            out_bytes += len(chunk.data)
        elapsed = time.perf_counter() - t0
    rows = lines - 1 if fmt == "csv" else lines  # the CSV header
    return {"per_s": rows / elapsed, "rows": rows, "seconds": elapsed, "bytes": out_bytes}


def export_section(ctx, services) -> None:
    from growth import _analyze

    p = ctx.p
    server = services["off"]
    url, data_dir = services.urls["off"]
    # The events were just loaded: on PostgreSQL, statistics as autovacuum
    # would soon gather them. Without them the planner takes the table for
    # a few thousand rows and answers each keyset page with a bitmap scan of
    # every later row and a sort, instead of reading the index in order.
    _analyze(url)
    runs = {"raw": [_raw_export(ctx.backend, url, data_dir)], "csv": [], "ndjson": []}
    ratios = {"csv": [], "ndjson": []}
    for _ in range(p.repeats):
        for fmt in ("csv", "ndjson"):
            s = _grpc_export(server, fmt)
            b = _raw_export(ctx.backend, url, data_dir)
            ratios[fmt].append(s["per_s"] / ((runs["raw"][-1]["per_s"] + b["per_s"]) / 2))
            print(
                f"    raw {runs['raw'][-1]['per_s']:,.0f} rows/s, {fmt} {s['per_s']:,.0f} rows/s "
                f"({s['rows']:,} rows), raw {b['per_s']:,.0f} rows/s",
                flush=True,
            )
            runs[fmt].append(s)
            runs["raw"].append(b)
    raw_rate = median(x["per_s"] for x in runs["raw"])
    for fmt in ("csv", "ndjson"):
        value = median(x["per_s"] for x in runs[fmt])
        ctx.report.add(
            Figure(
                key=f"export_{fmt}",
                backend=ctx.backend,
                value=value,
                unit="rows/s",
                baseline="raw SELECT (driver) plus csv.writer",
                baseline_value=raw_rate,
                ratio=median(ratios[fmt]),
                target=">= 100,000 rows/s",
                met=value >= 100_000,
                note=(
                    f"{runs[fmt][-1]['rows']:,} rows, "
                    f"{runs[fmt][-1]['bytes'] / runs[fmt][-1]['rows']:.0f} bytes/row"
                )
                + ("; ANALYZE first (as autovacuum would)" if url else ""),
                details={"runs": runs[fmt], "raw_runs": runs["raw"], "ratios": ratios[fmt]},
            )
        )


def rest_section(ctx, services) -> None:
    """The same calls, the same concurrency, from the same client processes:
    straight to the server over gRPC, and as REST through Envoy (one
    keep-alive HTTP/1.1 connection per call in flight)."""
    from ingest import unary_chain

    p = ctx.p
    server = services["basic"]
    for key, kind in (("rest_record_activity", "record"), ("rest_get_dashboard", "dashboard")):
        concurrency = p.concurrency_per_worker
        grpc_load = dict(
            kind=kind,
            address=server.address,
            key=server.api_key,
            concurrency=concurrency,
            channels=2,
            tag=f"grpc-{kind}",
        )
        rest_load = dict(
            prepare="prepare_rest",
            kind=kind,
            url=server.gateway_url,
            key=server.api_key,
            concurrency=concurrency,
            tag=f"rest-{kind}",
        )
        chain = unary_chain(
            ctx, grpc_load, rest_load, p.repeats, watch=(server, *server.children())
        )
        ctx.report.add(
            Figure(
                key=key,
                backend=ctx.backend,
                value=chain["subject_per_s"],
                unit="calls/s",
                baseline="direct gRPC to the same server",
                baseline_value=chain["baseline_per_s"],
                ratio=chain["ratio"],
                target="ratio >= 0.8",
                met=chain["ratio"] >= 0.8,
                note=(
                    f"p50 {chain['subject_p50_ms']:.1f} ms vs {chain['baseline_p50_ms']:.1f} ms "
                    f"direct; server + Envoy CPU {chain['subject_server_cpu_us_per_call']:.0f} "
                    f"us/call vs {chain['baseline_server_cpu_us_per_call']:.0f} us direct"
                ),
                details={
                    **chain,
                    "server": "basic mode, gateway started with --gateway-listen",
                    "in_flight": concurrency * p.load_workers,
                },
            )
        )


if __name__ == "__main__":
    import suite

    sys.exit(suite.main(sys.argv[1:], only={"export", "rest"}))
