"""Fault: ingest far beyond what the writer keeps up with. The service
answers RESOURCE_EXHAUSTED with a retry hint (google.rpc.RetryInfo)
instead of queueing without bound; its memory stays bounded; everything it
accepted is stored; it serves normally again once the load drops."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from support.events import stored_events
from support.scale import scaled, scaled_timeout
from support.server import ServerProcess

from uba.v1 import events_pb2, service_pb2

SENDERS = 16
BATCHES = scaled(12)
BATCH = 1000
MAX_PENDING = 3000

pytestmark = scaled_timeout(300)


def rss_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def test_overload_is_refused_with_a_retry_hint_and_nothing_accepted_is_lost(tmp_path):
    server = ServerProcess(tmp_path, extra_args=["--max-pending-events", str(MAX_PENDING)]).start()
    start = datetime.now(UTC) - timedelta(hours=2)
    accepted: list[str] = []
    refusals: list[float] = []
    other: list[str] = []
    peak = [0.0]
    lock = threading.Lock()
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.is_set():
            peak[0] = max(peak[0], rss_mb(server.proc.pid))
            time.sleep(0.05)

    def send(worker: int) -> None:
        stub = server.stub
        for b in range(BATCHES):
            events = []
            for i in range(BATCH):
                m = events_pb2.ActivityEvent(
                    event_id=f"o{worker}-{b}-{i}",
                    user_id=f"load-{i % 50}",
                    type=events_pb2.ACTIVITY_TYPE_API_CALL,
                    api_path="/v1/x",
                )
                m.occurred_at.FromDatetime(start + timedelta(milliseconds=b * BATCH + i))
                events.append(m)
            try:
                reply = stub.RecordActivities(
                    service_pb2.RecordActivitiesRequest(events=events), timeout=60
                )
                with lock:
                    accepted.extend(
                        r.event_id
                        for r in reply.results
                        if r.status == service_pb2.RECORD_STATUS_ACCEPTED
                    )
            except grpc.RpcError as err:
                if err.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                    with lock:
                        other.append(f"{err.code().name}: {err.details()}")
                    continue
                status = rpc_status.from_call(err)
                for detail in status.details if status else ():
                    if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                        info = error_details_pb2.RetryInfo()
                        detail.Unpack(info)
                        with lock:
                            refusals.append(info.retry_delay.ToTimedelta().total_seconds())

    baseline_rss = rss_mb(server.proc.pid)
    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        with ThreadPoolExecutor(SENDERS) as pool:
            list(pool.map(send, range(SENDERS)))
        sampling.set()
        sampler.join()
        assert not other, other[:3]
        assert refusals, "the load never exceeded the bound; nothing was refused"
        assert all(delay > 0 for delay in refusals)  # every refusal says when to come back
        # Recovered: a normal call goes through.
        probe = events_pb2.ActivityEvent(
            user_id="after-load", type=events_pb2.ACTIVITY_TYPE_LOGIN_SUCCESS
        )
        probe.occurred_at.FromDatetime(datetime.now(UTC))
        server.stub.RecordActivity(service_pb2.RecordActivityRequest(event=probe))
        stored = sum(len(stored_events(server.stub, f"load-{u}")) for u in range(50))
        assert stored == len(accepted)
        print(
            f"\n{SENDERS * BATCHES * BATCH} events offered by {SENDERS} senders: {len(accepted)} "
            f"accepted and stored, {len(refusals)} batches refused with a retry hint; server RSS "
            f"{baseline_rss:.0f} MB -> peak {peak[0]:.0f} MB"
        )
        assert peak[0] < baseline_rss + 300  # bounded by the queue, not by the offered load
    finally:
        sampling.set()
        server.stop()
