"""The gateway as an operator runs it: Envoy and the server live and die
together (so a supervisor can restart them), and Envoy's admin interface is
reachable only by the account that runs it.

What a user relies on: a killed Envoy makes `uba serve` (and `uba gateway`)
exit non-zero with a log line naming it, instead of leaving the REST side
down with nobody told; a killed server leaves no Envoy behind answering 503;
no TCP port offers /quitquitquit.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time

import pytest
from support.ports import free_port
from support.server import ServerProcess

from gateway.fake_upstream import FakeUpstream
from gateway.gateway_support import envoy_child, is_running, listening_tcp_ports, start_gateway

pytestmark = pytest.mark.timeout(180)


def _gateway_address(server: ServerProcess, deadline_s: float = 60.0) -> str:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        match = re.search(r"gateway on https?://(\S+)", server.log())
        if match:
            return match.group(1)
        assert server.proc.poll() is None, "server exited:\n" + server.log()
        time.sleep(0.1)
    raise AssertionError("gateway did not start:\n" + server.log())


def _refuses_connections(address: str) -> bool:
    host, port = address.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
    except OSError:
        return True
    return False


def test_serve_exits_non_zero_when_its_envoy_is_killed(tmp_path):
    server = ServerProcess(
        tmp_path / "data", extra_args=["--gateway-listen", "127.0.0.1:0"]
    ).start()
    try:
        _gateway_address(server)
        envoy = envoy_child(server.proc.pid)
        os.kill(envoy, signal.SIGKILL)
        # Promptly, not at the next request: generous for a busy machine.
        code = server.proc.wait(timeout=60)
    finally:
        server.kill()
    assert code != 0, server.log()
    log = server.log()
    assert re.search(
        rf"gateway \(envoy, pid {envoy}\) exited unexpectedly \(killed by SIGKILL\)", log
    ), log
    # The server itself stopped cleanly (detector state saved, storage closed).
    assert "Traceback" not in log, log


def test_envoy_does_not_outlive_a_killed_server(tmp_path):
    server = ServerProcess(
        tmp_path / "data", extra_args=["--gateway-listen", "127.0.0.1:0"]
    ).start()
    try:
        address = _gateway_address(server)
        envoy = envoy_child(server.proc.pid)
        assert not _refuses_connections(address)
        server.proc.send_signal(signal.SIGKILL)  # as a segfault would end it
        server.proc.wait(timeout=30)
        deadline = time.monotonic() + 15
        while is_running(envoy) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not is_running(envoy), "envoy outlived the server that started it"
        assert _refuses_connections(address)
    finally:
        server.kill()


def _uba_gateway(*args: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("UBA_")}
    return subprocess.Popen(
        [sys.executable, "-m", "uba", "gateway", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM])
def test_standalone_gateway_exits_non_zero_when_envoy_dies(tmp_path, signum):
    """Envoy killed, or stopped by someone else (it exits 0 on SIGTERM):
    either way the gateway is down, and `uba gateway` must say so."""
    with FakeUpstream() as upstream:
        proc = _uba_gateway(
            "--upstream", upstream.address, "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path)
        )
        try:
            deadline = time.monotonic() + 60
            line = ""
            while "listening on" not in line:
                assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read()
                line = proc.stdout.readline()
            envoy = envoy_child(proc.pid)
            os.kill(envoy, signum)
            code = proc.wait(timeout=60)
            err = proc.stderr.read()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert code != 0
    assert f"envoy (pid {envoy}) exited unexpectedly" in err, err


def test_admin_interface_is_an_owner_only_socket_and_no_tcp_port(tmp_path):
    with FakeUpstream() as upstream:
        gateway = start_gateway(upstream.address, tmp_path / "gateway")
        try:
            listen_port = int(gateway.listen_address.rsplit(":", 1)[1])
            # The listener is Envoy's only TCP port: no admin port to POST /quitquitquit to.
            assert listening_tcp_ports(gateway.process.pid) == {listen_port}
            mode = os.stat(gateway.admin_socket).st_mode
            assert stat.S_ISSOCK(mode)
            assert stat.S_IMODE(mode) == 0o600
            assert gateway.admin_socket.parent == tmp_path / "gateway"
            # The launcher itself uses the socket.
            assert gateway.admin_get("/ready").strip() == "LIVE"
        finally:
            assert gateway.stop() == 0


@pytest.mark.parametrize(
    "listen, gateway_listen, flag",
    [
        ("127.0.0.1:0", "0.0.0.0:0", "--gateway-listen"),
        ("0.0.0.0:0", "127.0.0.1:0", "--listen"),
    ],
)
def test_anonymous_mode_is_refused_unless_every_listener_is_loopback(
    tmp_path, listen, gateway_listen, flag
):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "uba",
            "serve",
            "--allow-anonymous",
            "--listen",
            listen,
            "--gateway-listen",
            gateway_listen,
            "--data-dir",
            str(tmp_path / "data"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith("UBA_")},
    )
    assert result.returncode != 0, result.stdout
    assert f"--allow-anonymous is refused with {flag}" in result.stderr, result.stderr
    assert "listening on" not in result.stdout


def test_anonymous_mode_with_loopback_listeners_still_starts(tmp_path):
    server = ServerProcess(
        tmp_path / "data", extra_args=["--gateway-listen", "127.0.0.1:0"], anonymous=True
    ).start()
    try:
        _gateway_address(server)
    finally:
        assert server.stop() == 0


def test_ctrl_c_in_a_terminal_is_a_clean_stop_not_a_gateway_death(tmp_path):
    """SIGINT to the whole foreground process group, as a terminal sends
    it: `uba serve` stops its Envoy itself and exits 0, reporting no death."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("UBA_")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uba",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--gateway-listen",
            "127.0.0.1:0",
            "--data-dir",
            str(tmp_path / "data"),
            "--grace-period",
            "2",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,
    )
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 60
        while not any("gateway on" in line for line in lines):
            assert time.monotonic() < deadline and proc.poll() is None, "".join(lines)
            lines.append(proc.stdout.readline())
        envoy = envoy_child(proc.pid)
        os.killpg(proc.pid, signal.SIGINT)
        code = proc.wait(timeout=60)
        lines.append(proc.stdout.read())
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    log = "".join(lines)
    assert code == 0, log
    assert "unexpectedly" not in log, log
    assert not is_running(envoy)


def test_standalone_gateway_refuses_the_network_in_front_of_an_anonymous_server(tmp_path):
    server = ServerProcess(tmp_path / "data", anonymous=True).start()
    try:
        proc = _uba_gateway(
            "--upstream", server.address, "--listen", "0.0.0.0:0", "--data-dir", str(tmp_path)
        )
        try:
            out = proc.stdout.readline()  # "listening on ..." were it to start; "" when it exits
            assert "listening on" not in out, "the gateway exposed an anonymous server"
            code = proc.wait(timeout=60)
            err = proc.stderr.read()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert code == 2
        assert f"the server at {server.address} answers without an API key" in err, err
    finally:
        server.stop()


def test_probe_tells_keyed_from_anonymous_servers(tmp_path):
    from uba.gateway.probe import accepts_anonymous

    keyed = ServerProcess(tmp_path / "keyed").start()
    anonymous = ServerProcess(tmp_path / "anonymous", anonymous=True).start()
    try:
        assert accepts_anonymous(keyed.address) is False
        assert accepts_anonymous(anonymous.address) is True
    finally:
        keyed.stop()
        anonymous.stop()
    assert (
        accepts_anonymous(f"127.0.0.1:{free_port()}", timeout=2) is None
    )  # nothing there: cannot tell
