"""What metrics and tracing cost: the same ingest load on three servers of
one run (telemetry off, --metrics-listen, --metrics-listen with
--otlp-endpoint), in interleaved rounds so that a busy moment of the
machine hits all three alike; then the time of a /metrics scrape on the
loaded store. Results: docs/operations.md.

    .venv/bin/python bench/observability.py [--rounds 6] [--users 2000]

With `--scrape-events N` it measures the scrape alone as the store grows:
one server with metrics on, filled with N events of `--scrape-users`
users (each user's baseline learned and cached), the scrape timed at a
tenth, a third and all of N.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import grpc  # noqa: E402 - after the sys.path set-up
from common import Server, start_all  # noqa: E402 - after the sys.path set-up

from uba.v1 import events_pb2, service_pb2, service_pb2_grpc  # noqa: E402

BATCH = 500


class DiscardingCollector:
    """An OTLP/HTTP endpoint that accepts and drops spans (the exporter's
    cost is measured, not a collector's)."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server interface
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def events(users: int, per_user: int, round_no: int, prefix: str = "bench-user") -> list:
    """Logins and bursts of failures of `users` users (some raise alerts)."""
    now = datetime.now(UTC) - timedelta(hours=6)
    out = []
    for u in range(users):
        for i in range(per_user):
            m = events_pb2.ActivityEvent(
                event_id=str(uuid.uuid4()),
                user_id=f"{prefix}-{u}",
                type=events_pb2.ACTIVITY_TYPE_LOGIN_FAILURE
                if (u + round_no) % 10 == 0
                else events_pb2.ACTIVITY_TYPE_LOGIN_SUCCESS,
                source_ip=f"10.{u % 250}.{i % 250}.{round_no % 250}",
                source="okta",
            )
            m.occurred_at.FromDatetime(now + timedelta(seconds=3 * i + round_no * 40))
            out.append(m)
    return out


def send_batches(server: Server, batch_events: list, threads: int = 4) -> float:
    """Sends the events in batches of BATCH over `threads` channels; events/s."""
    batches = [batch_events[i : i + BATCH] for i in range(0, len(batch_events), BATCH)]
    channels = [grpc.insecure_channel(server.address) for _ in range(threads)]
    stubs = [service_pb2_grpc.BehaviorAnalyticsServiceStub(c) for c in channels]

    def send(i: int) -> None:
        stubs[i % threads].RecordActivities(
            service_pb2.RecordActivitiesRequest(events=batches[i]), metadata=server.metadata
        )

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(send, range(len(batches))))
    elapsed = time.perf_counter() - started
    for c in channels:
        c.close()
    return len(batch_events) / elapsed


def send_unary(server: Server, batch_events: list, threads: int = 16) -> float:
    channel = grpc.insecure_channel(server.address)
    stub = service_pb2_grpc.BehaviorAnalyticsServiceStub(channel)

    def send(m) -> None:
        stub.RecordActivity(service_pb2.RecordActivityRequest(event=m), metadata=server.metadata)

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(send, batch_events))
    elapsed = time.perf_counter() - started
    channel.close()
    return len(batch_events) / elapsed


def scrape_seconds(url: str, times: int = 20) -> tuple[float, int]:
    samples, size = [], 0
    for _ in range(times):
        started = time.perf_counter()
        with urllib.request.urlopen(url, timeout=30) as reply:
            size = len(reply.read())
        samples.append(time.perf_counter() - started)
    return statistics.median(samples), size


def metrics_url(server: Server) -> str:
    return next(
        line.split("metrics on ", 1)[1].strip() for line in server.output if "metrics on " in line
    )


def series_sum(page: str, prefix: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in page.splitlines() if line.startswith(prefix)
    )


def scrape_at_scale(total: int, users: int, per_round: int = 5) -> None:
    """The scrape's time at a tenth, a third and all of `total` stored events."""
    tmp = Path(tempfile.mkdtemp(prefix="uba-obs-scrape-"))
    server = Server("metrics", tmp / "metrics", extra_args=["--metrics-listen", "127.0.0.1:0"])
    start_all([server])
    try:
        url = metrics_url(server)
        marks = sorted({max(1, total // 10), max(1, total // 3), total})
        stored, round_no = 0, 0
        for mark in marks:
            started = time.perf_counter()
            sent = 0
            while stored < mark:
                chunk = events(users, per_round, round_no)[: mark - stored]
                send_batches(server, chunk)
                stored += len(chunk)
                sent += len(chunk)
                round_no += 1
            rate = sent / (time.perf_counter() - started)
            seconds, size = scrape_seconds(url)
            page = urllib.request.urlopen(url, timeout=30).read().decode()
            print(
                f"{stored:,} events of {users:,} users (filled at {rate:,.0f}/s): scrape median "
                f"{seconds * 1000:.1f} ms for {size:,} bytes, storage reads "
                f"{series_sum(page, 'uba_metrics_storage_read_seconds ') * 1000:.1f} ms, "
                f"{series_sum(page, 'uba_alerts{'):,.0f} unresolved alerts",
                flush=True,
            )
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--per-user", type=int, default=11)
    parser.add_argument("--unary", type=int, default=3000)
    parser.add_argument("--scrape-events", type=int, default=0)
    parser.add_argument("--scrape-users", type=int, default=20_000)
    args = parser.parse_args()
    if args.scrape_events:
        scrape_at_scale(args.scrape_events, args.scrape_users)
        return
    collector = DiscardingCollector()
    tmp = Path(tempfile.mkdtemp(prefix="uba-obs-bench-"))
    servers = {
        "off": Server("off", tmp / "off"),
        "metrics": Server(
            "metrics", tmp / "metrics", extra_args=["--metrics-listen", "127.0.0.1:0"]
        ),
        "metrics+tracing": Server(
            "metrics+tracing",
            tmp / "traced",
            extra_args=["--metrics-listen", "127.0.0.1:0", "--otlp-endpoint", collector.url],
        ),
    }
    start_all(list(servers.values()))
    try:
        names = list(servers)
        batch_rates: dict[str, list[float]] = {n: [] for n in names}
        unary_rates: dict[str, list[float]] = {n: [] for n in names}
        for r in range(args.rounds):
            load = events(args.users, args.per_user, r)
            unary = events(args.unary // 2, 2, r, prefix="bench-unary")
            order = names[r % len(names) :] + names[: r % len(names)]
            for name in order:
                batch_rates[name].append(send_batches(servers[name], load))
            for name in order:
                unary_rates[name].append(send_unary(servers[name], unary))
            print(
                f"round {r + 1}: batch "
                + ", ".join(f"{n} {batch_rates[n][-1]:,.0f}/s" for n in names)
                + "; unary "
                + ", ".join(f"{n} {unary_rates[n][-1]:,.0f}/s" for n in names),
                flush=True,
            )
        print("\nmedian events/s and ratio to telemetry off (same run):")
        for kind, rates in (("RecordActivities", batch_rates), ("RecordActivity", unary_rates)):
            base = statistics.median(rates["off"])
            for name in names:
                m = statistics.median(rates[name])
                print(f"  {kind:17} {name:16} {m:9,.0f}/s  ratio {m / base:.3f}")
        url = metrics_url(servers["metrics"])
        seconds, size = scrape_seconds(url)
        page = urllib.request.urlopen(url, timeout=30).read().decode()
        stored = sum(
            float(line.rsplit(" ", 1)[1])
            for line in page.splitlines()
            if line.startswith("uba_ingest_events_total{") and 'outcome="accepted"' in line
        )
        alerts = series_sum(page, "uba_alerts{")
        storage = next(
            float(line.rsplit(" ", 1)[1])
            for line in page.splitlines()
            if line.startswith("uba_metrics_storage_read_seconds ")
        )
        print(
            f"\nscrape: median {seconds * 1000:.1f} ms for {size:,} bytes (storage reads "
            f"{storage * 1000:.1f} ms) with {stored:,.0f} events stored and {alerts:,.0f} "
            "unresolved alerts"
        )
    finally:
        for s in servers.values():
            s.stop()


if __name__ == "__main__":
    main()
