"""Client load from separate processes.

Each worker is its own Python process (`python bench/loadgen.py`) with ONE
asyncio event loop for its whole life: every grpc.aio channel it opens is
used and closed on that loop (grpc.aio complains "Event loop is closed"
when channels outlive the loop they were made on). The suite drives the
workers over a local socket: prepare a load (connect, build requests, warm
up), then run it in a time window shared by all workers, so their calls
overlap and their counts add up.

Times are `time.monotonic()`, which on Linux is CLOCK_MONOTONIC and so the
same clock in every process of the machine.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import traceback
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Client, Listener
from pathlib import Path

BENCH = Path(__file__).resolve().parent


# ----------------------------------------------------------------------------------
# The parent's side
# ----------------------------------------------------------------------------------


class WorkerError(RuntimeError):
    pass


class Worker:
    """One worker process and the connection to it."""

    def __init__(self, listener: Listener, index: int, authkey: bytes):
        env = dict(os.environ, BENCH_AUTHKEY=authkey.hex())
        self.index = index
        self.proc = subprocess.Popen(
            [sys.executable, str(BENCH / "loadgen.py"), listener.address, str(index)], env=env
        )
        self.conn = listener.accept()
        self.pending = 0

    def submit(self, name: str, **kwargs) -> None:
        self.conn.send((name, kwargs))
        self.pending += 1

    def collect(self, timeout: float = 3600):
        if not self.conn.poll(timeout):
            raise WorkerError(f"worker {self.index} gave no answer in {timeout}s")
        self.pending -= 1
        ok, value = self.conn.recv()
        if not ok:
            raise WorkerError(f"worker {self.index}: {value}")
        return value

    def call(self, name: str, **kwargs):
        self.submit(name, **kwargs)
        return self.collect()

    def cpu_seconds(self) -> float:
        """User + system CPU time of the worker process so far."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def close(self) -> None:
        try:
            while self.pending:
                self.collect(timeout=120)
            self.conn.send(None)
            self.proc.wait(30)
        except Exception:  # noqa: BLE001 - make sure it ends
            self.proc.kill()
            self.proc.wait()


class Workers:
    """A fixed set of worker processes, started once and reused."""

    def __init__(self, count: int):
        authkey = os.urandom(16)
        path = f"/tmp/uba-bench-{os.getpid()}-{time.monotonic_ns()}.sock"
        self.listener = Listener(path, family="AF_UNIX", authkey=authkey)
        self.workers = [Worker(self.listener, i, authkey) for i in range(count)]

    def __getitem__(self, i: int) -> Worker:
        return self.workers[i]

    def __len__(self) -> int:
        return len(self.workers)

    def all(
        self,
        name: str,
        per_worker: list[dict] | None = None,
        workers: list[Worker] | None = None,
        **kwargs,
    ):
        """Runs a job on several workers at once; returns their results."""
        workers = workers if workers is not None else self.workers
        for i, w in enumerate(workers):
            w.submit(name, **{**kwargs, **((per_worker or [{}] * len(workers))[i])})
        return [w.collect() for w in workers]

    def load(
        self,
        prepare: str,
        workers: list[Worker],
        per_worker: list[dict],
        warmup: float,
        duration: float,
        watch: tuple = (),
        **kwargs,
    ) -> dict:
        """Prepares a load on the workers, runs it in one shared window, and
        combines the results: calls/s over the window and all latencies."""
        self.all(prepare, per_worker, workers, **kwargs)
        start_at = time.monotonic() + 0.1
        for w in workers:
            w.submit("run_window", start_at=start_at, warmup=warmup, duration=duration)
        # CPU seconds of the measured window, for the servers named in `watch`.
        time.sleep(max(0.0, start_at + warmup - time.monotonic()))
        cpu0 = (
            [w.cpu_seconds() for w in workers]
            + [s.cpu_seconds() for s in watch]
            + [machine_busy_seconds()]
        )
        time.sleep(max(0.0, start_at + warmup + duration - time.monotonic()))
        cpu1 = (
            [w.cpu_seconds() for w in workers]
            + [s.cpu_seconds() for s in watch]
            + [machine_busy_seconds()]
        )
        results = [w.collect() for w in workers]
        self.all("close_load", workers=workers)
        out = combine(results, duration)
        spent = [b - a for a, b in zip(cpu0, cpu1, strict=True)]
        out["client_cpu_s"] = sum(spent[: len(workers)])
        out["server_cpu_s"] = spent[len(workers) : -1]
        out["machine_busy_cores"] = spent[-1] / duration
        return out

    def close(self) -> None:
        for w in self.workers:
            w.close()
        self.listener.close()


def machine_busy_seconds() -> float:
    """CPU seconds all cores of the machine spent busy (every process, ours
    or not) since boot, from /proc/stat."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, idle, iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def combine(results: list[dict], duration: float) -> dict:
    latencies = [x for r in results for x in r["latencies"]]
    count = sum(r["count"] for r in results)
    return {
        "count": count,
        "per_s": count / duration,
        "latencies": latencies,
        "errors": sum(r.get("errors", 0) for r in results),
        "first_error": next((r["first_error"] for r in results if r.get("first_error")), ""),
    }


# ----------------------------------------------------------------------------------
# The worker's side
# ----------------------------------------------------------------------------------


class State:
    def __init__(self, index: int):
        self.index = index
        self.channels: list = []
        self.call = None  # async (slot, i) -> None
        self.concurrency = 0
        self.http: list[HttpConnection] = []
        self.batches: list[bytes] = []
        self.key = ""
        self.subscribers: list = []
        self.sub_tasks: list[asyncio.Task] = []
        self.sub_channels: list = []
        self.sub_messages = 0

    async def close_channels(self) -> None:
        for ch in self.channels:
            await ch.close()
        self.channels = []
        for h in self.http:
            h.close()
        self.http = []
        self.call = None


def _channel(address: str):
    import grpc

    # Own connection per channel: channels with equal arguments otherwise
    # share one subchannel (and one TCP connection) process-wide.
    return grpc.aio.insecure_channel(
        address,
        options=[
            ("grpc.use_local_subchannel_pool", 1),
            ("grpc.max_receive_message_length", 64 << 20),
        ],
    )


def _metadata(key: str):
    return (("authorization", f"Bearer {key}"),) if key else None


def _event_template(tag: str):
    from uba.v1 import events_pb2

    return events_pb2.ActivityEvent(
        user_id="u",
        type=events_pb2.ACTIVITY_TYPE_API_CALL,
        source_ip="10.1.2.7",
        user_agent="svc-client/2.1",
        session_id="s1",
        api_method="GET",
        api_path="/v1/items/7",
        status_code=200,
        bytes_transferred=1234,
        country_code="DE",
        timezone="Europe/Berlin",
    )


async def prepare_grpc(
    state: State,
    address: str,
    kind: str,
    concurrency: int,
    channels: int = 2,
    tag: str = "",
    users: int = 5000,
    warm_calls: int = 5,
    key: str = "",
) -> dict:
    """kind: health (grpc.health.v1 Check: the no-op baseline), record
    (RecordActivity, a new event each call), dashboard (GetDashboard)."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from uba.v1 import service_pb2, service_pb2_grpc

    await state.close_channels()
    state.channels = [_channel(address) for _ in range(channels)]
    stubs = [service_pb2_grpc.BehaviorAnalyticsServiceStub(c) for c in state.channels]
    health = [health_pb2_grpc.HealthStub(c) for c in state.channels]
    check = health_pb2.HealthCheckRequest(service="uba.v1.BehaviorAnalyticsService")
    template = _event_template(tag)
    prefix = f"{tag}-w{state.index}-"
    counter = iter(range(1 << 62))
    dash = service_pb2.GetDashboardRequest()
    md = _metadata(key)

    if kind == "health":

        async def call(slot):
            await health[slot % channels].Check(check, metadata=md)
    elif kind == "record":

        async def call(slot):
            i = next(counter)
            request = service_pb2.RecordActivityRequest()
            e = request.event
            e.CopyFrom(template)
            e.event_id = prefix + str(i)
            e.user_id = f"user{(i * 7919 + state.index) % users}"
            e.occurred_at.seconds = int(time.time()) - 1
            await stubs[slot % channels].RecordActivity(request, metadata=md)
    elif kind == "dashboard":

        async def call(slot):
            await stubs[slot % channels].GetDashboard(dash, metadata=md)
    else:
        raise ValueError(kind)
    for slot in range(channels):
        for _ in range(warm_calls):
            await call(slot)
    state.call, state.concurrency = call, concurrency
    return {}


async def prepare_rest(
    state: State,
    url: str,
    kind: str,
    concurrency: int,
    tag: str = "",
    users: int = 5000,
    warm_calls: int = 5,
    key: str = "",
) -> dict:
    """The same calls through the Envoy gateway as REST: POST an event
    (RecordActivity) or GET the dashboard; one keep-alive HTTP/1.1
    connection per call in flight."""
    await state.close_channels()
    host, port = url.split("//", 1)[1].rstrip("/").rsplit(":", 1)
    state.http = [HttpConnection(host, int(port), key) for _ in range(concurrency)]
    for h in state.http:
        await h.open()
    prefix = f"{tag}-w{state.index}-"
    counter = iter(range(1 << 62))
    api = "/api/behavior-analytics"

    if kind == "record":

        async def call(slot):
            i = next(counter)
            at = datetime.fromtimestamp(int(time.time()) - 1, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            body = json.dumps(
                {
                    "event_id": prefix + str(i),
                    "user_id": f"user{(i * 7919 + state.index) % users}",
                    "type": "ACTIVITY_TYPE_API_CALL",
                    "occurred_at": at,
                    "source_ip": "10.1.2.7",
                    "user_agent": "svc-client/2.1",
                    "session_id": "s1",
                    "api_method": "GET",
                    "api_path": "/v1/items/7",
                    "status_code": 200,
                    "bytes_transferred": "1234",
                    "country_code": "DE",
                    "timezone": "Europe/Berlin",
                }
            ).encode()
            await state.http[slot].request("POST", f"{api}/events/", body)
    elif kind == "dashboard":

        async def call(slot):
            await state.http[slot].request("GET", f"{api}/dashboard/")
    else:
        raise ValueError(kind)
    for slot in range(min(concurrency, 4)):
        for _ in range(warm_calls):
            await call(slot)
    state.call, state.concurrency = call, concurrency
    return {}


async def run_window(state: State, start_at: float, warmup: float, duration: float) -> dict:
    """Runs the prepared call with `concurrency` in flight from start_at:
    `warmup` seconds not counted, then `duration` seconds counted (calls
    that start in the window)."""
    measure_from = start_at + warmup
    measure_to = measure_from + duration
    latencies: list[float] = []
    errors = 0
    first_error = ""
    call = state.call

    async def slot_loop(slot: int) -> None:
        nonlocal errors, first_error
        while True:
            t0 = time.monotonic()
            if t0 >= measure_to:
                return
            try:
                await call(slot)
            except Exception as exc:  # noqa: BLE001 - counted and reported
                errors += 1
                first_error = first_error or f"{type(exc).__name__}: {str(exc)[:300]}"
                await asyncio.sleep(0.01)
                continue
            if t0 >= measure_from:
                latencies.append(time.monotonic() - t0)

    await asyncio.sleep(max(0.0, start_at - time.monotonic()))
    await asyncio.gather(*(slot_loop(s) for s in range(state.concurrency)))
    return {
        "count": len(latencies),
        "latencies": latencies,
        "errors": errors,
        "first_error": first_error,
    }


async def close_load(state: State) -> dict:
    await state.close_channels()
    return {}


# -- batches ------------------------------------------------------------------------------


def build_stream(spec: dict) -> list:
    """The ActivityEvents of a stream spec (see bench/common.py)."""
    import common

    kind = spec["kind"]
    if kind == "persona_history":
        return common.persona_history(spec["users"], spec.get("seed", 7))
    if kind == "persona_block":
        return common.persona_block(
            spec["users"],
            spec["block"],
            spec["count"],
            spec["tag"],
            spec.get("seed", 7),
            spec.get("days_per_block"),
        )
    if kind == "users":
        import users

        return users.build_stream(spec)
    if kind == "api":
        t0 = datetime.fromisoformat(spec["t0"])
        step = timedelta(microseconds=spec["spacing_us"])
        return [
            common.api_event(spec["tag"], i, spec["users"], t0 + step * i, spec.get("mixed", False))
            for i in range(spec["start"], spec["stop"])
        ]
    raise ValueError(kind)


def api_spec(
    tag: str, start: int, stop: int, users: int, t0: datetime, spacing_us: int = 0
) -> dict:
    """The spec of events [start, stop) of an API-call stream (kind "api"
    of build_stream: bench/common.py api_event, mixed with logins,
    logouts and failures), the i-th at t0 + i * spacing_us."""
    return {
        "kind": "api",
        "tag": tag,
        "start": start,
        "stop": stop,
        "users": users,
        "t0": t0.isoformat(),
        "spacing_us": spacing_us,
        "mixed": True,
    }


def serialize_batches(events: list, size: int = 1000) -> list[bytes]:
    from uba.api.converters import event_to_pb
    from uba.v1 import service_pb2

    out = []
    for i in range(0, len(events), size):
        request = service_pb2.RecordActivitiesRequest()
        for e in events[i : i + size]:
            event_to_pb(e, request.events.add())
        out.append(request.SerializeToString())
    return out


async def prepare_batches(
    state: State,
    address: str,
    spec: dict,
    share: int = 0,
    shares: int = 1,
    channels: int = 1,
    batch_size: int = 1000,
    key: str = "",
) -> dict:
    """Builds the stream's batches (this worker's share: every shares-th
    batch) as serialized RecordActivities requests, and connects."""
    await state.close_channels()
    batches = serialize_batches(build_stream(spec), batch_size)
    state.batches = batches[share::shares]
    state.channels = [_channel(address) for _ in range(channels)]
    state.key = key
    return {"batches": len(state.batches)}


async def run_batches(state: State, start_at: float, concurrency: int) -> dict:
    """Sends the prepared batches, `concurrency` in flight; every event
    must be accepted."""
    from uba.v1 import service_pb2

    methods = [
        ch.unary_unary(
            "/uba.v1.BehaviorAnalyticsService/RecordActivities",
            response_deserializer=service_pb2.RecordActivitiesResponse.FromString,
        )
        for ch in state.channels
    ]
    queue = list(reversed(state.batches))
    md = _metadata(state.key)
    latencies: list[float] = []
    totals = {"accepted": 0, "duplicate": 0, "invalid": 0, "first_invalid": ""}

    async def slot_loop(slot: int) -> None:
        while queue:
            body = queue.pop()
            t0 = time.monotonic()
            reply = await methods[slot % len(methods)](body, timeout=600, metadata=md)
            latencies.append(time.monotonic() - t0)
            totals["accepted"] += reply.accepted_count
            totals["duplicate"] += reply.duplicate_count
            totals["invalid"] += reply.invalid_count
            if reply.invalid_count and not totals["first_invalid"]:
                bad = next(r for r in reply.results if r.violations)
                totals["first_invalid"] = str(bad.violations[0])

    await asyncio.sleep(max(0.0, start_at - time.monotonic()))
    started = time.monotonic()
    await asyncio.gather(*(slot_loop(s) for s in range(concurrency)))
    ended = time.monotonic()
    state.batches = []
    await state.close_channels()
    return {"start": started, "end": ended, "latencies": latencies, **totals}


async def background_batches(
    state: State,
    address: str,
    until: float,
    tag: str,
    concurrency: int = 2,
    users: int = 100_000,
    batch_size: int = 1000,
    key: str = "",
    per_s: float = 0.0,
) -> dict:
    """Ingest load until `until` (monotonic): batches of new API-call
    events, generated as they go; with `per_s`, at most that many events a
    second (a steady load rather than as fast as the server answers)."""
    import common

    from uba.api.converters import event_to_pb
    from uba.v1 import service_pb2, service_pb2_grpc

    channel = _channel(address)
    stub = service_pb2_grpc.BehaviorAnalyticsServiceStub(channel)
    sent = 0
    counter = iter(range(1 << 62))
    began = time.monotonic()

    async def slot_loop() -> None:
        nonlocal sent
        while time.monotonic() < until:
            if per_s:
                await asyncio.sleep(max(0.0, began + sent / per_s - time.monotonic()))
            request = service_pb2.RecordActivitiesRequest()
            at = datetime.now(UTC) - timedelta(seconds=30)
            for _ in range(batch_size):
                event_to_pb(
                    common.api_event(f"{tag}-w{state.index}", next(counter), users, at),
                    request.events.add(),
                )
            await stub.RecordActivities(request, timeout=600, metadata=_metadata(key))
            sent += batch_size

    try:
        await asyncio.gather(*(slot_loop() for _ in range(concurrency)))
    finally:
        await channel.close()
    return {"events": sent}


# -- subscribers ----------------------------------------------------------------------------


async def open_subscribers(
    state: State, address: str, count: int, channels: int = 5, key: str = ""
) -> dict:
    """Opens `count` StreamAlerts subscribers that only listen, and waits
    until each has its first message (the server's heartbeat at start)."""
    from uba.v1 import service_pb2, service_pb2_grpc

    started = time.monotonic()
    state.sub_channels = [_channel(address) for _ in range(channels)]
    stubs = [service_pb2_grpc.BehaviorAnalyticsServiceStub(c) for c in state.sub_channels]
    opened = [asyncio.Event() for _ in range(count)]

    async def follow(i: int) -> None:
        call = stubs[i % channels].StreamAlerts(
            service_pb2.StreamAlertsRequest(), metadata=_metadata(key)
        )
        state.subscribers.append(call)
        try:
            async for _ in call:
                state.sub_messages += 1
                opened[i].set()
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - cancelled at the end, or the server went away
            opened[i].set()

    state.sub_tasks = [asyncio.create_task(follow(i)) for i in range(count)]
    await asyncio.wait_for(asyncio.gather(*(e.wait() for e in opened)), 120)
    return {"opened": count, "seconds": time.monotonic() - started}


async def close_subscribers(state: State) -> dict:
    for call in state.subscribers:
        call.cancel()
    for task in state.sub_tasks:
        task.cancel()
    await asyncio.gather(*state.sub_tasks, return_exceptions=True)
    for ch in state.sub_channels:
        await ch.close()
    messages = state.sub_messages
    state.subscribers, state.sub_tasks, state.sub_channels, state.sub_messages = [], [], [], 0
    return {"messages": messages}


# -- a minimal HTTP/1.1 keep-alive client ------------------------------------------------------


class HttpConnection:
    """One persistent HTTP/1.1 connection: cheaper per request than any
    general-purpose client, so the REST figure measures the gateway, not
    the client library."""

    def __init__(self, host: str, port: int, key: str = ""):
        self.host, self.port = host, port
        self.auth = f"Authorization: Bearer {key}\r\n" if key else ""
        self.reader = self.writer = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def request(self, method: str, path: str, body: bytes | None = None) -> bytes:
        head = (
            f"{method} {path} HTTP/1.1\r\n"
            f"Host: {self.host}:{self.port}\r\n"
            f"Accept: application/json\r\n{self.auth}"
        )
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        self.writer.write(head.encode() + b"\r\n" + (body or b""))
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        if "content-length" in headers:
            data = await self.reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                chunk = await self.reader.readexactly(size + 2)
                if size == 0:
                    break
                parts.append(chunk[:-2])
            data = b"".join(parts)
        else:
            data = b""
        if status != 200:
            raise RuntimeError(f"HTTP {status} for {method} {path}: {data[:200]!r}")
        return data

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


# -- the worker's loop ----------------------------------------------------------------------------

JOBS = {
    f.__name__: f
    for f in (
        prepare_grpc,
        prepare_rest,
        run_window,
        close_load,
        prepare_batches,
        run_batches,
        background_batches,
        open_subscribers,
        close_subscribers,
    )
}


async def serve(conn, index: int) -> None:
    loop = asyncio.get_running_loop()
    state = State(index)
    try:
        while True:
            message = await loop.run_in_executor(None, conn.recv)
            if message is None:
                break
            name, kwargs = message
            try:
                result = await JOBS[name](state, **kwargs)
                conn.send((True, result))
            except Exception:  # noqa: BLE001 - reported to the parent
                conn.send((False, traceback.format_exc()))
    finally:
        await close_subscribers(state)
        await state.close_channels()


def main() -> None:
    import common  # noqa: F401 - sets sys.path for uba and tests/support

    address, index = sys.argv[1], int(sys.argv[2])
    conn = Client(address, family="AF_UNIX", authkey=bytes.fromhex(os.environ["BENCH_AUTHKEY"]))
    try:
        asyncio.run(serve(conn, index))
    except (EOFError, KeyboardInterrupt):
        pass


if __name__ == "__main__":
    sys.path.insert(0, str(BENCH))
    main()
