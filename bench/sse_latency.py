"""Alert latency through the gateway's server-sent events against native
StreamAlerts, in one run: both subscribers are connected at once, a
failed-login burst is ingested, and each subscriber's receipt is timed
from the ingest acknowledgement.

    .venv/bin/python bench/sse_latency.py [--alerts 200] [--quick]

Not a test: nothing here asserts a timing. Writes bench/results/sse_latency.json.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from support.server import ServerProcess  # noqa: E402 - after the sys.path set-up

from uba.gateway import GatewayProcess  # noqa: E402 - after the sys.path set-up
from uba.v1 import events_pb2, service_pb2  # noqa: E402 - after the sys.path set-up

RESULTS = ROOT / "bench" / "results"


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return (
        values[min(len(values) - 1, int(p / 100 * len(values)))] * 1000 if values else float("nan")
    )


def follow_native(
    server: ServerProcess, arrived: dict, cond: threading.Condition, stop: threading.Event
) -> None:
    call = server.stub.StreamAlerts(service_pb2.StreamAlertsRequest())
    stop.call = call  # type: ignore[attr-defined]
    try:
        for message in call:
            if message.HasField("alert"):
                with cond:
                    arrived.setdefault(message.alert.user_id, time.perf_counter())
                    cond.notify_all()
    except grpc.RpcError:
        pass


def follow_sse(
    address: str, key: str, arrived: dict, cond: threading.Condition, stop: threading.Event
) -> None:
    host, port = address.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    headers = {"Accept": "text/event-stream"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    conn.request("GET", "/api/behavior-analytics/alerts/stream/", headers=headers)
    response = conn.getresponse()
    assert response.status == 200, response.status
    try:
        while not stop.is_set():
            line = response.fp.readline()
            if not line:
                return
            if line.startswith(b"data:"):
                message = json.loads(line[5:])
                user = message.get("alert", {}).get("userId")
                if user:
                    with cond:
                        arrived.setdefault(user, time.perf_counter())
                        cond.notify_all()
    except OSError:
        pass
    finally:
        conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--alerts", type=int, default=200)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.alerts = 10
    native, sse = {}, {}
    cond = threading.Condition()
    stop = threading.Event()
    native_lat, sse_lat = [], []
    with tempfile.TemporaryDirectory() as tmp:
        server = ServerProcess(Path(tmp) / "data").start()
        key = getattr(server, "api_key", "") or ""
        gateway = GatewayProcess(server.address, "127.0.0.1:0", work_dir=Path(tmp) / "gateway")
        gateway.start()
        gateway.wait_ready()
        try:
            threading.Thread(
                target=follow_native, args=(server, native, cond, stop), daemon=True
            ).start()
            threading.Thread(
                target=follow_sse, args=(gateway.listen_address, key, sse, cond, stop), daemon=True
            ).start()
            time.sleep(1.0)
            now = datetime.now(UTC)
            for n in range(args.alerts):
                user = f"sse-{os.getpid()}-{n}"
                burst = []
                for i in range(10):
                    m = events_pb2.ActivityEvent(
                        user_id=user,
                        type=events_pb2.ACTIVITY_TYPE_LOGIN_FAILURE,
                        source_ip="203.0.113.4",
                    )
                    m.occurred_at.FromDatetime(now - timedelta(seconds=60 - i))
                    burst.append(m)
                server.stub.RecordActivities(service_pb2.RecordActivitiesRequest(events=burst))
                acked = time.perf_counter()
                with cond:
                    cond.wait_for(lambda user=user: user in native and user in sse, timeout=5)
                if user in native:
                    native_lat.append(native[user] - acked)
                if user in sse:
                    sse_lat.append(sse[user] - acked)
        finally:
            stop.set()
            gateway.stop()
            server.stop()
    report = {
        "machine": (
            f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}"
        ),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "alerts": args.alerts,
        "native_p50_ms": pct(native_lat, 50),
        "native_p99_ms": pct(native_lat, 99),
        "sse_p50_ms": pct(sse_lat, 50),
        "sse_p99_ms": pct(sse_lat, 99),
        "native_received": len(native_lat),
        "sse_received": len(sse_lat),
    }
    report["sse_to_native_p50_ratio"] = report["sse_p50_ms"] / report["native_p50_ms"]
    for k, v in report.items():
        print(f"  {k:28s} {v}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / ("sse_latency-quick.json" if args.quick else "sse_latency.json")).write_text(
        json.dumps(report, indent=2)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
