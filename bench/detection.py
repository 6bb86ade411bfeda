"""Detection benchmark: batch ingest with every basic detector on, beside
the same ingest with detection off, in one run; alert latency from the
ingest acknowledgement to a StreamAlerts subscriber; memory of baselines.

    .venv/bin/python bench/detection.py [--events 200000] [--alerts 200] [--quick]

Not a test: nothing here asserts a timing. Writes bench/results/detection.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import sys
import tempfile
import threading
import time
import tracemalloc
from datetime import datetime, timedelta, timezone
from pathlib import Path

import grpc

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from ingest import make_events, pct, run_calls  # noqa: E402
from support import postgres  # noqa: E402
from support.server import ServerProcess  # noqa: E402
from uba.detectors.synthetic import Persona  # noqa: E402
from uba.domain.baselines import UserBaseline  # noqa: E402
from uba.v1 import events_pb2, service_pb2, service_pb2_grpc  # noqa: E402

RESULTS = ROOT / "bench" / "results"


async def batch_rate(address: str, events: list, concurrency: int) -> float:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = service_pb2_grpc.BehaviorAnalyticsServiceStub(channel)
        batches = [service_pb2.RecordActivitiesRequest(events=events[i:i + 1000]) for i in range(0, len(events), 1000)]
        await stub.RecordActivities(batches[0])  # warm-up

        async def send(i):
            await stub.RecordActivities(batches[i + 1])

        elapsed, _ = await run_calls(send, len(batches) - 1, concurrency)
        return (len(events) - len(batches[0].events)) / elapsed


def alert_latency(address: str, count: int) -> list[float]:
    """Seconds from the acknowledgement of a failed-login burst to the
    subscriber holding the alert it raised."""
    channel = grpc.insecure_channel(address)
    stub = service_pb2_grpc.BehaviorAnalyticsServiceStub(channel)
    arrived: dict[str, float] = {}
    lock = threading.Condition()
    call = stub.StreamAlerts(service_pb2.StreamAlertsRequest())

    def read():
        try:
            for message in call:
                if message.HasField("alert"):
                    with lock:
                        arrived.setdefault(message.alert.user_id, time.perf_counter())
                        lock.notify_all()
        except grpc.RpcError:
            pass

    threading.Thread(target=read, daemon=True).start()
    time.sleep(0.5)
    latencies = []
    now = datetime.now(timezone.utc)
    for n in range(count):
        user = f"lat-{os.getpid()}-{n}"
        burst = []
        for i in range(10):
            m = events_pb2.ActivityEvent(user_id=user, type=events_pb2.ACTIVITY_TYPE_LOGIN_FAILURE,
                                         source_ip="203.0.113.4")
            m.occurred_at.FromDatetime(now - timedelta(seconds=60 - i))
            burst.append(m)
        stub.RecordActivities(service_pb2.RecordActivitiesRequest(events=burst))
        acked = time.perf_counter()
        with lock:
            lock.wait_for(lambda: user in arrived, timeout=5)
        if user in arrived:
            latencies.append(arrived[user] - acked)
    call.cancel()
    channel.close()
    return latencies


def baseline_memory(users: int) -> dict:
    """Memory and JSON size of mature baselines (six weeks of routine)."""
    rng = random.Random(3)
    template = Persona().history(rng)
    tracemalloc.start()
    baselines = []
    for i in range(users):
        b = UserBaseline(f"user{i}")
        for e in template:
            b.learn(e)
        baselines.append(b)
    current, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    json_bytes = sum(len(json.dumps(b.to_dict(), separators=(",", ":"))) for b in baselines[:200]) / 200
    return {"users_measured": users, "bytes_per_baseline_in_memory": current / users,
            "mb_per_100k_in_memory": current / users * 100_000 / 1e6,
            "json_bytes_per_baseline": json_bytes, "mb_per_100k_stored_json": json_bytes * 100_000 / 1e6}


def bench_backend(backend: str, args) -> dict:
    figures = {}
    run = f"{backend}-{os.getpid()}-{int(time.time())}"
    for mode, per_user in (("off", 1), ("basic", 1), ("basic", 20)):
        events = make_events(args.events, f"{run}-{mode}-{per_user}", per_user)
        with tempfile.TemporaryDirectory() as tmp:
            url = postgres.create_database() if backend == "postgresql" else ""
            extra = ["--disable-detection"] if mode == "off" else []
            server = ServerProcess(Path(tmp) / "data", url, extra_args=extra + ["--heartbeat-interval", "5"]).start()
            try:
                name = f"batch_events_per_s_detection_{mode}" + ("" if mode == "off" else f"_runs_of_{per_user}")
                figures[name] = asyncio.run(batch_rate(server.address, events, args.batch_concurrency))
                if mode == "basic" and per_user == 1:
                    lat = alert_latency(server.address, args.alerts)
                    figures["alerts_measured"] = len(lat)
                    figures["alert_latency_p50_ms"] = pct(lat, 50)
                    figures["alert_latency_p99_ms"] = pct(lat, 99)
            finally:
                server.stop()
                if url:
                    postgres.drop_database(url)
    for per_user in (1, 20):
        figures[f"detection_ratio_runs_of_{per_user}"] = (
            figures[f"batch_events_per_s_detection_basic_runs_of_{per_user}"] / figures["batch_events_per_s_detection_off"])
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--alerts", type=int, default=200)
    parser.add_argument("--batch-concurrency", type=int, default=4)
    parser.add_argument("--baseline-users", type=int, default=2000)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.events, args.alerts, args.baseline_users = 3000, 10, 50
    report = {
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}",
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "params": vars(args),
        "backends": {},
    }
    for backend in args.backends.split(","):
        report["backends"][backend] = figures = bench_backend(backend, args)
        print(f"\n{backend}")
        for key, value in figures.items():
            print(f"  {key:40s} {value:12.2f}")
    report["baselines"] = baseline_memory(args.baseline_users)
    print("\nbaselines")
    for key, value in report["baselines"].items():
        print(f"  {key:40s} {value:12.2f}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / ("detection-quick.json" if args.quick else "detection.json")).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
