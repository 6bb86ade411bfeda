"""Ingest benchmarks: unary RecordActivity against a no-op RPC on the same
server, and batch ingest (detection off, basic, enhanced) against a raw
bulk insert of the same rows with the database driver.

The servers of a backend (`ServiceSet`) are shared by the sections of the
suite: one with detection off, one in basic mode (also behind the Envoy
gateway), one in enhanced mode (the default configuration) with an
Isolation Forest trained on the personas' history.

Standalone (just these sections):

    .venv/bin/python bench/ingest.py [--smoke] [--backends sqlite,postgresql]
"""

from __future__ import annotations

import io
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402 - after the sys.path set-up
from common import Server, median, pct_ms  # noqa: E402 - after the sys.path set-up
from report import Figure  # noqa: E402 - after the sys.path set-up

# -- the servers of one backend --------------------------------------------------------


class ServiceSet:
    """Three servers on three fresh databases of one backend, each holding
    the personas' history (so baselines are mature), the enhanced one with
    a trained Isolation Forest."""

    def __init__(self, ctx):
        self.ctx = ctx
        dbs = ctx.dbs
        self.urls = {}
        servers = {}
        for name, kwargs in (
            ("off", dict(extra_args=["--disable-detection"])),
            ("basic", dict(detectors=common.ENHANCED_OFF, gateway=True)),
            ("enhanced", {}),
        ):
            url, data_dir = dbs.new(f"svc-{name}")
            self.urls[name] = (url, data_dir)
            servers[name] = Server(name, data_dir, url, **kwargs)
        common.start_all(list(servers.values()))
        self.servers = servers
        self.history_events = 0
        self.model = {}

    def __getitem__(self, name: str) -> Server:
        return self.servers[name]

    def prepare(self) -> None:
        """History into every server (one client process per server, in
        time order), the Isolation Forest trained, a warm-up block."""
        ctx = self.ctx
        spec = {"kind": "persona_history", "users": ctx.p.users}
        names = ["off", "basic", "enhanced"]
        t0 = time.monotonic()
        ctx.workers.all(
            "prepare_batches",
            [dict(address=self[n].address, key=self[n].api_key) for n in names],
            ctx.workers.workers[:3],
            spec=spec,
        )
        results = ctx.workers.all(
            "run_batches", workers=ctx.workers.workers[:3], start_at=time.monotonic(), concurrency=2
        )
        for n, r in zip(names, results, strict=True):
            if r["invalid"]:
                raise RuntimeError(f"history refused by {n}: {r['first_invalid']}")
        self.history_events = results[0]["accepted"]
        print(
            f"  history: {self.history_events} events of {ctx.p.users} personas into 3 servers in "
            f"{time.monotonic() - t0:.1f}s",
            flush=True,
        )
        self.model = self.train()
        for n in names:
            send_block(
                ctx,
                self[n],
                {
                    "kind": "persona_block",
                    "users": ctx.p.users,
                    "block": 0,
                    "count": ctx.p.warm_events,
                    "tag": f"warm-{n}",
                    "days_per_block": ctx.p.days_per_block,
                },
            )

    def train(self) -> dict:
        import grpc

        from uba.v1 import service_pb2, service_pb2_grpc

        server = self["enhanced"]
        with grpc.insecure_channel(server.address) as channel:
            stub = service_pb2_grpc.BehaviorAnalyticsServiceStub(channel)
            request = service_pb2.TrainModelRequest()
            request.start_time.FromDatetime(
                common.HISTORY_START.replace(tzinfo=UTC) - timedelta(days=1)
            )
            request.end_time.FromDatetime(
                common.HISTORY_END.replace(tzinfo=UTC) + timedelta(days=1)
            )
            t0 = time.monotonic()
            reply = stub.TrainModel(request, metadata=server.metadata, timeout=600)
        info = {
            "version": reply.version,
            "events": reply.event_count,
            "rows": reply.row_count,
            "threshold": reply.threshold,
            "training_seconds": reply.training_seconds,
            "rpc_seconds": time.monotonic() - t0,
        }
        print(
            f"  isolation forest trained on {reply.row_count} rows of {reply.event_count} events "
            f"in {info['rpc_seconds']:.1f}s",
            flush=True,
        )
        return info

    def stop(self) -> None:
        for s in self.servers.values():
            s.stop()


def send_block(ctx, server: Server, spec: dict, concurrency: int = 4) -> dict:
    """Sends a stream from ONE client process over one channel, `concurrency`
    batches in flight (so batches arrive in time order); returns events/s."""
    w = ctx.workers[0]
    w.call("prepare_batches", address=server.address, key=server.api_key, spec=spec)
    r = w.call("run_batches", start_at=time.monotonic(), concurrency=concurrency)
    if r["invalid"] or r["duplicate"]:
        raise RuntimeError(
            f"{server.name}: {r['invalid']} invalid, {r['duplicate']} duplicate: "
            f"{r['first_invalid']}"
        )
    elapsed = r["end"] - r["start"]
    return {
        "per_s": r["accepted"] / elapsed,
        "events": r["accepted"],
        "seconds": elapsed,
        "p50_ms": pct_ms(r["latencies"], 50),
        "p99_ms": pct_ms(r["latencies"], 99),
    }


# -- the raw-insert baseline --------------------------------------------------------------


class RawInserter:
    """The driver alone: the same rows into the same schema, no service.
    COPY on PostgreSQL (the fastest bulk path); executemany in one
    transaction per 1000 rows on SQLite, with the server's pragmas (WAL,
    synchronous=FULL)."""

    def __init__(self, ctx):
        from uba.storage.database import Database

        self.url, self.data_dir = ctx.dbs.new("raw")
        self.database = Database(common.Databases.url_of(self.url, self.data_dir))
        self.database.upgrade()
        self.backend = self.database.backend
        self.runs = 0
        self._rows_cache: dict[int, list[tuple]] = {}

    def rows(self, block_events) -> list[tuple]:
        from uba.storage.events import _row_values, to_us

        received = to_us(datetime.now(UTC))
        return [_row_values(e, received) for e in block_events]

    def insert(self, rows: list[tuple]) -> dict:
        from uba.storage.events import _copy_value, to_us
        from uba.storage.models import EVENT_INSERT_COLUMNS

        self.runs += 1
        suffix = f"~raw{self.runs}"
        rows = [(r[0] + suffix,) + r[1:] for r in rows]
        columns = ", ".join(EVENT_INSERT_COLUMNS)
        raw = self.database.engine.raw_connection()
        try:
            cur = raw.cursor()
            if self.backend == "postgresql":
                # The days' partitions exist before the clock starts, as a
                # server makes them ahead.
                from uba.storage.partitions import add_partitions

                add_partitions(cur, [r[3] for r in rows], to_us(datetime.now(UTC)))
                raw.commit()
            t0 = time.perf_counter()
            for i in range(0, len(rows), 1000):
                chunk = rows[i : i + 1000]
                if self.backend == "postgresql":
                    # The same two tables a server writes: the keys, then the events.
                    keys = "".join(f"{_copy_value(r[0])}\t{r[3]}\t{r[4]}\n" for r in chunk)
                    cur.copy_expert(
                        "COPY event_keys (event_id, occurred_at_us, received_at_us) FROM STDIN",
                        io.StringIO(keys),
                    )
                    text = "".join("\t".join(map(_copy_value, row)) + "\n" for row in chunk)
                    cur.copy_expert(f"COPY events ({columns}) FROM STDIN", io.StringIO(text))
                    raw.commit()
                else:
                    cur.execute("BEGIN IMMEDIATE")
                    cur.executemany(
                        f"INSERT INTO events ({columns}) VALUES "
                        f"({', '.join('?' * len(EVENT_INSERT_COLUMNS))})",
                        chunk,
                    )
                    cur.execute("COMMIT")
            elapsed = time.perf_counter() - t0
        finally:
            raw.close()
        return {"per_s": len(rows) / elapsed, "events": len(rows), "seconds": elapsed}

    def close(self) -> None:
        self.database.dispose()


# -- sections ---------------------------------------------------------------------------------


def batch_section(ctx, services: ServiceSet) -> None:
    """Per repeat: raw, off, raw, basic, raw, enhanced, raw; each block of
    persona events is the same rows for the raw insert and the servers."""
    p = ctx.p
    raw = RawInserter(ctx)
    try:
        history_rows = raw.rows(common.persona_history(p.users))
        raw.insert(history_rows)  # the same table size as the servers
        del history_rows
        modes = ("off", "basic", "enhanced")
        runs = {m: [] for m in ("raw",) + modes}
        ratios = {m: [] for m in modes}
        for r in range(p.repeats):
            block = r + 1
            events = common.persona_block(
                p.users, block, p.block_events, f"b{block}-raw", days_per_block=p.days_per_block
            )
            rows = raw.rows(events)
            del events
            before = raw.insert(rows)
            runs["raw"].append(before)
            for m in modes:
                spec = {
                    "kind": "persona_block",
                    "users": p.users,
                    "block": block,
                    "count": p.block_events,
                    "tag": f"b{block}-{m}",
                    "days_per_block": p.days_per_block,
                }
                subject = send_block(ctx, services[m], spec)
                after = raw.insert(rows)
                runs[m].append(subject)
                runs["raw"].append(after)
                ratios[m].append(subject["per_s"] / ((before["per_s"] + after["per_s"]) / 2))
                print(
                    f"    repeat {r + 1}: raw {before['per_s']:,.0f}/s, {m} "
                    f"{subject['per_s']:,.0f}/s, raw {after['per_s']:,.0f}/s",
                    flush=True,
                )
                before = after
    finally:
        raw.close()
    raw_rate = median(x["per_s"] for x in runs["raw"])
    raw_name = (
        "COPY (psycopg2)"
        if ctx.backend == "postgresql"
        else "executemany (sqlite3, WAL, synchronous=FULL)"
    )
    absolute = {"off": 30_000, "basic": 20_000}
    for m in modes:
        value = median(x["per_s"] for x in runs[m])
        target, met = "", None
        if m in absolute:
            target = f">= {absolute[m]:,}/s on PostgreSQL"
            met = value >= absolute[m] if ctx.backend == "postgresql" else None
        ctx.report.add(
            Figure(
                key=f"batch_detection_{m}",
                backend=ctx.backend,
                value=value,
                unit="events/s",
                baseline=f"raw bulk insert, {raw_name}",
                baseline_value=raw_rate,
                ratio=median(ratios[m]),
                target=target,
                met=met,
                details={
                    "runs": runs[m],
                    "raw_runs": runs["raw"],
                    "ratios": ratios[m],
                    "batch_p50_ms": median(x["p50_ms"] for x in runs[m]),
                    "batch_p99_ms": median(x["p99_ms"] for x in runs[m]),
                    "events_per_run": p.block_events,
                    "batch_size": 1000,
                    "in_flight": 4,
                    "stream": (
                        f"working days of {p.users} personas with mature baselines, in time order"
                    ),
                },
            )
        )
    section = ctx.report.section("Batch ingest", ctx.backend)
    enhanced_vs_basic = median(x["per_s"] for x in runs["enhanced"]) / median(
        x["per_s"] for x in runs["basic"]
    )
    section["markdown"] = (
        f"{p.block_events:,} events per run (batches of 1000, 4 in flight from one client "
        f"process), {p.repeats} repeat(s); the stream is ordinary working days of {p.users} "
        f"personas whose baselines are mature (history of {services.history_events:,} events "
        f"stored first), the same rows for the raw insert ({raw_name}). Enhanced mode (Isolation "
        f"Forest trained on {services.model.get('rows', 0):,} rows, plus the distribution-shift "
        f"tests) runs at {enhanced_vs_basic:.2f}x the basic rate: the end-to-end cost of the "
        "enhanced detectors inside the service."
    )
    section["model"] = services.model
    section["enhanced_vs_basic"] = enhanced_vs_basic


def unary_chain(
    ctx,
    baseline_load: dict,
    subject_load: dict,
    repeats: int,
    before=None,
    after=None,
    watch: tuple = (),
) -> dict:
    """baseline, subject, baseline, subject, baseline ... from all load
    workers at once; returns runs and per-repeat ratios."""
    p = ctx.p
    loaders = ctx.workers.workers[: p.load_workers]

    def run(load: dict) -> dict:
        load = dict(load)
        prepare = load.pop("prepare", "prepare_grpc")
        per = [dict(tag=f"{load.get('tag', 'u')}-{time.monotonic_ns()}") for _ in loaders]
        r = ctx.workers.load(
            prepare,
            loaders,
            per,
            p.warmup,
            p.duration,
            warm_calls=p.warm_calls,
            watch=watch,
            **{k: v for k, v in load.items() if k != "tag"},
        )
        if r["errors"]:
            print(f"    {r['errors']} errors: {r['first_error']}", flush=True)
        calls = max(r["count"], 1)
        return {
            "per_s": r["per_s"],
            "count": r["count"],
            "errors": r["errors"],
            "first_error": r["first_error"],
            "p50_ms": pct_ms(r["latencies"], 50),
            "p99_ms": pct_ms(r["latencies"], 99),
            "client_cpu_us_per_call": r["client_cpu_s"] / calls * 1e6,
            "server_cpu_us_per_call": [c / calls * 1e6 for c in r["server_cpu_s"]],
            "client_cpu_share": r["client_cpu_s"] / p.duration,
            "server_cpu_share": [c / p.duration for c in r["server_cpu_s"]],
            "machine_busy_cores": r["machine_busy_cores"],
        }

    base_runs, subj_runs, ratios = [run(baseline_load)], [], []
    for _ in range(repeats):
        if before:
            before()
        s = run(subject_load)
        if after:
            after()
        b = run(baseline_load)
        ratios.append(s["per_s"] / ((base_runs[-1]["per_s"] + b["per_s"]) / 2))
        print(
            f"    baseline {base_runs[-1]['per_s']:,.0f}/s, subject {s['per_s']:,.0f}/s, baseline "
            f"{b['per_s']:,.0f}/s",
            flush=True,
        )
        subj_runs.append(s)
        base_runs.append(b)
    return {
        "baseline": base_runs,
        "subject": subj_runs,
        "ratios": ratios,
        "baseline_per_s": median(x["per_s"] for x in base_runs),
        "subject_per_s": median(x["per_s"] for x in subj_runs),
        "ratio": median(ratios),
        "baseline_p50_ms": median(x["p50_ms"] for x in base_runs),
        "baseline_p99_ms": median(x["p99_ms"] for x in base_runs),
        "subject_p50_ms": median(x["p50_ms"] for x in subj_runs),
        "subject_p99_ms": median(x["p99_ms"] for x in subj_runs),
        "baseline_server_cpu_us_per_call": median(
            sum(x["server_cpu_us_per_call"]) for x in base_runs
        )
        if watch
        else None,
        "subject_server_cpu_us_per_call": median(
            sum(x["server_cpu_us_per_call"]) for x in subj_runs
        )
        if watch
        else None,
        "baseline_client_cpu_us_per_call": median(x["client_cpu_us_per_call"] for x in base_runs),
        "machine_busy_cores": median(x["machine_busy_cores"] for x in base_runs + subj_runs),
        "subject_client_cpu_us_per_call": median(x["client_cpu_us_per_call"] for x in subj_runs),
        "errors": sum(x["errors"] for x in base_runs + subj_runs),
    }


def unary_section(ctx, services: ServiceSet) -> None:
    """No-op (grpc.health.v1 Check) against RecordActivity on the same server."""
    p = ctx.p
    for key, name, label in (
        ("unary_record", "enhanced", "default configuration (enhanced detection)"),
        ("unary_record_detection_off", "off", "--disable-detection"),
    ):
        server = services[name]
        common_args = dict(
            address=server.address,
            key=server.api_key,
            concurrency=p.concurrency_per_worker,
            channels=2,
        )
        chain = unary_chain(
            ctx,
            dict(kind="health", tag="noop", **common_args),
            dict(kind="record", tag=f"unary-{name}", **common_args),
            p.repeats,
            watch=(server,),
        )
        ctx.report.add(
            Figure(
                key=key,
                backend=ctx.backend,
                value=chain["subject_per_s"],
                unit="events/s",
                baseline="no-op RPC (grpc.health.v1 Check) on the same server",
                baseline_value=chain["baseline_per_s"],
                baseline_unit="calls/s",
                ratio=chain["ratio"],
                target="ratio >= 0.7",
                met=chain["ratio"] >= 0.7,
                note=(
                    f"p50 {chain['subject_p50_ms']:.1f} ms, p99 {chain['subject_p99_ms']:.1f} ms; "
                    f"no-op p50 {chain['baseline_p50_ms']:.1f} ms, p99 "
                    f"{chain['baseline_p99_ms']:.1f} ms; server CPU "
                    f"{chain['subject_server_cpu_us_per_call']:.0f} us/call vs "
                    f"{chain['baseline_server_cpu_us_per_call']:.0f} us for the no-op, clients "
                    f"{chain['subject_client_cpu_us_per_call']:.0f} vs "
                    f"{chain['baseline_client_cpu_us_per_call']:.0f} us"
                ),
                details={
                    **chain,
                    "server": label,
                    "in_flight": p.concurrency_per_worker * p.load_workers,
                    "client_processes": p.load_workers,
                    "window_s": p.duration,
                    "events": "API calls of 5000 users, each call another user",
                },
            )
        )


if __name__ == "__main__":
    import suite

    sys.exit(suite.main(sys.argv[1:], only={"batch", "unary"}))
