"""Soak: ingest, queries, exports and alert subscriptions together for a
bounded time against one real server; reports event loss and the server's
resident memory, open file descriptors and threads over time.

    .venv/bin/python bench/soak.py [--seconds 600] [--database-url URL]   (make soak)

Bounded in time and in requests; traffic goes to 127.0.0.1 only. Writes
bench/results/soak.json (and soak.png when matplotlib is installed).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from support.server import ServerProcess  # noqa: E402 - after the sys.path set-up

from uba.v1 import events_pb2  # noqa: E402 - after the sys.path set-up
from uba_client import UbaClient  # noqa: E402 - after the sys.path set-up
from uba_client.retry import RetryPolicy  # noqa: E402 - after the sys.path set-up

RESULTS = ROOT / "bench" / "results"
USERS = 200


def proc_stats(pid: int) -> dict:
    stats = {"rss_mb": 0.0, "threads": 0, "fds": len(os.listdir(f"/proc/{pid}/fd"))}
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            stats["rss_mb"] = int(line.split()[1]) / 1024
        elif line.startswith("Threads:"):
            stats["threads"] = int(line.split()[1])
    return stats


def run(
    seconds: float, database_url: str = "", max_batches: int = 100_000, quiet: bool = False
) -> dict:
    """Runs the soak; returns the report (also usable from tests)."""
    with tempfile.TemporaryDirectory() as tmp:
        server = ServerProcess(Path(tmp) / "data", database_url).start()
        key = getattr(server, "api_key", "") or None
        stop = threading.Event()
        acked: set[str] = set()
        counts = {"batches": 0, "queries": 0, "exports": 0, "alerts_seen": 0, "errors": 0}
        lock = threading.Lock()
        start = datetime.now(UTC) - timedelta(days=1)

        def ingest(worker: int) -> None:
            client = UbaClient(
                server.address,
                api_key=key,
                timeout=10,
                ingest_retry=RetryPolicy(max_attempts=0, max_backoff=1.0),
            )
            n = 0
            while not stop.is_set() and n < max_batches:
                events = []
                for i in range(200):
                    k = n * 200 + i
                    m = events_pb2.ActivityEvent(
                        event_id=f"soak-{worker}-{k}",
                        user_id=f"soak-{(worker * 7 + k) % USERS}",
                        type=(
                            events_pb2.ACTIVITY_TYPE_LOGIN_FAILURE
                            if k % 50 == 0
                            else events_pb2.ACTIVITY_TYPE_API_CALL
                        ),
                        source_ip=f"10.{worker}.{k % 250}.1",
                        api_method="GET",
                        api_path=f"/v1/r/{k % 30}",
                        status_code=200,
                        bytes_transferred=1000 + k % 7000,
                    )
                    m.occurred_at.FromDatetime(start + timedelta(milliseconds=k * 10 + worker))
                    events.append(m)
                try:
                    result = client.record_batch(events)
                    with lock:
                        acked.update(
                            r.event_id
                            for r in result.results
                            if r.status in ("accepted", "duplicate")
                        )
                        counts["batches"] += 1
                except Exception:  # noqa: BLE001 - counted; the soak goes on
                    with lock:
                        counts["errors"] += 1
                n += 1
                time.sleep(0.05)
            client.close()

        def query() -> None:
            client = UbaClient(server.address, api_key=key, timeout=10)
            while not stop.is_set():
                try:
                    client.list_logs(user_id=f"soak-{counts['queries'] % USERS}")
                    client.dashboard()
                    client.list_alerts()
                    with lock:
                        counts["queries"] += 3
                except Exception:  # noqa: BLE001 - counted; the soak goes on
                    with lock:
                        counts["errors"] += 1
                time.sleep(0.1)
            client.close()

        def export() -> None:
            client = UbaClient(server.address, api_key=key, timeout=60)
            while not stop.wait(3.0):
                try:
                    with open(os.devnull, "wb") as sink:
                        client.export(sink, format="ndjson", user_id="soak-1")
                    with lock:
                        counts["exports"] += 1
                except Exception:  # noqa: BLE001 - counted; the soak goes on
                    with lock:
                        counts["errors"] += 1
            client.close()

        followers = []

        def subscribe() -> None:
            client = UbaClient(server.address, api_key=key, timeout=10)
            follower = client.follow_alerts(idle_timeout=30)
            followers.append(follower)
            for _ in follower:
                with lock:
                    counts["alerts_seen"] += 1

        threads = [threading.Thread(target=ingest, args=(w,)) for w in range(2)]
        threads += [threading.Thread(target=query), threading.Thread(target=export)]
        threads += [threading.Thread(target=subscribe, daemon=True) for _ in range(3)]
        samples = []
        t0 = time.monotonic()
        for t in threads:
            t.start()
        try:
            while time.monotonic() - t0 < seconds:
                samples.append(
                    {
                        "t": round(time.monotonic() - t0, 1),
                        **proc_stats(server.proc.pid),
                        "events": len(acked),
                    }
                )
                if not quiet:
                    s = samples[-1]
                    print(
                        f"  {s['t']:7.1f}s  events {s['events']:9,}  rss {s['rss_mb']:6.1f} MB  "
                        f"fds {s['fds']:4}  threads {s['threads']:3}",
                        flush=True,
                    )
                time.sleep(1.0)
        finally:
            stop.set()
            for t in threads[:4]:
                t.join(60)
            for f in followers:
                f.close()
        stored = 0
        check = UbaClient(server.address, api_key=key, timeout=60)
        for u in range(USERS):
            for _ in check.iter_logs(user_id=f"soak-{u}"):
                stored += 1
        check.close()
        server.stop()
    return {
        "machine": (
            f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}"
        ),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds": seconds,
        "backend": "postgresql" if database_url else "sqlite",
        "acknowledged": len(acked),
        "stored": stored,
        "lost": len(acked) - stored if stored <= len(acked) else 0,
        "extra": max(0, stored - len(acked)),
        **counts,
        "samples": samples,
    }


def plot(report: dict, path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    t = [s["t"] for s in report["samples"]]
    fig, axes = plt.subplots(4, 1, figsize=(8, 9), sharex=True)
    for ax, key, label in zip(
        axes,
        ("events", "rss_mb", "fds", "threads"),
        ("events acknowledged", "server RSS (MB)", "open file descriptors", "threads"),
        strict=True,
    ):
        ax.plot(t, [s[key] for s in report["samples"]])
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("seconds")
    fig.suptitle(
        f"uba soak, {report['backend']}: {report['acknowledged']:,} events, {report['lost']} lost"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return True


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()
    report = run(args.seconds, args.database_url)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "soak.json").write_text(json.dumps(report, indent=2))
    plotted = plot(report, RESULTS / "soak.png")
    first, last = report["samples"][0], report["samples"][-1]
    print(
        f"\n{report['acknowledged']:,} events acknowledged in {args.seconds:.0f} s on "
        f"{report['backend']}: {report['lost']} lost, {report['extra']} extra; "
        f"{report['queries']:,} queries, {report['exports']} exports, {report['alerts_seen']} "
        f"alert deliveries, {report['errors']} errors; RSS {first['rss_mb']:.0f} -> "
        f"{last['rss_mb']:.0f} MB, fds {first['fds']} -> {last['fds']}, threads "
        f"{first['threads']} -> {last['threads']}"
        + ("; plot bench/results/soak.png" if plotted else "")
    )
    return 0 if report["lost"] == 0 and report["extra"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
