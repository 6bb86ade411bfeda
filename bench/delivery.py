"""Notification delivery: latency from the commit (the ingest
acknowledgement) to a webhook receiver's arrival, idle and under batch
ingest; and the ingest rate with a destination configured against one
without, measured alternately in the same run.

    .venv/bin/python bench/delivery.py [--alerts 100] [--events 60000] [--quick]

Not a test: nothing here asserts a timing. Writes bench/results/delivery.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from common import machine_info, persona_block, persona_history  # noqa: E402
from support.receivers import WebhookReceiver  # noqa: E402
from support.server import ServerProcess  # noqa: E402

from uba.api.converters import event_to_pb  # noqa: E402
from uba.delivery.signing import new_secret  # noqa: E402
from uba.v1 import events_pb2, service_pb2  # noqa: E402

RESULTS = ROOT / "bench" / "results"
USERS = 200
BATCH = 500


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))] * 1000


def burst(user: str, ip: str) -> service_pb2.RecordActivitiesRequest:
    """Eleven failed logins: one alert at once."""
    request = service_pb2.RecordActivitiesRequest()
    start = datetime.now(UTC) - timedelta(minutes=5)
    for i in range(11):
        m = request.events.add(
            user_id=user, type=events_pb2.ACTIVITY_TYPE_LOGIN_FAILURE, source_ip=ip
        )
        m.occurred_at.FromDatetime(start + timedelta(seconds=3 * i))
    return request


def batches(events) -> list[service_pb2.RecordActivitiesRequest]:
    out = []
    for i in range(0, len(events), BATCH):
        request = service_pb2.RecordActivitiesRequest()
        for e in events[i : i + BATCH]:
            event_to_pb(e, request.events.add())
        out.append(request)
    return out


def start(tmp: Path, name: str, receiver: WebhookReceiver | None) -> ServerProcess:
    args = ["--train-interval", "0", "--rate-limit", "0"]
    if receiver is not None:
        path = tmp / f"{name}.json"
        path.write_text(
            json.dumps(
                {
                    "destinations": {
                        "soc": {
                            "kind": "webhook",
                            "url": receiver.url,
                            "secret": receiver.secret,
                            "min_severity": "low",
                        }
                    }
                }
            )
        )
        args += ["--notify", str(path)]
    server = ServerProcess(tmp / name, extra_args=args).start()
    history = batches(persona_history(USERS))
    for request in history:  # mature baselines, as in production
        server.stub.RecordActivities(request, timeout=120)
    return server


def latencies(server: ServerProcess, receiver: WebhookReceiver, count: int, tag: str) -> list:
    out = []
    for k in range(count):
        user = f"{tag}-{k}"
        server.stub.RecordActivities(burst(user, f"203.0.113.{k % 250 + 1}"), timeout=60)
        acknowledged = time.perf_counter()
        deadline = acknowledged + 30
        while time.perf_counter() < deadline:
            arrived = next(
                (
                    t
                    for t, m in list(receiver.arrivals)
                    if m["type"] == "alert.created" and m["data"]["alert"]["userId"] == user
                ),
                None,
            )
            if arrived is not None:
                out.append(arrived - acknowledged)
                break
            time.sleep(0.001)
    return out


def background_ingest(server: ServerProcess, stop: threading.Event, block: int) -> dict:
    sent = {"events": 0}

    def run() -> None:
        n = 0
        while not stop.is_set():
            # Days after those of the ingest rounds (blocks of one day each).
            events = persona_block(USERS, 60 + n, BATCH * 4, f"bg{block}-{n}", days_per_block=1)
            for request in batches(events):
                if stop.is_set():
                    break
                server.stub.RecordActivities(request, timeout=120)
                sent["events"] += len(request.events)
            n += 1

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    sent["thread"] = thread  # type: ignore[assignment]
    return sent


def ingest_rate(server: ServerProcess, requests: list) -> float:
    started = time.perf_counter()
    for request in requests:
        server.stub.RecordActivities(request, timeout=120)
    return sum(len(r.events) for r in requests) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=100, help="alerts timed per phase")
    parser.add_argument("--events", type=int, default=60_000, help="events per ingest round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating ingest rounds")
    parser.add_argument("--quick", action="store_true", help="a small run")
    args = parser.parse_args()
    if args.quick:
        args.alerts, args.events, args.rounds = 20, 10_000, 2
    report: dict = {"machine": machine_info(), "users": USERS, "batch": BATCH}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        receiver = WebhookReceiver(secret=new_secret())
        plain = start(tmp, "plain", None)
        notified = start(tmp, "notified", receiver)
        try:
            idle = latencies(notified, receiver, args.alerts, "idle")
            stop = threading.Event()
            load = background_ingest(notified, stop, 1)
            time.sleep(1.0)
            loaded = latencies(notified, receiver, args.alerts, "loaded")
            stop.set()
            load["thread"].join()  # type: ignore[attr-defined]
            report["latency_ms"] = {
                "idle": {"p50": pct(idle, 50), "p99": pct(idle, 99), "n": len(idle)},
                "under_batch_ingest": {
                    "p50": pct(loaded, 50),
                    "p99": pct(loaded, 99),
                    "n": len(loaded),
                    "background_events": load["events"],
                },
            }
            rates: dict[str, list[float]] = {"without": [], "with": []}
            for r in range(args.rounds):
                # The same routine traffic with a few attacks in it, so the
                # outbox is written; each server gets its own copy (own ids).
                for name, server in (("without", plain), ("with", notified)):
                    events = persona_block(USERS, r, args.events, f"{name}-{r}")
                    requests = batches(events)
                    for k in range(0, len(requests), 10):
                        requests.insert(
                            k, burst(f"{name}-{r}-victim-{k}", f"192.0.2.{k % 250 + 1}")
                        )
                    rates[name].append(ingest_rate(server, requests))
            without, with_ = statistics.median(rates["without"]), statistics.median(rates["with"])
            report["ingest_events_per_s"] = {
                "without_destination": rates["without"],
                "with_destination": rates["with"],
                "ratio_median": with_ / without,
            }
            report["delivered"] = len(receiver.arrivals)
        finally:
            plain.stop()
            notified.stop()
            receiver.close()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "delivery.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "machine"}, indent=2))


if __name__ == "__main__":
    main()
