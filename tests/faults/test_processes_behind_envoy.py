"""Fault: several server processes on one PostgreSQL, behind Envoy.

One deterministic stream is built once: a population with six weeks of
routine each, then one injected attack per detector on its own victim
(off-hours login, new country, new device, brute-force burst, impossible
travel, data volume, API rate, session length, new API endpoint). The first
two and a half weeks warm every baseline up to maturity through one process;
the other three and a half weeks and the attacks are the load, sent by
several client threads, the users partitioned over them, each user's events
in order from one thread:

(a) straight to ONE server process: the reference;
(b) through Envoy to PROCESSES processes on another database: anomalies,
    alerts and every user's stored baseline equal the reference's (no
    double alert, no lost baseline update; each user's baseline is learned
    by whichever process a call reaches), and each process served a real
    share of the calls (Envoy's per-host counters);
(c) the same through Envoy to a third database while one process is killed
    with SIGKILL mid-load and restarted; clients retry UNAVAILABLE with the
    same event ids: every acknowledged event is stored exactly once, each
    injected attack raises its alert once, alert seqs are unique, and
    anomalies, alerts and baselines still equal the reference's.
A last test sends a new user's first two events to two processes at once.

What is held equal or left out, and why. Detection also reads state that
is not the user's baseline and lives in each process's memory
(checkpointed now and then); with the load spread, each process has its
own, so it is kept out of the comparison:
- the population and peer-group priors that new users are judged against
  (and that login_time blends in for everyone) grow as baselines turn
  mature, in the process that saw it happen. The warm-up through one
  process makes every baseline mature before the load, so every process
  starts from the same, then unchanging, prior.
- password_spraying counts failures across users per source address: off,
  and no spray is sent. (Threshold rules have none configured.)
- distribution_shift keeps each user's last week in a process-local
  window: off. isolation_forest scores with a model each process trains on
  its own schedule: off, and --train-interval 0.
- sustained_volume (a user's daily totals), credential_stuffing (the
  organisation's failures), mfa_fatigue (a user's prompts), session_hijack
  (each session's context) and session_risk (a burst's points) keep their
  counts in process-local state too: off. Spreading them is what a
  partitioned event log, one owner per user, is for.
- failed_login_burst counts a user's failures in a process-local window:
  attempts of one burst that reach different processes in separate calls
  are counted per process. Each attack is sent in one call, as a collector
  forwarding what it received does; the history (the odd typo) never comes
  near the threshold.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from support import postgres
from support.events import stored_events
from support.ports import free_port
from support.scale import scaled, scaled_timeout
from support.scenario import attacks, personas
from support.server import ServerProcess

from uba.api.converters import event_to_pb
from uba.gateway import GatewayProcess
from uba.testing.synthetic import HISTORY_START
from uba.v1 import events_pb2, service_pb2
from uba_client import UbaClient
from uba_client.retry import RetryPolicy

USERS = scaled(12)  # at least 10: one victim per attack
THREADS = 4
BATCH = 100  # events per history call
PROCESSES = 2
# A Saturday noon (UTC): a weekend in every persona's zone, so no session spans it.
WARM_UP_UNTIL = HISTORY_START.replace(tzinfo=UTC) + timedelta(days=19, hours=12)
# See the module docstring.
DETECTORS = {
    name: {"enabled": False}
    for name in (
        "password_spraying",
        "distribution_shift",
        "isolation_forest",
        "sustained_volume",
        "credential_stuffing",
        "mfa_fatigue",
        "session_hijack",
        "session_risk",
    )
}
NOT_SENT = {"password_spraying"}

pytestmark = [pytest.mark.postgres, scaled_timeout(300)]

Calls = list[list[list[events_pb2.ActivityEvent]]]  # per thread, its calls in order


def server_args(directory: Path) -> list[str]:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "detectors.json"
    path.write_text(json.dumps(DETECTORS))
    return ["--train-interval", "0", "--detectors", str(path)]


# -- the stream ---------------------------------------------------------------


class Stream:
    """Per client thread, its calls in order: each user's history in time
    order (calls of BATCH events, the users of the thread interleaved), then
    each attack in one call (at most 1000 events). `warm_up` holds the
    history before WARM_UP_UNTIL, `load` the rest."""

    def __init__(self, seed: int = 17):
        people = personas(USERS, seed=seed)
        rng = random.Random(seed)
        history = {p.user_id: p.history(rng) for p in people}
        injected = {
            d: v for d, v in attacks(people, random.Random(seed + 1)).items() if d not in NOT_SENT
        }
        self.users = [p.user_id for p in people]
        self.injected = {detector: user for detector, (user, _) in injected.items()}
        self.warm_up: Calls = [[] for _ in range(THREADS)]
        self.load: Calls = [[] for _ in range(THREADS)]
        for t in range(THREADS):
            mine = [u for i, u in enumerate(self.users) if i % THREADS == t]
            events = sorted((e for u in mine for e in history[u]), key=lambda e: e.occurred_at)
            for phase, part in (
                (self.warm_up, [e for e in events if e.occurred_at < WARM_UP_UNTIL]),
                (self.load, [e for e in events if e.occurred_at >= WARM_UP_UNTIL]),
            ):
                for start in range(0, len(part), BATCH):
                    phase[t].append(_pb(part[start : start + BATCH]))
            for _detector, (user, attack) in sorted(injected.items()):
                if user in mine:
                    attack = sorted(attack, key=lambda e: e.occurred_at)
                    for start in range(0, len(attack), 1000):
                        self.load[t].append(_pb(attack[start : start + 1000]))
        self.warm_up_ids = _ids(self.warm_up)
        self.load_ids = _ids(self.load)
        self.calls = sum(len(calls) for calls in self.load)


def _pb(events) -> list[events_pb2.ActivityEvent]:
    out = []
    for e in events:
        m = events_pb2.ActivityEvent()
        event_to_pb(e, m)
        out.append(m)
    return out


def _ids(calls: Calls) -> set[str]:
    return {e.event_id for thread in calls for call in thread for e in call}


class Senders:
    """One client thread per list of calls, sending to `target` and
    retrying UNAVAILABLE (and the other ingest codes) for ever with the same
    event ids. With `hold_at` < 1 each thread waits for resume() before the
    last (1 - hold_at) of its calls."""

    def __init__(self, calls: Calls, target: str, api_key: str, hold_at: float = 1.0):
        self.calls = calls
        self.target = target
        self.api_key = api_key
        self.hold_at = hold_at
        self.resumed = threading.Event()
        self.acknowledged: Counter[str] = Counter()
        self.duplicates = 0  # found stored already: an earlier attempt's answer was lost
        self.retries = 0
        self.errors: list[str] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._send, args=(c,), daemon=True) for c in calls]

    def _sleep(self, seconds: float) -> None:
        with self.lock:
            self.retries += 1
        time.sleep(seconds)

    def _send(self, calls: list[list[events_pb2.ActivityEvent]]) -> None:
        client = UbaClient(
            self.target,
            api_key=self.api_key,
            timeout=30,
            sleep=self._sleep,
            ingest_retry=RetryPolicy(max_attempts=0, max_backoff=0.5),
        )
        try:
            for i, call in enumerate(calls):
                if i >= self.hold_at * len(calls):
                    self.resumed.wait()
                result = client.record_batch(call)
                with self.lock:
                    self.acknowledged.update(
                        r.event_id for r in result.results if r.status in ("accepted", "duplicate")
                    )
                    self.duplicates += result.duplicate
        except Exception as exc:  # noqa: BLE001 - reported by the test
            with self.lock:
                self.errors.append(repr(exc))
        finally:
            client.close()

    def start(self) -> Senders:
        for thread in self.threads:
            thread.start()
        return self

    def resume(self) -> None:
        self.resumed.set()

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        assert not any(t.is_alive() for t in self.threads), "senders did not finish"
        assert not self.errors, self.errors[:3]

    def run(self, timeout: float) -> Senders:
        self.resume()
        self.start().join(timeout)
        return self


def warm_up(server: ServerProcess, stream: Stream) -> None:
    """The warm-up history through one process; every baseline ends mature."""
    senders = Senders(stream.warm_up, server.address, server.api_key).run(scaled(120))
    assert set(senders.acknowledged) == stream.warm_up_ids
    for user in stream.users:
        baseline = server.stub.GetUserBaseline(
            service_pb2.GetUserBaselineRequest(user_id=user)
        ).baseline
        assert baseline.mature, f"{user} is not mature after the warm-up"


# -- what detection kept --------------------------------------------------------


def _pages(call: Callable, request) -> list:
    out, token = [], ""
    while True:
        request.page_token = token
        page = call(request)
        out.extend(page.anomalies if hasattr(page, "anomalies") else page.alerts)
        token = page.next_page_token
        if not token:
            return out


class Outcome:
    """Anomalies, alerts and baselines of a run, in comparable form (no
    ids, seqs or wall-clock times, which differ between runs)."""

    def __init__(self, stub, users: list[str]):
        anomalies = _pages(stub.ListAnomalies, service_pb2.ListAnomaliesRequest(page_size=1000))
        alerts = _pages(stub.ListAlerts, service_pb2.ListAlertsRequest(page_size=1000))
        self.anomalies = Counter(
            (a.user_id, a.detector, tuple(a.event_ids), a.severity, a.quarantined)
            for a in anomalies
        )
        self.alerts = Counter((a.user_id, a.detector) for a in alerts)
        self.alerted_anomalies: Counter[tuple[str, str]] = Counter()
        for a in alerts:
            self.alerted_anomalies[(a.user_id, a.detector)] += a.anomaly_count
        self.seqs = [a.seq for a in alerts]
        self.baselines = {
            u: stub.GetUserBaseline(service_pb2.GetUserBaselineRequest(user_id=u)).baseline
            for u in users
        }

    def differences(self, other: Outcome) -> list[str]:
        found = []
        for name in ("anomalies", "alerts", "alerted_anomalies"):
            mine, theirs = getattr(self, name), getattr(other, name)
            if mine != theirs:
                found.append(
                    f"{name}: only here {dict(mine - theirs)}, only in the reference "
                    f"{dict(theirs - mine)}"
                )
        for user, baseline in self.baselines.items():
            reference = other.baselines.get(user)
            if reference is None or baseline.SerializeToString(
                deterministic=True
            ) != reference.SerializeToString(deterministic=True):
                found.append(
                    f"baseline of {user}: observation_count {baseline.observation_count}, "
                    f"reference {reference.observation_count if reference else None}"
                )
        return found


# -- processes -----------------------------------------------------------------


class Cluster:
    """`processes` server processes on one fresh database, with Envoy in
    front unless `gateway` is false. With a stream, its warm-up goes
    through the first process alone, which then restarts (saving the
    detector state the others start from) before the others start."""

    def __init__(
        self,
        root: Path,
        processes: int = PROCESSES,
        gateway: bool = True,
        stream: Stream | None = None,
    ):
        self.url = postgres.create_database()
        self.args = server_args(root)
        self.servers: list[ServerProcess] = []
        self.gateway: GatewayProcess | None = None
        try:
            first = self._start(root / "p0", f"127.0.0.1:{free_port()}", None)
            if stream is not None:
                warm_up(first, stream)
                first.stop()
                first = self._start(first.data_dir, first.address, first.api_key)
            self.servers.append(first)
            for i in range(1, processes):
                self.servers.append(
                    self._start(root / f"p{i}", f"127.0.0.1:{free_port()}", first.api_key)
                )
            if gateway:
                upstream = ",".join(s.address for s in self.servers)
                self.gateway = GatewayProcess(
                    upstream, "127.0.0.1:0", work_dir=root / "gateway", concurrency=1
                )
                self.gateway.start().wait_ready()
                self.wait_healthy()
        except BaseException:
            self.close()
            raise

    def _start(self, data_dir: Path, listen: str, api_key: str | None) -> ServerProcess:
        return ServerProcess(
            data_dir, self.url, listen=listen, extra_args=self.args, api_key=api_key
        ).start()

    @property
    def api_key(self) -> str:
        return self.servers[0].api_key

    @property
    def address(self) -> str:
        assert self.gateway and self.gateway.listen_address
        return self.gateway.listen_address

    def host_stats(self) -> dict[str, dict[str, str]]:
        """Envoy's per-host counters and flags of the uba cluster."""
        assert self.gateway
        text = self.gateway.admin_get("/clusters", timeout=5)  # the admin interface's Unix socket
        hosts: dict[str, dict[str, str]] = {}
        for line in text.splitlines():
            parts = line.split("::")
            if (
                len(parts) == 4 and parts[0] == "uba" and ":" in parts[1]
            ):  # uba::HOST:PORT::name::value
                hosts.setdefault(parts[1], {})[parts[2]] = parts[3]
        return hosts

    def requests_per_host(self) -> dict[str, int]:
        return {host: int(stats.get("rq_total", 0)) for host, stats in self.host_stats().items()}

    def wait_healthy(self, timeout: float = 30.0) -> None:
        """Until Envoy counts every process healthy (not ejected either)."""
        deadline = time.monotonic() + timeout
        while True:
            healthy = [
                h for h, s in self.host_stats().items() if s.get("health_flags") == "healthy"
            ]
            if len(healthy) == len(self.servers):
                return
            assert time.monotonic() < deadline, (
                f"Envoy sees {len(healthy)} of {len(self.servers)} processes healthy"
            )
            time.sleep(0.1)

    def restart(self, i: int) -> None:
        old = self.servers[i]
        self.servers[i] = self._start(old.data_dir, old.address, self.api_key)

    def close(self) -> None:
        if self.gateway is not None:
            self.gateway.stop()
        for server in self.servers:
            server.stop()
        postgres.drop_database(self.url)


def shares(counts: dict[str, int]) -> str:
    total = sum(counts.values()) or 1
    return ", ".join(f"{100 * n / total:.0f} %" for _, n in sorted(counts.items()))


# -- the tests -------------------------------------------------------------------


@pytest.fixture(scope="module")
def stream() -> Stream:
    return Stream()


@pytest.fixture(scope="module")
def reference(stream, pg_available, tmp_path_factory) -> Outcome:
    """The stream through one process, straight to it."""
    root = tmp_path_factory.mktemp("reference")
    url = postgres.create_database()
    server = ServerProcess(root, url, extra_args=server_args(root)).start()
    try:
        warm_up(server, stream)
        senders = Senders(stream.load, server.address, server.api_key).run(scaled(120))
        assert set(senders.acknowledged) == stream.load_ids
        outcome = Outcome(server.stub, stream.users)
    finally:
        server.stop()
        postgres.drop_database(url)
    # The scenario works: every injected attack raised its alert.
    missed = [(d, u) for d, u in stream.injected.items() if outcome.alerts[(u, d)] != 1]
    assert not missed, f"the reference run missed injected attacks: {missed}"
    return outcome


def test_processes_behind_envoy_detect_what_one_process_detects(stream, reference, tmp_path):
    cluster = Cluster(tmp_path, stream=stream)
    try:
        senders = Senders(stream.load, cluster.address, cluster.api_key).run(scaled(120))
        assert set(senders.acknowledged) == stream.load_ids
        per_host = cluster.requests_per_host()
        outcome = Outcome(cluster.servers[0].stub, stream.users)
    finally:
        cluster.close()
    # The load was really spread: every process served at least a fifth of
    # an even share of the calls.
    assert len(per_host) == PROCESSES
    assert sum(per_host.values()) >= stream.calls
    assert min(per_host.values()) >= stream.calls / PROCESSES / 5, per_host
    differences = outcome.differences(reference)
    assert not differences, differences[:5]
    assert len(outcome.seqs) == len(set(outcome.seqs))
    print(
        f"\n{len(stream.load_ids)} events of {len(stream.users)} mature users in {stream.calls} "
        f"calls from {THREADS} threads through Envoy to {PROCESSES} processes (calls per process: "
        f"{shares(per_host)}): {sum(outcome.anomalies.values())} anomalies, "
        f"{sum(outcome.alerts.values())} alerts and {len(outcome.baselines)} baselines equal to "
        f"one process's on the same events; {len(stream.injected)} injected attacks alerted once "
        "each"
    )


def test_a_process_killed_behind_envoy_loses_nothing(stream, reference, tmp_path):
    cluster = Cluster(tmp_path, stream=stream)
    # The last third of each thread's calls waits until the killed process
    # is back, so that it gets a share again however long its restart takes.
    senders = Senders(stream.load, cluster.address, cluster.api_key, hold_at=2 / 3)
    try:
        senders.start()
        # SIGKILL one process once a fifth of the load is acknowledged, with
        # calls in flight on it; restart it on its address.
        deadline = time.monotonic() + scaled(60)
        while len(senders.acknowledged) < len(stream.load_ids) / 5:
            assert time.monotonic() < deadline and not senders.errors, (
                "ingest did not progress",
                senders.errors,
            )
            time.sleep(0.01)
        at_kill = len(senders.acknowledged)
        killed = cluster.servers[1].address
        before_kill = cluster.requests_per_host()
        cluster.servers[1].kill()
        time.sleep(1.0)
        cluster.restart(1)
        cluster.wait_healthy()  # Envoy takes it back
        at_rejoin = cluster.requests_per_host()
        acknowledged_at_rejoin = len(senders.acknowledged)
        senders.resume()
        senders.join(scaled(120))
        assert at_kill < len(stream.load_ids), "ingest finished before the kill"
        per_host = cluster.requests_per_host()

        stored: Counter[str] = Counter()
        stub = cluster.servers[0].stub
        for user in stream.users:
            stored.update(e.event_id for e in stored_events(stub, user))
        outcome = Outcome(stub, stream.users)
    finally:
        senders.resume()
        cluster.close()
    acknowledged = set(senders.acknowledged)
    assert acknowledged == stream.load_ids
    lost = acknowledged - set(stored)
    duplicated = [e for e, n in stored.items() if n > 1]
    assert not lost and not duplicated, (sorted(lost)[:5], duplicated[:5])
    assert set(stored) == acknowledged | stream.warm_up_ids  # nothing extra either
    for detector, user in stream.injected.items():
        assert outcome.alerts[(user, detector)] == 1, (
            detector,
            user,
            outcome.alerts[(user, detector)],
        )
    assert len(outcome.seqs) == len(set(outcome.seqs))
    # Detection state moved with the events: even across the kill, what was
    # learned and raised is what one process learns and raises.
    differences = outcome.differences(reference)
    assert not differences, differences[:5]
    # The restarted process took calls again.
    assert per_host[killed] > at_rejoin[killed], (per_host, at_rejoin)

    def killed_share(since: dict[str, int], until: dict[str, int]) -> str:
        calls = {h: until[h] - since.get(h, 0) for h in until}
        return f"{100 * calls[killed] / max(1, sum(calls.values())):.0f} %"

    print(
        f"\n{len(acknowledged)} events acknowledged through Envoy to {PROCESSES} processes, one "
        f"killed (SIGKILL) after {at_kill} and restarted: 0 lost, 0 duplicated; {senders.retries} "
        f"calls retried, {senders.duplicates} events found already stored on retry (answer lost in "
        f"the kill); share of the calls of the killed process: {killed_share({}, before_kill)} "
        f"before the kill, {killed_share(before_kill, at_rejoin)} while it was down, "
        f"{killed_share(at_rejoin, per_host)} after its restart (last "
        f"{len(acknowledged) - acknowledged_at_rejoin} events); {len(stream.injected)} injected "
        f"attacks alerted once each; {len(outcome.seqs)} alerts, no duplicate seq; anomalies, "
        "alerts and baselines equal to one process's"
    )


def test_a_new_users_first_events_at_two_processes_at_once(pg_available, tmp_path):
    """A user's first events reach two processes at the same moment (no
    baseline row exists yet to lock): both are learned, none overwritten."""
    cluster = Cluster(tmp_path, processes=2, gateway=False)
    users = [f"new-{n:04d}" for n in range(scaled(300))]
    start = datetime.now(UTC) - timedelta(days=1)
    errors: list[str] = []

    def send(process: int) -> None:
        stub = cluster.servers[process].stub
        try:
            for user in users:
                m = events_pb2.ActivityEvent(
                    event_id=f"{user}-{process}",
                    user_id=user,
                    source_ip="10.1.1.1",
                    type=events_pb2.ACTIVITY_TYPE_LOGIN_SUCCESS,
                )
                # Hours apart: the per-hour rollup rows must not be what serialises them.
                m.occurred_at.FromDatetime(start + timedelta(hours=3 * process))
                stub.RecordActivities(service_pb2.RecordActivitiesRequest(events=[m]), timeout=30)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(repr(exc))

    try:
        threads = [threading.Thread(target=send, args=(p,)) for p in (0, 1)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(scaled(120))
        assert not errors, errors[:3]
        stub = cluster.servers[0].stub
        counts = Counter(
            stub.GetUserBaseline(
                service_pb2.GetUserBaselineRequest(user_id=u)
            ).baseline.observation_count
            for u in users
        )
    finally:
        cluster.close()
    assert counts == {2: len(users)}, f"baselines by observation count: {dict(counts)}"
    print(
        f"\n{len(users)} new users, their first two events at two processes at once: "
        f"{counts[2]} baselines learned both, 0 lost updates"
    )
