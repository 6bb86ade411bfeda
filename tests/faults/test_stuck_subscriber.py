"""Fault: alert subscribers stop reading while alerts keep coming.

Two kinds of stuck subscriber, beside three healthy ones connected directly
(each in a process of its own, support/alert_reader.py, so that what this
test process does meanwhile cannot slow them down and get them cut off as
too slow: they test the server, not the machine's load):
- an application that stops reading its stream: its gRPC library keeps the
  connection alive, the stream's HTTP/2 flow-control window fills, and the
  server's writes to it wait;
- a frozen TCP peer: a proxy between subscriber and server stops reading
  from the server's socket, so the server's socket send buffer fills too.

The healthy subscribers get every alert, in seq order, without gap, and are
not held back. The server's memory stays bounded. The application that
stopped reading is cut off once its backlog is full; when it reads again it
gets what was already in flight, then RESOURCE_EXHAUSTED with the seq to
resume from, and resuming from there delivers the rest without gap. The
frozen peer's connection is dropped by the server (gRPC servers set
TCP_USER_TIMEOUT, 20 s by default); it resumes from the last seq it saw.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from support.alert_reader import PROGRESS
from support.server import ServerProcess
from support.tcp_proxy import TcpProxy

from uba.detectors.registry import BUILTIN_DETECTORS, ENHANCED_DETECTORS
from uba.v1 import events_pb2, service_pb2, service_pb2_grpc

# The per-subscriber backlog bound (alert changes), smaller than the
# default (10,000) so that the test need not raise tens of thousands of alerts.
BACKLOG = 1_000
WARMUP = 200  # alerts before anyone subscribes: caches warm, and "now" is a seq above 0
ALERTS = BACKLOG + 500  # while the stuck subscribers hold their streams
# Events (one alert each) per call: a tenth of the backlog. The next batch
# goes once the healthy subscribers have the last one, so a healthy
# subscriber never has more than a batch waiting, however busy the machine
# (with batches as large as the backlog, a reader that a loaded machine did
# not run for a moment was cut off as too slow).
BATCH = BACKLOG // 10
# How long a healthy subscriber may take to have a batch's alerts.
KEEP_UP_SECONDS = 60.0
HEALTHY = 3
# Large alerts fill buffers quickly: the rule's name is in every alert's reason.
RULE_NAME = "stuck subscriber " + "x" * 3000
# The stuck subscribers keep gRPC's default stream window (64 KB; no BDP
# probing, which may grow it to megabytes), so the few alerts in flight when
# they stop reading do not depend on the traffic before.
STUCK_OPTIONS = [("grpc.http2.bdp_probe", 0)]
LIVENESS_SECONDS = (
    10.0  # each healthy subscriber has the last alert this long after it was acknowledged
)
DROP_SECONDS = 60.0  # the frozen peer's connection is dropped within this long
# Bound on the server's RSS growth over the run, stuck subscribers
# connected. The run itself (1,700 new users, each with an alert) grows RSS
# by some tens of MB; a stuck subscriber's backlog (at most 1,000 alerts of
# ~3 KB, objects shared with the other subscribers' queues) adds a few MB
# until it is cut off. Coarse: the cut-off assertions below are the sharp ones.
RSS_GROWTH_MB = 150

_RESUME = re.compile(r"after_seq=(\d+)")
_CUT_OFF = "alert subscriber cut off"
TCP_STATE_ESTABLISHED = 1


def rss_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def server_holds(proxy: TcpProxy, index: int) -> bool:
    """Whether the server still holds its end of the proxy's connection
    `index`. Its kernel's table is the witness: a server that aborts a
    connection to a peer that advertises a zero window sends a RST the peer
    may never see while it reads nothing."""
    server_port = int(proxy.upstream.rsplit(":", 1)[1])
    peer_port = proxy.upstream_sockets[index].getsockname()[1]
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in open(table).readlines()[1:]:
            local, remote, state = line.split()[1:4]
            if (
                int(local.rsplit(":", 1)[1], 16) == server_port
                and int(remote.rsplit(":", 1)[1], 16) == peer_port
                and int(state, 16) == TCP_STATE_ESTABLISHED
            ):
                return True
    return False


class Subscriber:
    """Follows StreamAlerts on a connection of its own, in a thread;
    records each alert's seq and arrival time, the last resume point any
    message gave, and how the stream ended. With pause=True it stops
    reading after the first message until read_again()."""

    def __init__(
        self,
        address: str,
        metadata,
        after_seq: int = 0,
        until_seq: int = 0,
        pause: bool = False,
        options: list[tuple[str, int]] | None = None,
    ):
        # A local subchannel pool: its own TCP connection, shared with no other channel.
        self.channel = grpc.insecure_channel(
            address, options=[("grpc.use_local_subchannel_pool", 1), *(options or [])]
        )
        stub = service_pb2_grpc.BehaviorAnalyticsServiceStub(self.channel)
        self.call = stub.StreamAlerts(
            service_pb2.StreamAlertsRequest(after_seq=after_seq), metadata=metadata
        )
        self.seqs: list[int] = []
        self.arrived: dict[int, float] = {}
        self.resume_seq = after_seq
        self.error: grpc.RpcError | None = None
        self.ended_at = 0.0
        self.until_seq = until_seq  # stop once this seq arrived (0: never)
        self.started = threading.Event()
        self.done = threading.Event()
        self.reading = threading.Event()
        if not pause:
            self.reading.set()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        try:
            for reply in self.call:
                self.resume_seq = max(self.resume_seq, reply.seq)
                if reply.HasField("alert"):
                    self.seqs.append(reply.alert.seq)
                    self.arrived[reply.alert.seq] = time.monotonic()
                    if self.until_seq and reply.alert.seq >= self.until_seq:
                        break
                self.started.set()
                self.reading.wait()
        except grpc.RpcError as err:
            self.error = err
        finally:
            self.ended_at = time.monotonic()
            self.started.set()
            self.done.set()

    def read_again(self) -> None:
        self.reading.set()

    def close(self) -> None:
        self.reading.set()
        self.call.cancel()
        self.channel.close()


class HealthyReader:
    """A subscriber that reads every alert as it comes, in its own process
    (support/alert_reader.py); stops after `count` alerts. The same
    attributes as Subscriber once done: seqs, arrived, resume_seq, error."""

    SCRIPT = Path(__file__).resolve().parents[1] / "support" / "alert_reader.py"

    def __init__(self, address: str, api_key: str, count: int, deadline: float = 300.0):
        env = {**os.environ, "ALERT_READER_KEY": api_key}
        self.proc = subprocess.Popen(
            [sys.executable, str(self.SCRIPT), address, "0", str(count), str(deadline)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        self.other_output: list[str] = []  # what else it printed (a traceback)
        self.received = 0  # alerts it said it has (it says so every PROGRESS of them)
        self.progress = threading.Condition()
        self.seqs: list[int] = []
        self.arrived: dict[int, float] = {}
        self.resume_seq = 0
        self.error: str | None = None
        self.started = threading.Event()
        self.done = threading.Event()
        threading.Thread(target=self._collect, daemon=True).start()

    def _collect(self) -> None:
        assert self.proc.stdout
        try:
            for line in self.proc.stdout:
                if line.startswith("started "):
                    self.resume_seq = int(line.split()[1])
                    self.started.set()
                elif line.startswith("got "):
                    with self.progress:
                        self.received = int(line.split()[1])
                        self.progress.notify_all()
                elif line.startswith("{"):
                    result = json.loads(line)
                    self.seqs = result["seqs"]
                    self.arrived = dict(zip(result["seqs"], result["arrived"], strict=True))
                    self.resume_seq = max([self.resume_seq, *self.seqs])
                    if result["error"]:
                        self.error = f"{result['error']}: {result['details']}"
                else:
                    self.other_output.append(line)
        finally:
            self.proc.wait()
            if self.proc.returncode and not self.error:
                output = "".join(self.other_output)[-2000:]
                self.error = f"reader exited with {self.proc.returncode}: {output}"
            self.started.set()
            self.done.set()
            with self.progress:
                self.progress.notify_all()

    def keep_up(self, count: int, timeout: float) -> bool:
        """Waits until it has `count` alerts (as many as it reports: down to a
        multiple of PROGRESS) or has stopped; False if it had neither within
        `timeout`."""
        reported = count - count % PROGRESS
        with self.progress:
            return self.progress.wait_for(
                lambda: self.received >= reported or self.done.is_set(), timeout
            )

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.done.wait(10)


def detector_config(path) -> str:
    """Only a threshold rule that alerts on a user's first API call: one new
    alert per user and nothing else, so the stored alerts are exactly what
    a subscriber must see."""
    config = {name: {"enabled": False} for name in (*BUILTIN_DETECTORS, *ENHANCED_DETECTORS)}
    config["threshold_rules"] = {
        "enabled": True,
        "rules": [
            {
                "name": RULE_NAME,
                "type": "api_call",
                "count": 1,
                "window_seconds": 3600,
                "group_by": "user_id",
            }
        ],
    }
    path.write_text(json.dumps(config))
    return str(path)


def offer_alerts(stub, metadata, prefix: str, count: int, after_batch=None) -> float:
    """`count` new users make their first API call (one alert each);
    returns when the last batch was acknowledged. `after_batch(offered)`
    runs after each batch but the last."""
    at = datetime.now(UTC) - timedelta(minutes=5)
    for b in range(0, count, BATCH):
        events = []
        for n in range(b, min(b + BATCH, count)):
            m = events_pb2.ActivityEvent(
                event_id=f"{prefix}-{n:06d}",
                user_id=f"{prefix}-{n:06d}",
                type=events_pb2.ACTIVITY_TYPE_API_CALL,
                api_method="GET",
                api_path="/v1/items",
                status_code=200,
                source_ip="10.1.2.3",
            )
            m.occurred_at.FromDatetime(at + timedelta(milliseconds=n))
            events.append(m)
        reply = stub.RecordActivities(
            service_pb2.RecordActivitiesRequest(events=events), metadata=metadata, timeout=120
        )
        assert all(r.status == service_pb2.RECORD_STATUS_ACCEPTED for r in reply.results)
        offered = min(b + BATCH, count)
        if after_batch is not None and offered < count:
            after_batch(offered)
    return time.monotonic()


def stored_alert_seqs(stub, metadata) -> list[int]:
    seqs, token = [], ""
    while True:
        page = stub.ListAlerts(
            service_pb2.ListAlertsRequest(page_size=1000, page_token=token), metadata=metadata
        )
        seqs += [a.seq for a in page.alerts]
        token = page.next_page_token
        if not token:
            return sorted(seqs)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_stuck_subscribers_are_cut_off_without_holding_back_others(
    backend, tmp_path, make_database_url
):
    url = make_database_url(backend)
    server = ServerProcess(
        tmp_path / "data",
        url,
        extra_args=[
            "--detectors",
            detector_config(tmp_path / "detectors.json"),
            "--heartbeat-interval",
            "1",
            "--alert-backlog",
            str(BACKLOG),
        ],
    ).start()
    pid = server.proc.pid
    proxy = TcpProxy(server.address, upstream_receive_buffer=4096)
    subscribers: list[Subscriber] = []
    sampling = threading.Event()
    try:
        offer_alerts(server.stub, server.metadata, "warm", WARMUP)
        warm_last = stored_alert_seqs(server.stub, server.metadata)[-1]
        probe = Subscriber(
            server.address, server.metadata, after_seq=warm_last - 1, until_seq=warm_last
        )
        assert probe.done.wait(10) and probe.error is None, (
            probe.error
        )  # the broker has delivered the warm-up
        probe.close()
        healthy = [HealthyReader(server.address, server.api_key, ALERTS) for _ in range(HEALTHY)]
        # Stops reading after its first message; its gRPC library keeps the connection.
        paused = Subscriber(server.address, server.metadata, pause=True, options=STUCK_OPTIONS)
        # Its TCP peer, the proxy, stops reading from the server.
        frozen = Subscriber(proxy.address, server.metadata, options=STUCK_OPTIONS)
        subscribers += [*healthy, paused, frozen]
        for (
            sub
        ) in subscribers:  # subscribed: the first heartbeat came (a reader process starts first)
            assert sub.started.wait(60) and sub.error is None, sub.error
        start_seq = frozen.resume_seq
        assert start_seq == warm_last and all(sub.resume_seq == start_seq for sub in subscribers)
        proxy.stall()
        stalled = time.monotonic()

        rss_before = rss_mb(pid)
        peak = [rss_before]
        cut_off_logged: list[float] = []
        dropped: list[float] = []

        def watch() -> None:
            while not sampling.is_set():
                peak[0] = max(peak[0], rss_mb(pid))
                if not cut_off_logged and _CUT_OFF in server.log():
                    cut_off_logged.append(time.monotonic())
                if not dropped and not server_holds(proxy, 0):
                    dropped.append(time.monotonic())
                time.sleep(0.05)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()

        def healthy_keep_up(offered: int) -> None:
            # Not held back by the stuck subscribers: each healthy one has
            # every alert offered so far.
            for n, sub in enumerate(healthy):
                assert sub.keep_up(offered, KEEP_UP_SECONDS), (
                    f"healthy subscriber {n} held back: {sub.received} of {offered} alerts "
                    f"{KEEP_UP_SECONDS:.0f}s after they were offered, error {sub.error}"
                )

        acknowledged = offer_alerts(
            server.stub, server.metadata, "live", ALERTS, after_batch=healthy_keep_up
        )
        offered_seconds = acknowledged - stalled
        expected = [s for s in stored_alert_seqs(server.stub, server.metadata) if s > start_seq]
        assert len(expected) == ALERTS
        last = expected[-1]

        # Healthy subscribers: everything, in order, no gap, not held back.
        # (Each stops once it has ALERTS alerts; its exit and report may take a moment more.)
        for sub in healthy:
            sub.done.wait(max(0.0, acknowledged + LIVENESS_SECONDS + 30 - time.monotonic()))
        lags = []
        for n, sub in enumerate(healthy):
            assert last in sub.arrived and sub.arrived[last] <= acknowledged + LIVENESS_SECONDS, (
                f"healthy subscriber {n} lacks the last alert {LIVENESS_SECONDS:.0f}s after it was "
                f"acknowledged: {len(sub.seqs)} of {ALERTS} "
                f"received{' (the last one late)' if last in sub.arrived else ''}, error "
                f"{sub.error}"
            )
            assert sub.seqs == expected, f"healthy subscriber {n}: gap, duplicate or disorder"
            lags.append(sub.arrived[last] - acknowledged)

        # Memory stays bounded while both stuck subscribers hold their streams.
        assert not paused.done.is_set(), (
            "the paused subscriber's stream ended while it read nothing"
        )
        time.sleep(1.0)
        rss_stuck = rss_mb(pid)

        # The application reads again: what was in flight, then RESOURCE_EXHAUSTED and where to
        # resume.
        reading_again = time.monotonic()
        paused.read_again()
        assert paused.done.wait(30), "the paused subscriber was never told it was cut off"
        told_seconds = paused.ended_at - reading_again
        error = paused.error
        assert error is not None, (
            f"the paused subscriber's stream ended without an error ({len(paused.seqs)} alerts)"
        )
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, (error.code(), error.details())
        match = _RESUME.search(error.details() or "")
        assert match, f"no resume point in {error.details()!r}"
        resume_at = int(match.group(1))
        assert paused.seqs == expected[: len(paused.seqs)], (
            "the paused subscriber saw a gap before it was cut off"
        )
        assert resume_at == (paused.seqs[-1] if paused.seqs else start_seq)
        in_flight = len(paused.seqs)
        # Its backlog was dropped at the cut-off: it gets what was in flight, not the whole stale
        # backlog.
        assert len(paused.seqs) < BACKLOG, f"{len(paused.seqs)} alerts delivered after the cut-off"
        assert cut_off_logged, "the server did not log the cut-off"
        again = Subscriber(server.address, server.metadata, after_seq=resume_at, until_seq=last)
        subscribers.append(again)
        assert again.done.wait(30) and again.error is None, again.error
        assert again.seqs == [s for s in expected if s > resume_at], (
            "resuming after the cut-off left a gap"
        )

        # The frozen TCP peer: the server drops its connection; it resumes from the last seq it saw.
        while not dropped and time.monotonic() < stalled + DROP_SECONDS:
            time.sleep(0.1)
        assert dropped, (
            f"the server still holds the frozen peer's connection after {DROP_SECONDS:.0f}s"
        )
        drop_seconds = dropped[0] - stalled
        proxy.resume()
        assert frozen.done.wait(10), "the frozen subscriber's stream did not end"
        assert frozen.error is not None and frozen.error.code() == grpc.StatusCode.UNAVAILABLE, (
            frozen.error
        )
        assert frozen.seqs == expected[: len(frozen.seqs)]
        back = Subscriber(
            proxy.address, server.metadata, after_seq=frozen.resume_seq, until_seq=last
        )
        subscribers.append(back)
        assert back.done.wait(30) and back.error is None, back.error
        assert frozen.seqs + back.seqs == expected, "the frozen subscriber's resumption left a gap"
        sampling.set()
        watcher.join()

        grown = max(peak[0], rss_stuck) - rss_before
        print(
            f"\n[{backend}] {ALERTS:,} alerts of {len(RULE_NAME) / 1000:.1f} KB offered in "
            f"{offered_seconds:.1f}s (after {WARMUP:,} of warm-up), backlog bound {BACKLOG:,}: "
            f"{HEALTHY} healthy subscribers got all {ALERTS:,} in order, 0 gaps, the last one at "
            f"most {max(lags):.2f}s after its acknowledgement. Stopped reading: cut off "
            f"{cut_off_logged[0] - stalled:.1f}s after the stall (log lines: "
            f"{server.log().count(_CUT_OFF)}); on reading again it got the {in_flight:,} alerts in "
            f"flight, then RESOURCE_EXHAUSTED after {told_seconds:.2f}s ('{error.details()}'); "
            f"resumed with the other {len(again.seqs):,}, 0 gaps. Frozen TCP peer: connection "
            f"dropped by the server {drop_seconds:.1f}s after the stall, UNAVAILABLE, resumed from "
            f"seq {frozen.resume_seq:,} with all {len(back.seqs):,}, 0 gaps. Server RSS "
            f"{rss_before:.0f} MB -> peak {peak[0]:.0f} MB, {rss_stuck:.0f} MB with the stuck "
            "subscribers connected"
        )
        assert grown < RSS_GROWTH_MB, f"server RSS grew by {grown:.0f} MB"
    finally:
        sampling.set()
        for sub in subscribers:
            sub.close()
        proxy.close()
        server.stop()
