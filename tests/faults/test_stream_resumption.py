"""Fault: alert subscribers lose their connection again and again while
alerts keep coming: the server restarts, the gateway (Envoy) restarts, and
a TCP proxy resets every connection every second. Each subscriber resumes
from the last seq it saw. Gaps: 0; duplicates delivered: 0."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

from support.ports import free_port
from support.scale import scaled, scaled_timeout
from support.server import ServerProcess
from support.tcp_proxy import TcpProxy

from uba.gateway import GatewayProcess
from uba.v1 import events_pb2
from uba_client import UbaClient

ALERTS = scaled(40)
# The gateway and the server restart at these alerts.
GATEWAY_RESTART_AT = ALERTS * 3 // 8
SERVER_RESTART_AT = ALERTS * 5 // 8

pytestmark = scaled_timeout(300)


def test_subscribers_resume_without_gap_through_restarts_and_resets(tmp_path):
    listen = f"127.0.0.1:{free_port()}"
    gateway_listen = f"127.0.0.1:{free_port()}"
    server = ServerProcess(
        tmp_path / "data", listen=listen, extra_args=["--heartbeat-interval", "0.5"]
    ).start()
    key = getattr(server, "api_key", "") or None
    gateway = GatewayProcess(listen, gateway_listen, work_dir=tmp_path / "gw").start().wait_ready()
    proxy = TcpProxy(listen)

    received: dict[str, list[int]] = {"proxy": [], "gateway": []}
    followers = {}

    def follow(name: str, address: str) -> None:
        client = UbaClient(address, api_key=key, timeout=5)
        follower = followers[name] = client.follow_alerts(idle_timeout=3)
        for alert in follower:
            received[name].append(alert.seq)

    threads = [
        threading.Thread(target=follow, args=(name, address), daemon=True)
        for name, address in (("proxy", proxy.address), ("gateway", gateway_listen))
    ]
    for t in threads:
        t.start()
    time.sleep(1.5)

    writer = UbaClient(listen, api_key=key, timeout=5)
    now = datetime.now(UTC)
    try:
        for n in range(ALERTS):
            burst = []
            for i in range(10):
                m = events_pb2.ActivityEvent(
                    user_id=f"resume-{n}",
                    type=events_pb2.ACTIVITY_TYPE_LOGIN_FAILURE,
                    source_ip=f"203.0.{113 + n // 250}.{n % 250 + 1}",
                )  # no spraying
                m.occurred_at.FromDatetime(now - timedelta(seconds=60 - i))
                burst.append(m)
            writer.record_batch(burst)
            time.sleep(0.1)
            if n % 4 == 3:
                proxy.reset_all()
            if n == GATEWAY_RESTART_AT:
                gateway.stop()
                gateway = (
                    GatewayProcess(listen, gateway_listen, work_dir=tmp_path / "gw2")
                    .start()
                    .wait_ready()
                )
            if n == SERVER_RESTART_AT:  # graceful: streams end with UNAVAILABLE
                server.stop()
                server = (
                    ServerProcess(
                        tmp_path / "data",
                        listen=listen,
                        api_key=key or "",
                        extra_args=["--heartbeat-interval", "0.5"],
                    ).start()
                    if key
                    else ServerProcess(
                        tmp_path / "data", listen=listen, extra_args=["--heartbeat-interval", "0.5"]
                    ).start()
                )
        expected = sorted(a.seq for a in writer.iter_alerts())
        assert len(expected) == ALERTS
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(len(r) < ALERTS for r in received.values()):
            time.sleep(0.2)
        for name, seqs in received.items():
            assert seqs == expected, (name, seqs, expected)  # no gap, no duplicate, in order
        print(
            f"\n{ALERTS} alerts through 1 server restart, 1 gateway restart and {proxy.resets} "
            "connection resets: 0 gaps, 0 duplicates; reconnects: proxy "
            f"{followers['proxy'].reconnects}, gateway {followers['gateway'].reconnects}"
        )
        assert proxy.resets >= 10
        assert followers["proxy"].reconnects >= 3 and followers["gateway"].reconnects >= 2
    finally:
        for follower in followers.values():
            follower.close()
        writer.close()
        proxy.close()
        gateway.stop()
        server.stop()
