"""Multi-core: one Python process uses one core for its Python work (the
GIL), so the way to more cores is more processes. The server sets
SO_REUSEPORT: several `uba serve` processes listen on one fixed port and
share one PostgreSQL database; the kernel spreads new connections over
them. This section measures 1 process, then 2, then 1 again, with the load
from separate client processes (many connections each, so the kernel has
something to spread).

    .venv/bin/python bench/multicore.py [--smoke]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402 - after the sys.path set-up
import loadgen  # noqa: E402 - after the sys.path set-up
from common import Server, median, pct_ms  # noqa: E402 - after the sys.path set-up
from report import Figure  # noqa: E402 - after the sys.path set-up


def multicore_section(ctx) -> None:
    p = ctx.p
    url, data_dir = ctx.dbs.new("multicore")
    port = common.free_port()
    listen = f"127.0.0.1:{port}"
    first = Server(
        "mc-a", data_dir / "a", url, listen=listen, detectors=common.ENHANCED_OFF
    ).start()
    loaders = ctx.workers.workers[: p.load_workers]
    second: list[Server] = []
    cpu: dict[str, list] = {"unary": [], "batch": []}
    counter = iter(range(1 << 30))
    usage: dict[str, dict] = {}

    def start_second() -> None:
        s = Server(
            "mc-b",
            data_dir / "b",
            url,
            listen=listen,
            detectors=common.ENHANCED_OFF,
            api_key=first.api_key,
        ).start()
        second.append(s)

    def stop_second() -> None:
        second.pop().stop()

    def cpu_now() -> list[float]:
        return [s.cpu_seconds() for s in [first] + second]

    def unary() -> dict:
        r = ctx.workers.load(
            "prepare_grpc",
            loaders,
            [dict(tag=f"mc{next(counter)}") for _ in loaders],
            p.warmup,
            p.duration,
            warm_calls=p.warm_calls,
            address=listen,
            key=first.api_key,
            kind="record",
            concurrency=p.mc_concurrency,
            channels=p.mc_channels,
            users=100_000,
            watch=[first] + second,
        )
        spent = r["server_cpu_s"]
        cpu["unary"].append(spent)
        return {
            "per_s": r["per_s"],
            "p50_ms": pct_ms(r["latencies"], 50),
            "p99_ms": pct_ms(r["latencies"], 99),
            "errors": r["errors"],
            "server_cpu_s": spent,
            "seconds": p.duration,
            "client_cpu_s": r["client_cpu_s"],
            "machine_busy_cores": r["machine_busy_cores"],
        }

    def batch() -> dict:
        n = next(counter)
        per = p.mc_batch_events // len(loaders)
        # Each client its own users: two processes then rarely wait for each
        # other's row locks on the same baselines.
        specs = [
            dict(
                spec=loadgen.api_spec(
                    f"mcb{n}-{i}",
                    (n * len(loaders) + i) * per,
                    (n * len(loaders) + i + 1) * per,
                    100_000,
                    common.datetime.now(common.UTC) - common.timedelta(minutes=1),
                )
            )
            for i in range(len(loaders))
        ]
        ctx.workers.all(
            "prepare_batches",
            specs,
            loaders,
            address=listen,
            key=first.api_key,
            channels=p.mc_channels,
        )
        before = cpu_now()
        client_before = [w.cpu_seconds() for w in loaders]
        busy_before = loadgen.machine_busy_seconds()
        results = ctx.workers.all(
            "run_batches", workers=loaders, start_at=time.monotonic() + 0.05, concurrency=4
        )
        spent = [a - b for a, b in zip(cpu_now(), before, strict=True)]
        client = sum(w.cpu_seconds() for w in loaders) - sum(client_before)
        busy = loadgen.machine_busy_seconds() - busy_before
        cpu["batch"].append(spent)
        accepted = sum(r["accepted"] for r in results)
        elapsed = max(r["end"] for r in results) - min(r["start"] for r in results)
        return {
            "per_s": accepted / elapsed,
            "events": accepted,
            "seconds": elapsed,
            "server_cpu_s": spent,
            "client_cpu_s": client,
            "machine_busy_cores": busy / elapsed,
        }

    try:
        for key, fn, unit in (
            ("multicore_unary", unary, "events/s"),
            ("multicore_batch", batch, "events/s"),
        ):
            one, two, ratios = [fn()], [], []
            for _ in range(p.repeats):
                start_second()
                try:
                    s = fn()
                finally:
                    stop_second()
                b = fn()
                ratios.append(s["per_s"] / ((one[-1]["per_s"] + b["per_s"]) / 2))
                print(
                    f"    1 process {one[-1]['per_s']:,.0f}/s, 2 processes {s['per_s']:,.0f}/s "
                    f"(server CPU s {', '.join(f'{c:.1f}' for c in s['server_cpu_s'])}), "
                    f"1 process {b['per_s']:,.0f}/s",
                    flush=True,
                )
                two.append(s)
                one.append(b)
            split = median(min(r["server_cpu_s"]) / max(sum(r["server_cpu_s"]), 1e-9) for r in two)
            cores = {
                "one_server": median(sum(r["server_cpu_s"]) / r["seconds"] for r in one),
                "two_servers": median(sum(r["server_cpu_s"]) / r["seconds"] for r in two),
                "clients_one": median(r["client_cpu_s"] / r["seconds"] for r in one),
                "clients_two": median(r["client_cpu_s"] / r["seconds"] for r in two),
                "machine_one": median(r["machine_busy_cores"] for r in one),
                "machine_two": median(r["machine_busy_cores"] for r in two),
            }
            usage[key] = cores
            ctx.report.add(
                Figure(
                    key=key,
                    backend="postgresql",
                    value=median(x["per_s"] for x in two),
                    unit=unit,
                    baseline="1 uba process, same load",
                    baseline_value=median(x["per_s"] for x in one),
                    ratio=median(ratios),
                    target="stated (2-core machine)",
                    met=None,
                    note=(
                        f"the less busy process did {split:.0%} of the server CPU work; server "
                        f"processes used {cores['two_servers']:.2f} cores (one process: "
                        f"{cores['one_server']:.2f}), clients {cores['clients_two']:.2f}"
                    ),
                    details={
                        "two": two,
                        "one": one,
                        "ratios": ratios,
                        "port": port,
                        "client_processes": len(loaders),
                        "connections_per_client": p.mc_channels,
                        "in_flight": (p.mc_concurrency if key == "multicore_unary" else 4)
                        * len(loaders),
                        "detection": "basic",
                        "users": 100_000,
                        "cores_used": cores,
                    },
                )
            )
    finally:
        for s in second:
            s.stop()
        first.stop()
    ctx.report.section("Multi-core", "postgresql")["markdown"] = (
        f"Two `uba serve` processes on 127.0.0.1:{port} (SO_REUSEPORT) and one PostgreSQL "
        f"database, basic detection, against one process; load from {len(loaders)} client "
        f"processes with {p.mc_channels} connections each (the kernel assigns each new connection "
        f"to one of the listening processes). This machine has {ctx.report.machine['cores']} cores "
        "shared by the server processes, PostgreSQL, the client processes and other work, so two "
        "server processes can at best add what the second core has left; on a machine with more "
        "cores than server processes the same test shows the real scaling. CPU in cores (CPU "
        "seconds per second of the run): "
        + "; ".join(
            f"{k.replace('multicore_', '')}: 1 server {u['one_server']:.2f} + clients "
            f"{u['clients_one']:.2f} (whole machine busy {u['machine_one']:.2f}), 2 servers "
            f"{u['two_servers']:.2f} + clients {u['clients_two']:.2f} (machine "
            f"{u['machine_two']:.2f})"
            for k, u in usage.items()
        )
        + f" of {ctx.report.machine['cores']}; the rest of the machine's busy time is PostgreSQL, "
        "the kernel and other work on this shared machine."
    )


if __name__ == "__main__":
    import suite

    sys.exit(suite.main(sys.argv[1:], only={"multicore"}))
