"""A real nats-server with JetStream (alone, or three of them as a
cluster) and real `uba worker` processes, for the event-log tests. Each
NatsServer has its own ports and store dir."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from support.ports import free_port
from support.server import ChildProcess

NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"
_CONSUMING = re.compile(r"uba: worker (\S+) consuming")


def require_nats() -> None:
    """Skips unless nats-server and nats-py are both there (in CI, where
    .ci/run installs both, their absence fails)."""
    if not Path(NATS_SERVER).exists():
        if os.environ.get("CI"):
            pytest.fail("nats-server is missing; .ci/run installs Debian's nats-server")
        pytest.skip("nats-server is not installed")
    pytest.importorskip("nats", reason="nats-py (the eventlog extra) is not installed")


class NatsServer:
    """One nats-server with JetStream. Given `cluster` (the cluster ports of
    every node, its own included), it joins that cluster under `name`; its
    configuration goes to a file, since routes have no command-line form
    that also names the server."""

    def __init__(self, store_dir: Path, name: str = "n1", cluster: list[int] | None = None):
        self.store_dir = Path(store_dir)
        self.name = name
        self.port = free_port()
        self.monitor_port = free_port()
        self.cluster_port = free_port()
        self.routes: list[int] = list(cluster or [])
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        """Its log (kept across restarts), for a failing test's post-mortem."""
        return self.store_dir.with_name(self.store_dir.name + ".log")

    def _config(self) -> Path:
        lines = [
            f"server_name: {self.name}",
            f"listen: 127.0.0.1:{self.port}",
            f"http: 127.0.0.1:{self.monitor_port}",
            f"log_file: {json.dumps(str(self.log_file))}",
            f"jetstream {{ store_dir: {json.dumps(str(self.store_dir))} }}",
        ]
        if self.routes:
            routes = ", ".join(f"nats-route://127.0.0.1:{p}" for p in self.routes)
            lines.append(
                f"cluster {{ name: uba-test, listen: 127.0.0.1:{self.cluster_port}, "
                f"routes: [{routes}] }}"
            )
        path = self.store_dir.with_name(self.store_dir.name + ".conf")
        path.write_text("\n".join(lines) + "\n")
        return path

    def start(self, timeout: float = 10.0) -> NatsServer:
        """Starts it (again: same ports, same store) and waits for its client port."""
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [NATS_SERVER, "-c", str(self._config())],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return self
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("nats-server did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self) -> None:
        """SIGKILL: no goodbye to its peers, nothing flushed."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def monitor(self, page: str) -> dict:
        """One of its monitoring pages: `jsz?...`, `connz`."""
        address = f"http://127.0.0.1:{self.monitor_port}/{page}"
        with urllib.request.urlopen(address, timeout=5) as answer:  # noqa: S310 - loopback
            return json.load(answer)


class NatsCluster:
    """Three (or `size`) nats-servers with JetStream forming one cluster
    on loopback ports."""

    def __init__(self, base: Path, size: int = 3):
        self.nodes = [NatsServer(Path(base) / f"n{i}", name=f"n{i}") for i in range(1, size + 1)]
        routes = [n.cluster_port for n in self.nodes]
        for node in self.nodes:
            node.routes = routes

    @property
    def url(self) -> str:
        """Every node, as `--event-log` takes them."""
        return "nats://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def start(self, timeout: float = 60.0) -> NatsCluster:
        try:
            for node in self.nodes:
                node.start()
            self.wait_for_meta_leader(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def node(self, name: str) -> NatsServer:
        return next(n for n in self.nodes if n.name == name)

    def _ask(self, page: str) -> list[tuple[NatsServer, dict]]:
        """A monitoring page of every running node that answers."""
        pages = []
        for node in self.nodes:
            if node.running:
                try:
                    pages.append((node, node.monitor(page)))
                except OSError:
                    pass
        return pages

    def meta_leader(self) -> str:
        """The JetStream meta leader's name every running node agrees on ('' if none)."""
        leaders = {(p.get("meta_cluster") or {}).get("leader", "") for _, p in self._ask("jsz")}
        return leaders.pop() if len(leaders) == 1 else ""

    def wait_for_meta_leader(self, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            leader = self.meta_leader()
            if leader:
                return leader
            time.sleep(0.2)
        raise RuntimeError("the JetStream cluster elected no meta leader")

    def streams(self, stream: str) -> dict[str, dict]:
        """Node name -> its /jsz detail of `stream` (state, cluster), for
        the running nodes that hold a replica."""
        found = {}
        for node, page in self._ask("jsz?accounts=true&streams=true"):
            for account in page.get("account_details") or ():
                for detail in account.get("stream_detail") or ():
                    if detail.get("name") == stream:
                        found[node.name] = detail
        return found

    def stream_leader(self, stream: str) -> str:
        """The node that leads `stream` now ('' during an election)."""
        for detail in self.streams(stream).values():
            leader = (detail.get("cluster") or {}).get("leader", "")
            if leader:
                return leader
        return ""

    def serving(self, client_name: str) -> set[str]:
        """The nodes a client named `client_name` is connected to."""
        return {
            node.name
            for node, page in self._ask("connz")
            if any(c.get("name") == client_name for c in page.get("connections") or ())
        }


class WorkerProcess(ChildProcess):
    """`python -m uba worker` with its own data dir."""

    def __init__(self, data_dir: Path, database_url: str, event_log: str, *extra: str):
        self.args = [
            sys.executable,
            "-m",
            "uba",
            "worker",
            "--data-dir",
            str(data_dir),
            "--database-url",
            database_url,
            "--event-log",
            event_log,
            *extra,
        ]
        self.proc: subprocess.Popen | None = None
        self.output: list[str] = []
        self.earlier_output: list[str] = []  # of the runs before a restart
        self.owner = ""

    def start(self, timeout: float = 30.0) -> WorkerProcess:
        """Starts it (again: `output` and `owned()` are of this run)."""
        self.earlier_output += self.output
        self.output = []
        env = {k: v for k, v in os.environ.items() if not k.startswith("UBA_")}
        self.owner = self._launch(self.args, env, _CONSUMING, timeout).group(1)
        return self

    def owned(self, what: str = "partition") -> set[int]:
        """The partitions of its last 'owns partitions' log line (`what`:
        "population partition" for the population inputs')."""
        owned: set[int] = set()
        for line in self.output:
            match = re.search(rf"owns {what}s \[([\d, ]*)\]", line)
            if match:
                owned = {int(p) for p in match.group(1).split(",") if p.strip()}
            match = re.search(rf"gave back {what} (\d+)", line)
            if match:
                owned.discard(int(match.group(1)))
        return owned


def kill_and_show(processes: list) -> None:
    """Kills front ends and workers at a test's end, then prints each one's
    log (pytest shows it when the test fails)."""
    for p in processes:
        p.kill()
    for p in processes:
        print(f"===== {type(p).__name__}\n{p.log()[-20000:]}")


def wait_until_split(workers: list[WorkerProcess], partitions: int, timeout: float = 60) -> None:
    """Waits until two workers own disjoint halves-or-so of every user
    partition and every population partition, all of them covered."""
    from support.waiting import wait_for

    def split(what: str) -> bool:
        a, b = (w.owned(what) for w in workers)
        return bool(a and b and not a & b and a | b == set(range(partitions)))

    wait_for(lambda: split("partition"), timeout, "the workers to share the user partitions")
    wait_for(
        lambda: split("population partition"),
        timeout,
        "the workers to share the population partitions",
    )


def log_settled(nats_url: str, workers: int) -> bool:
    """Whether the workers are done with what was published: the events
    and population streams are empty (work queues: a message leaves once
    its worker committed and acknowledged it), and each worker's reader of
    the aggregates stream has been sent everything in it."""
    import asyncio

    import nats
    import nats.js.errors

    async def ask() -> bool:
        nc = await nats.connect(nats_url, connect_timeout=5)
        try:
            js = nc.jetstream()
            for stream in ("UBA_EVENTS", "UBA_POPULATION"):
                if (await js.stream_info(stream)).state.messages:
                    return False
            try:
                last = (await js.stream_info("UBA_AGGREGATES")).state.last_seq
            except nats.js.errors.NotFoundError:
                return True  # nothing exchanged (a worker without aggregates)
            readers = [r for r in await js.consumers_info("UBA_AGGREGATES") if r.push_bound]
            return len(readers) >= workers and all(
                r.delivered.stream_seq >= last and not r.num_pending for r in readers
            )
        finally:
            await nc.close()

    return asyncio.run(ask())
