"""Idle stream subscribers against unary throughput.

In the suite: unary RecordActivity on the uba server (default
configuration) with no subscribers, then with 500 idle StreamAlerts
subscribers held open by another client process (their heartbeats and any
alerts included), then without again; the ratio says whether subscribers
starve unary calls.

Standalone, `--server-models` adds the study behind the server's design: a
minimal server with one unary method and one server-streaming method that
never sends, built three ways (thread pool with 16 and with 600 workers,
and grpc.aio), unary calls/s with no streams and with 500 streams open.
All async work of this process runs in ONE event loop (grpc.aio channels
must not outlive the loop they were created on; several asyncio.run calls
made grpc spam "Event loop is closed").

    .venv/bin/python bench/subscribers.py [--smoke] [--server-models] [--backends sqlite]
"""

from __future__ import annotations

import asyncio
import multiprocessing
import sys
import time
from concurrent import futures
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import median  # noqa: E402 - after the sys.path set-up
from report import Figure  # noqa: E402 - after the sys.path set-up

UNARY = "/bench.Bench/Unary"
FOLLOW = "/bench.Bench/Follow"


# -- the suite's section -------------------------------------------------------------------


def subscribers_section(ctx, services) -> None:
    from ingest import unary_chain

    p = ctx.p
    server = services["enhanced"]
    holder = ctx.workers[p.load_workers]  # not one of the load processes
    opened = {}

    def open_subscribers():
        opened.setdefault("runs", []).append(
            holder.call(
                "open_subscribers", address=server.address, key=server.api_key, count=p.subscribers
            )
        )

    def close_subscribers():
        opened.setdefault("closed", []).append(holder.call("close_subscribers"))

    load = dict(
        kind="record",
        address=server.address,
        key=server.api_key,
        concurrency=p.concurrency_per_worker,
        channels=2,
    )
    chain = unary_chain(
        ctx,
        dict(load, tag="nosub"),
        dict(load, tag="sub"),
        p.repeats,
        before=open_subscribers,
        after=close_subscribers,
        watch=(server,),
    )
    ctx.report.add(
        Figure(
            key="subscribers_500",
            backend=ctx.backend,
            value=chain["subject_per_s"],
            unit="events/s",
            baseline="the same unary ingest without subscribers",
            baseline_value=chain["baseline_per_s"],
            ratio=chain["ratio"],
            target="ratio >= 0.9",
            met=chain["ratio"] >= 0.9,
            note=f"{p.subscribers} subscribers; p99 {chain['subject_p99_ms']:.1f} ms vs "
            f"{chain['baseline_p99_ms']:.1f} ms without",
            details={
                **chain,
                "subscribers": p.subscribers,
                "open": opened,
                "server": "default configuration (enhanced), heartbeat every 15 s",
            },
        )
    )


# -- standalone: the choice of server model ----------------------------------------------------


def _sync_server(port_queue, workers: int) -> None:
    import threading

    import grpc

    def unary(request, context):
        return request

    def follow(request, context):
        done = threading.Event()
        context.add_callback(done.set)
        done.wait()
        return iter(())

    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers), maximum_concurrent_rpcs=None
    )
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "bench.Bench",
                {
                    "Unary": grpc.unary_unary_rpc_method_handler(unary),
                    "Follow": grpc.unary_stream_rpc_method_handler(follow),
                },
            ),
        )
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    port_queue.put(port)
    server.wait_for_termination()


def _aio_server(port_queue, _workers: int) -> None:
    import grpc

    async def main():
        async def unary(request, context):
            return request

        async def follow(request, context):
            await asyncio.Event().wait()
            yield b""

        server = grpc.aio.server()
        server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    "bench.Bench",
                    {
                        "Unary": grpc.unary_unary_rpc_method_handler(unary),
                        "Follow": grpc.unary_stream_rpc_method_handler(follow),
                    },
                ),
            )
        )
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        port_queue.put(port)
        await server.wait_for_termination()

    asyncio.run(main())


async def _unary_rate(address: str, calls: int, streams: int, concurrency: int) -> dict:
    import grpc

    async with grpc.aio.insecure_channel(address) as channel:
        unary = channel.unary_unary(UNARY)
        follow = channel.unary_stream(FOLLOW)
        open_streams = [follow(b"") for _ in range(streams)]
        await asyncio.sleep(1.0 if streams else 0)
        failed = done = 0
        next_index = 0

        async def worker():
            nonlocal failed, done, next_index
            while next_index < calls:
                next_index += 1
                try:
                    await unary(b"x" * 64, timeout=2)
                    done += 1
                except grpc.aio.AioRpcError:
                    failed += 1

        t0 = time.perf_counter()
        try:
            # Bounded in time: a starved server would otherwise take calls x 2 s.
            await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(concurrency))), 60)
        except TimeoutError:
            pass
        elapsed = time.perf_counter() - t0
        for s in open_streams:
            s.cancel()
        return {"calls_per_s": done / elapsed, "failed": failed}


async def server_models(streams: int, calls: int, concurrency: int) -> dict:
    """Every measurement of this study in the one event loop of the caller."""
    out = {}
    ctx = multiprocessing.get_context("spawn")
    for name, target, workers in (
        ("threadpool_16", _sync_server, 16),
        ("threadpool_600", _sync_server, 600),
        ("aio", _aio_server, 0),
    ):
        q = ctx.Queue()
        proc = ctx.Process(target=target, args=(q, workers), daemon=True)
        proc.start()
        address = f"127.0.0.1:{await asyncio.to_thread(q.get, True, 30)}"
        try:
            runs = [
                await _unary_rate(address, calls, 0, concurrency),
                await _unary_rate(address, calls, streams, concurrency),
                await _unary_rate(address, calls, 0, concurrency),
            ]
        finally:
            proc.kill()
            proc.join()
        base = (runs[0]["calls_per_s"] + runs[2]["calls_per_s"]) / 2
        out[name] = {
            "no_streams": [runs[0], runs[2]],
            "with_streams": runs[1],
            "ratio": runs[1]["calls_per_s"] / base if base else None,
        }
        print(
            f"  {name:16s} no streams {base:8.0f}/s   {streams} streams "
            f"{runs[1]['calls_per_s']:8.0f}/s ({runs[1]['failed']} timed out)   ratio "
            f"{out[name]['ratio']:.2f}",
            flush=True,
        )
    return out


def main(argv: list[str]) -> int:
    import json

    import suite

    models = "--server-models" in argv
    argv = [a for a in argv if a != "--server-models"]
    code = suite.main(argv, only={"subscribers"})
    if models:
        smoke = "--smoke" in argv
        print("server models (minimal handlers):")
        result = asyncio.run(server_models(20 if smoke else 500, 300 if smoke else 5000, 16))
        out = suite.ROOT / "bench" / "results"
        out.mkdir(parents=True, exist_ok=True)
        (out / "server-models.json").write_text(json.dumps(result, indent=2))
        print("median ratio", median(r["ratio"] for r in result.values()))
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
