"""Retention's cost to ingest: the ingest rate while the retention job is
deleting expired events against the rate without it, measured in
alternating rounds in the same run, in-process on one database (the
writer and the detection engine of a real server, built by uba.app).
On PostgreSQL the job detaches and drops the expired partitions, deleting
their events' keys first on a connection of its own, and deletes the
expired hours' rollups on the writer; on SQLite it deletes the expired
rows on the writer (docs/operations.md, Retention).

    .venv/bin/python bench/retention.py [--backend sqlite|postgresql] [--expired 300000]
        [--events 20000] [--rounds 3]

Not a test: nothing here asserts a timing. Writes bench/results/retention-BACKEND.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import threading
import time
from collections import deque
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from common import machine_info  # noqa: E402
from support import postgres  # noqa: E402

from uba.app import build_services  # noqa: E402
from uba.config import Settings  # noqa: E402
from uba.domain.events import ActivityEvent, ActivityType  # noqa: E402
from uba.domain.ingest import IngestService, utcnow  # noqa: E402
from uba.domain.retention import RetentionPolicy, RetentionService  # noqa: E402
from uba.storage.partitions import EventPartitions  # noqa: E402

RESULTS = ROOT / "bench" / "results"
USERS = 200
BATCH = 500
IN_FLIGHT = 4


def events(tag: str, count: int, at: datetime) -> list[ActivityEvent]:
    return [
        ActivityEvent(
            f"{tag}-{i}",
            f"user-{i % USERS}",
            ActivityType.API_CALL,
            at + timedelta(milliseconds=i),
            source_ip=f"10.0.{i % USERS // 250}.{i % 250}",
            api_method="GET",
            api_path="/v1/items",
            status_code=200,
        )
        for i in range(count)
    ]


def ingest_rate(ingest: IngestService, batch_events: list[ActivityEvent]) -> float:
    """Events/s of `batch_events` through the writer, IN_FLIGHT batches queued."""
    pending: deque = deque()
    started = time.perf_counter()
    for start in range(0, len(batch_events), BATCH):
        _, future = ingest.record_batch(batch_events[start : start + BATCH])
        pending.append(future)
        while len(pending) >= IN_FLIGHT:
            pending.popleft().result()
    while pending:
        pending.popleft().result()
    return len(batch_events) / (time.perf_counter() - started)


def run_until_cancelled(loop: asyncio.AbstractEventLoop, task: asyncio.Task) -> None:
    try:
        loop.run_until_complete(task)
    except asyncio.CancelledError:
        pass
    # The job's threads (PostgreSQL's partitions) end too before the next round.
    loop.run_until_complete(loop.shutdown_default_executor())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", default="sqlite", choices=["sqlite", "postgresql"])
    parser.add_argument("--expired", type=int, default=300_000)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="uba-retention-"))
    url = postgres.create_database() if args.backend == "postgresql" else ""
    services = build_services(Settings(data_dir=str(tmp), database_url=url))
    try:
        # Expired history, stored without detection (a bulk import would be).
        seeder = IngestService(services.store)
        old = datetime.now(UTC) - timedelta(days=100)
        t0 = time.perf_counter()
        for start in range(0, args.expired, 5000):
            seeder.submit(events(f"old{start}", 5000, old + timedelta(seconds=start))).result()
        seeder.close()
        print(f"seeded {args.expired} expired events in {time.perf_counter() - t0:.1f}s")
        # Warm-up: baselines of the users exist, caches are hot.
        ingest_rate(services.ingest, events("warm", 5000, datetime.now(UTC)))

        policy = RetentionPolicy(events_days=30)
        partitions = EventPartitions(services.database) if services.partitions else None
        without, with_retention = [], []
        for r in range(args.rounds):
            now = datetime.now(UTC) - timedelta(hours=1)
            without.append(ingest_rate(services.ingest, events(f"a{r}", args.events, now)))
            # A new pass each round, stopped and waited for at its end, so
            # that none of it runs during the next round without it.
            if partitions is not None:
                partitions.resume()
            keys_before = partitions.keys_deleted if partitions else 0
            retention = RetentionService(services.ingest, policy, utcnow, housekeeping=partitions)
            loop = asyncio.new_event_loop()
            task = loop.create_task(retention.run_once())
            thread = threading.Thread(target=run_until_cancelled, args=(loop, task))
            thread.start()
            time.sleep(0.2)  # the job is in its stride
            with_retention.append(ingest_rate(services.ingest, events(f"b{r}", args.events, now)))
            busy = not task.done()
            deleted = sum(retention.deleted.values())
            keys = (partitions.keys_deleted if partitions else 0) - keys_before
            if partitions is not None:
                partitions.stop()
            loop.call_soon_threadsafe(task.cancel)
            thread.join()
            loop.close()
            print(
                f"round {r + 1}: without {without[-1]:,.0f} ev/s, with retention "
                f"{with_retention[-1]:,.0f} ev/s ({deleted} expired rows deleted or dropped "
                f"and {keys} keys deleted meanwhile, job still busy at the end: {busy})"
            )
            assert busy, "the job ran out of expired events: seed more with --expired"
        ratio = statistics.median(with_retention) / statistics.median(without)
        print(f"ratio (median with / median without): {ratio:.3f}")
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / f"retention-{args.backend}.json").write_text(
            json.dumps(
                {
                    "machine": machine_info(),
                    "backend": args.backend,
                    "expired_seeded": args.expired,
                    "events_per_round": args.events,
                    "without_events_per_s": without,
                    "with_retention_events_per_s": with_retention,
                    "ratio": ratio,
                    "batch": retention.batch,
                    "duty": retention.duty,
                },
                indent=2,
            )
        )
    finally:
        services.close()
        if url:
            postgres.drop_database(url)


if __name__ == "__main__":
    main()
