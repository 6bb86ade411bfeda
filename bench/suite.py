"""The benchmark suite: speed, cost and scale of uba on SQLite and
PostgreSQL, each figure beside a baseline measured in the same run.

    make bench                                  # the default run (about 20-30 minutes)
    .venv/bin/python bench/suite.py --smoke     # tiny sizes, checks that everything runs
    .venv/bin/python bench/suite.py --max-events 10000000   # growth up to ten million events
    .venv/bin/python bench/suite.py --only unary,batch --backends postgresql

Writes bench/results/report.json (every figure and its runs),
bench/results/report.md (the table, the curves, the notes) and PNG plots
beside them; a smoke or partial run (--smoke, --only, the section scripts)
writes to a subdirectory (bench/results/smoke-..., bench/results/unary-batch
...) unless --out says otherwise, so it never overwrites the full report.

Not a test: nothing here asserts a timing; the smoke run in
tests/test_bench_smoke.py only checks that every figure is reported.

How it measures: real `uba serve` processes (tests/support's way: real
ports, real databases), load from separate client processes (bench/loadgen.py,
one event loop each), every comparison interleaved (baseline, subject,
baseline again, ...) and the median of the repeats reported, because the
machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402 - after the sys.path set-up
from common import ROOT  # noqa: E402 - after the sys.path set-up
from report import Report, expected_keys  # noqa: E402 - after the sys.path set-up

SECTIONS = (
    "batch",
    "unary",
    "subscribers",
    "alerts",
    "export",
    "rest",
    "memory",
    "startup",
    "growth",
    "isolation_forest",
    "multicore",
    "users",
    "eventlog",
)
SERVICE_SECTIONS = {"batch", "unary", "subscribers", "alerts", "export", "rest", "memory"}


@dataclass
class Params:
    repeats: int = 3
    duration: float = 4.0  # seconds counted per unary run
    warmup: float = 0.5  # seconds not counted before them
    warm_calls: int = 5  # sequential calls per connection before a load starts
    load_workers: int = 2  # client processes making the load
    concurrency_per_worker: int = 16  # unary calls in flight per client process
    users: int = 60  # personas with mature baselines (batch ingest, detection)
    block_events: int = 40_000  # events per batch-ingest run
    warm_events: int = 2_000
    days_per_block: int = 0
    alert_bursts: int = 200
    load_seconds: float = 15.0  # alert latency under load: at most this long
    subscribers: int = 500
    startup_repeats: int = 3
    baseline_users: int = 1000
    if_users: int = 20
    if_events: int = 20_000
    growth_sizes: list[int] = field(
        default_factory=lambda: [10_000, 30_000, 100_000, 300_000, 1_000_000]
    )
    growth_chunk: int = 100_000
    growth_calls: int = 9
    growth_incident_calls: int = 15  # per ListIncidents filter, taking turns
    growth_dash_calls: int = 5
    mc_concurrency: int = 32
    mc_channels: int = 8
    mc_batch_events: int = 40_000
    # bench/users.py: (distinct users, events per user), events per chunk,
    # the two --cached-users values, users in the per-structure breakdown.
    users_plan: list[tuple[int, int]] = field(
        default_factory=lambda: [(1_000, 20), (10_000, 5), (100_000, 3), (1_000_000, 1)]
    )
    users_chunk: int = 100_000
    users_cached: tuple[int, int] = (10_000, 40_000)
    # (users, events per user, (--cached-users below them, above them))
    users_warm: tuple[int, int, tuple[int, int]] = (100_000, 3, (20_000, 120_000))
    users_structure_users: int = 3_000
    log_markers: int = 60  # bench/eventlog.py: marker events of the visible-lag figure
    log_lag_window: float = 20.0  # seconds of steady load while markers go through the log

    @classmethod
    def smoke(cls) -> Params:
        return cls(
            repeats=1,
            duration=0.3,
            warmup=0.1,
            warm_calls=1,
            concurrency_per_worker=4,
            users=3,
            block_events=1200,
            warm_events=200,
            alert_bursts=5,
            load_seconds=1.0,
            subscribers=20,
            startup_repeats=0,
            baseline_users=30,
            if_users=3,
            if_events=1500,
            growth_sizes=[2_000, 5_000],
            growth_chunk=5_000,
            growth_calls=2,
            growth_incident_calls=2,
            growth_dash_calls=2,
            mc_concurrency=4,
            mc_channels=2,
            mc_batch_events=2_000,
            users_plan=[(400, 2)],
            users_chunk=1_000,
            users_cached=(100, 300),
            users_warm=(400, 2, (100, 500)),
            users_structure_users=100,
            log_markers=5,
            log_lag_window=3.0,
        )


def growth_sizes(max_events: int) -> list[int]:
    sizes, n = [], 10_000
    while n < max_events:
        sizes.append(n)
        n = n * 3 if str(n)[0] == "1" else n * 10 // 3
    return sizes + [max_events]


class Ctx:
    def __init__(self, args, p: Params, report: Report, workers):
        self.args = args
        self.p = p
        self.report = report
        self.workers = workers
        self.backend = ""
        self.dbs: common.Databases | None = None
        self.backends: list[str] = []


def _run(ctx: Ctx, name: str, fn, *args) -> None:
    """Runs one section; a failing section is reported, not fatal."""
    print(f"== {name} [{ctx.backend or 'any'}]", flush=True)
    t0 = time.monotonic()
    try:
        fn(*args)
    except Exception:  # noqa: BLE001 - the rest of the suite still runs
        text = traceback.format_exc()
        print(text, file=sys.stderr, flush=True)
        ctx.report.notes.append(
            f"section {name} [{ctx.backend or 'any'}] failed: {text.strip().splitlines()[-1]}"
        )
        ctx.report.section("Failures", ctx.backend or "any").setdefault("errors", []).append(text)
    ctx.report.section("Timings", ctx.backend or "any")[name] = round(time.monotonic() - t0, 1)
    print(f"   {name} took {time.monotonic() - t0:.0f}s", flush=True)


def run_backend(ctx: Ctx, backend: str, sections: set[str]) -> None:
    import api
    import detection
    import growth
    import ingest
    import subscribers

    ctx.backend = backend
    with tempfile.TemporaryDirectory(prefix=f"uba-bench-{backend}-") as tmp:
        ctx.dbs = common.Databases(backend, Path(tmp))
        try:
            if sections & SERVICE_SECTIONS:
                services = None
                print(
                    f"== servers [{backend}]: detection off, basic (+ gateway), enhanced",
                    flush=True,
                )
                services = ingest.ServiceSet(ctx)
                try:
                    services.prepare()
                    if "batch" in sections:
                        _run(ctx, "batch", ingest.batch_section, ctx, services)
                        ctx.report.section("Server memory", backend)["after_batch"] = {
                            n: services[n].memory_mb() for n in ("off", "basic", "enhanced")
                        }
                    if "unary" in sections:
                        _run(ctx, "unary", ingest.unary_section, ctx, services)
                    if "subscribers" in sections:
                        _run(ctx, "subscribers", subscribers.subscribers_section, ctx, services)
                    if "alerts" in sections:
                        _run(ctx, "alerts", detection.alert_latency_section, ctx, services)
                    if "export" in sections:
                        _run(ctx, "export", api.export_section, ctx, services)
                    if "rest" in sections:
                        _run(ctx, "rest", api.rest_section, ctx, services)
                    if "memory" in sections:
                        _run(
                            ctx, "baseline_stored", detection.baseline_stored_section, ctx, services
                        )
                    mem = {n: services[n].memory_mb() for n in ("off", "basic", "enhanced")}
                    ctx.report.section("Server memory", backend)["at_end"] = mem
                finally:
                    services.stop()
            if "startup" in sections:
                _run(ctx, "startup", detection.startup_section, ctx)
            if "growth" in sections:
                _run(ctx, "growth", growth.growth_section, ctx)
            if "multicore" in sections and backend == "postgresql":
                import multicore

                _run(ctx, "multicore", multicore.multicore_section, ctx)
            if "eventlog" in sections and backend == "postgresql":
                import eventlog

                _run(ctx, "eventlog", eventlog.eventlog_section, ctx)
        finally:
            ctx.dbs.drop_all()
    ctx.backend = ""


def main(argv: list[str] | None = None, only: set[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="tiny sizes: checks that everything runs (about 3 min on 2 cores)",
    )
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument(
        "--only", default="", help="comma-separated sections: " + ", ".join(SECTIONS)
    )
    parser.add_argument(
        "--max-events",
        type=int,
        default=0,
        help="largest store of the growth curve (default 1,000,000; up to 10,000,000)",
    )
    parser.add_argument(
        "--repeats", type=int, default=0, help="interleaved repeats of each comparison"
    )
    parser.add_argument(
        "--out",
        default="",
        help="where the report goes (default bench/results; a smoke or "
        "partial run goes to a subdirectory, so it never overwrites the full report)",
    )
    args = parser.parse_args(argv)

    p = Params.smoke() if args.smoke else Params()
    if args.repeats:
        p.repeats = args.repeats
    if args.max_events:
        p.growth_sizes = growth_sizes(args.max_events)
    p.days_per_block = common.block_days(p.users, p.block_events)
    sections = set(args.only.split(",")) if args.only else set(only or SECTIONS)
    unknown = sections - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; choose from {', '.join(SECTIONS)}")
    if not args.out:
        results = ROOT / "bench" / "results"
        partial = sections != set(SECTIONS)
        name = ("smoke-" if args.smoke else "") + (
            "-".join(s for s in SECTIONS if s in sections) if partial else ""
        )
        args.out = str(results / name.rstrip("-") if name else results)
    backends = [b for b in args.backends.split(",") if b]
    if "postgresql" in backends and common.postgres.available():
        why = common.postgres.available()
        print(f"bench: PostgreSQL not available ({why}); running SQLite only", file=sys.stderr)
        backends.remove("postgresql")

    import loadgen

    machine = common.machine_info()
    command = "bench/suite.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])
    )
    sizes_text = (
        f"{'smoke run (tiny sizes, figures meaningless); ' if args.smoke else ''}{p.repeats} "
        f"interleaved repeat(s); unary windows {p.duration:g} s after {p.warmup:g} s warm-up, "
        f"{p.concurrency_per_worker} calls in flight per client process x {p.load_workers} "
        f"processes; batch runs of {p.block_events:,} events; growth sizes "
        f"{', '.join(f'{s:,}' for s in p.growth_sizes)} events; backends {', '.join(backends)}; "
        f"sections {', '.join(s for s in SECTIONS if s in sections)}."
    )
    report = Report(
        Path(args.out),
        machine,
        {
            "command": command.strip(),
            "smoke": args.smoke,
            "sizes_text": sizes_text,
            **vars(p),
            "backends": backends,
            "sections": sorted(sections),
        },
    )
    print(
        f"bench: {machine['cores']} cores, {machine['cpu_model']}, {machine['memory_gb']} GB; "
        f"backends {backends}; sections {sorted(sections)}",
        flush=True,
    )
    workers = loadgen.Workers(p.load_workers + 1)
    ctx = Ctx(args, p, report, workers)
    ctx.backends = backends
    try:
        for backend in backends:
            run_backend(ctx, backend, sections)
        if "users" in sections:
            import users

            _run(ctx, "users", users.users_section, ctx)
        if "isolation_forest" in sections:
            import detection

            _run(ctx, "isolation_forest", detection.isolation_forest_section, ctx)
            _run(ctx, "engine_cost", detection.engine_cost_section, ctx)
        if "memory" in sections:
            import detection

            _run(ctx, "baseline_memory", detection.baseline_memory_section, ctx)
    finally:
        workers.close()
        machine["load_average_at_end"] = os.getloadavg()
        machine["code_at_end"] = common.code_version()
        if machine["code_at_end"] != machine["code_at_start"]:
            report.notes.append(
                f"The server code changed during this run (from {machine['code_at_start']} to "
                f"{machine['code_at_end']}): servers started after the change ran the new code; "
                "figures of different sections may come from different code."
            )
        missing = [
            f"{k} [{b}]"
            for k, b in expected_keys(backends)
            if _wanted(k, sections)
            and not any(f.key == k and f.backend == b for f in report.figures)
        ]
        if missing:
            report.notes.append("figures missing (see the failures above): " + ", ".join(missing))
        report.write()
    print(f"bench: report in {report.out / 'report.md'}", flush=True)
    return 1 if missing else 0


def _wanted(key: str, sections: set[str]) -> bool:
    """Whether the figure `key` comes from one of the sections that ran."""
    owner = {
        "unary_record": "unary",
        "unary_record_detection_off": "unary",
        "batch_detection_off": "batch",
        "batch_detection_basic": "batch",
        "batch_detection_enhanced": "batch",
        "alert_latency_idle": "alerts",
        "alert_latency_under_load": "alerts",
        "subscribers_500": "subscribers",
        "export_csv": "export",
        "export_ndjson": "export",
        "rest_record_activity": "rest",
        "rest_get_dashboard": "rest",
        "isolation_forest_scoring": "isolation_forest",
        "baseline_memory": "memory",
        "baseline_stored": "memory",
        "startup_basic": "startup",
        "startup_enhanced": "startup",
    }.get(key) or (
        "growth"
        if key.startswith("growth_")
        else "multicore"
        if key.startswith("multicore_")
        else "users"
        if key.startswith("users_")
        else "eventlog"
        if key.startswith("eventlog_")
        else ""
    )
    return owner in sections


if __name__ == "__main__":
    sys.exit(main())
