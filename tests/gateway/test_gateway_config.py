"""The rendered Envoy configuration, the launcher and `uba gateway`."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
from google.protobuf import descriptor_pb2

from gateway.fake_upstream import FakeUpstream
from gateway.gateway_support import Client
from uba.gateway import (
    EnvoyNotFound,
    GatewayConfig,
    GatewayError,
    GatewayProcess,
    TlsFiles,
    find_envoy,
    render,
    validate,
)
from uba.gateway import config as gateway_config


def test_rendered_config_passes_envoy_validate(tmp_path, envoy_binary):
    rendered = render(GatewayConfig(upstream="127.0.0.1:50051"), tmp_path)
    text = rendered.config_path.read_text()
    assert "${" not in text
    assert "port_value: 8080" in text  # the default front door
    validate(rendered.config_path, envoy_binary)


def test_everything_binds_to_localhost_and_names_no_outside_host(tmp_path):
    text = render(
        GatewayConfig(upstream="127.0.0.1:50051", listen="127.0.0.1:0"), tmp_path
    ).config_path.read_text()
    addresses = set(re.findall(r"(?<!\w)address: ([^,}\s]+)", text))
    assert addresses == {"127.0.0.1"}
    assert "type: STATIC" in text  # an IP upstream needs no DNS
    config = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    for forbidden in ("tracing:", "stats_sinks:", "http://", "https://"):
        assert forbidden not in config


def test_hostname_upstream_uses_dns_cluster(tmp_path, envoy_binary):
    rendered = render(GatewayConfig(upstream="localhost:50051", listen="127.0.0.1:0"), tmp_path)
    assert "type: STRICT_DNS" in rendered.config_path.read_text()
    validate(rendered.config_path, envoy_binary)


def test_several_upstreams_share_one_health_checked_cluster(tmp_path, envoy_binary):
    rendered = render(GatewayConfig(upstream="127.0.0.1:50051, 127.0.0.1:50052"), tmp_path)
    text = rendered.config_path.read_text()
    assert text.count('"port_value": 5005') == 2
    assert "grpc_health_check" in text and "LEAST_REQUEST" in text
    validate(rendered.config_path, envoy_binary)
    with pytest.raises(ValueError, match="upstream"):
        GatewayConfig(upstream="127.0.0.1:50051,nonsense")


def test_tls_on_both_hops_passes_envoy_validate(tmp_path, envoy_binary):
    from support.certs import CertificateAuthority

    ca = CertificateAuthority("gateway test CA")
    server, client = ca.issue(tmp_path, "server", server=True), ca.issue(tmp_path, "client")
    ca_file = ca.write(tmp_path)
    config = GatewayConfig(
        upstream="127.0.0.1:50051",
        listen_tls=TlsFiles(str(server.cert), str(server.key), str(ca_file)),
        upstream_tls=TlsFiles(str(client.cert), str(client.key), str(ca_file)),
    )
    rendered = render(config, tmp_path / "out")
    text = rendered.config_path.read_text()
    assert "DownstreamTlsContext" in text and "UpstreamTlsContext" in text
    assert '"require_client_certificate": true' in text
    validate(rendered.config_path, envoy_binary)
    with pytest.raises(ValueError, match="CA"):
        GatewayConfig(
            upstream="127.0.0.1:1", upstream_tls=TlsFiles(str(client.cert), str(client.key))
        )
    with pytest.raises(ValueError, match="key"):
        TlsFiles(str(server.cert))


def test_render_is_self_contained(tmp_path):
    rendered = render(GatewayConfig(upstream="127.0.0.1:1"), tmp_path)
    text = rendered.config_path.read_text()
    for name in ("descriptor", "lua", "index_html", "app_js"):
        path = rendered.files[name]
        assert path.parent == tmp_path and path.is_file()
        assert str(path) in text
    assert rendered.files["index_html"].read_bytes() == gateway_config.INDEX_HTML.read_bytes()
    assert rendered.files["app_js"].read_bytes() == gateway_config.APP_JS.read_bytes()
    # Envoy's admin interface: a socket in the gateway's directory, no port.
    assert 'pipe: {path: "admin.sock", mode: 0600}' in text
    assert "admin:\n  address:\n    pipe:" in text


def test_descriptor_carries_error_details_for_convert_grpc_status(tmp_path):
    rendered = render(GatewayConfig(upstream="127.0.0.1:1"), tmp_path)
    descriptor_set = descriptor_pb2.FileDescriptorSet()
    descriptor_set.ParseFromString(rendered.files["descriptor"].read_bytes())
    names = [f.name for f in descriptor_set.file]
    assert "uba/v1/service.proto" in names
    assert "google/rpc/error_details.proto" in names and "google/rpc/status.proto" in names
    # dependencies come before the files that import them
    for index, file in enumerate(descriptor_set.file):
        assert set(file.dependency) <= set(names[:index]), file.name


def test_every_rest_path_of_the_document_gets_a_405_route_with_its_methods(tmp_path):
    """The 405 routes come from the descriptor's HTTP rules: the same paths
    and methods the OpenAPI document lists (both spellings), each path
    refusing exactly the methods it does not take."""
    document = json.loads(gateway_config.OPENAPI_JSON.read_text())
    documented: dict[str, set[str]] = {}
    for path, operations in document["paths"].items():
        documented.setdefault(path.rstrip("/"), set()).update(v.upper() for v in operations)
    routes = gateway_config.rest_methods(gateway_config.DESCRIPTOR)
    assert len(routes) == len(documented)
    for path, verbs in documented.items():
        (regex,) = [r for r in routes if re.fullmatch(r, path) and re.fullmatch(r, path + "/")]
        assert set(routes[regex]) == verbs, path
    text = render(GatewayConfig(upstream="127.0.0.1:1"), tmp_path).config_path.read_text()
    assert text.count('"status": 405') == len(routes)


def test_templates_that_can_match_one_path_share_their_methods():
    overlap = gateway_config._overlap
    literal = ("api", "alerts", "stream")
    variable = ("api", "alerts", gateway_config._VARIABLE)
    assert overlap(literal, variable) and overlap(variable, literal)
    assert not overlap(literal, ("api", "alerts", "other"))
    assert not overlap(variable, (*variable, "acknowledge"))


@pytest.mark.parametrize(
    "address", ["nope", "127.0.0.1", "127.0.0.1:http", "127.0.0.1:70000", ":80"]
)
def test_bad_addresses_are_refused(address):
    with pytest.raises(ValueError):
        GatewayConfig(upstream=address)
    with pytest.raises(ValueError):
        GatewayConfig(upstream="127.0.0.1:1", listen=address)


def test_page_larger_than_the_limit_is_refused(tmp_path):
    with pytest.raises(ValueError, match="max_page_bytes"):
        render(GatewayConfig(upstream="127.0.0.1:1", max_page_bytes=1000), tmp_path)


def test_invalid_config_is_reported_with_envoys_reason(tmp_path, envoy_binary):
    bad = tmp_path / "bad.yaml"
    bad.write_text("static_resources: {clusters: [{name: x, type: NOPE}]}\n")
    with pytest.raises(GatewayError, match="NOPE"):
        validate(bad, envoy_binary)


def test_missing_envoy_binary_is_a_clear_error(tmp_path):
    with pytest.raises(EnvoyNotFound, match="does not exist"):
        find_envoy(tmp_path / "envoy")


def test_several_gateways_run_at_once_and_stop_cleanly(tmp_path):
    with FakeUpstream() as upstream:
        gateways = [
            GatewayProcess(
                upstream.address, "127.0.0.1:0", work_dir=tmp_path / f"g{i}", concurrency=1
            )
            for i in range(3)
        ]
        try:
            for g in gateways:
                g.start()
            for g in gateways:
                g.wait_ready()
            assert len({g.listen_address for g in gateways}) == 3
            assert len({g.admin_socket for g in gateways}) == 3
            for g in gateways:
                response = Client(g.listen_address).get("/api/behavior-analytics/capabilities/")
                assert response.status == 200, response
        finally:
            codes = [g.stop() for g in gateways]
    assert codes == [0, 0, 0]


def test_envoy_that_cannot_start_is_reported(tmp_path):
    with FakeUpstream() as upstream:
        first = GatewayProcess(
            upstream.address, "127.0.0.1:0", work_dir=tmp_path / "a", concurrency=1
        )
        with first:
            # the same listener port twice: the second Envoy exits
            second = GatewayProcess(
                upstream.address, first.listen_address, work_dir=tmp_path / "b", concurrency=1
            )
            second.start()
            try:
                with pytest.raises(GatewayError, match="exited|not ready"):
                    second.wait_ready(timeout=20)
            finally:
                second.stop()


def _uba(*args: str, **kwargs) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("UBA_")}
    return subprocess.Popen(
        [sys.executable, "-m", "uba", "gateway", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        **kwargs,
    )


def test_cli_check_renders_into_the_data_dir_and_validates(tmp_path):
    proc = _uba("--upstream", "127.0.0.1:50051", "--data-dir", str(tmp_path), "--check")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert (tmp_path / "gateway" / "envoy.yaml").is_file()
    assert "is valid" in out


def test_cli_rejects_a_bad_listen_address(tmp_path):
    proc = _uba("--listen", "nowhere", "--data-dir", str(tmp_path))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert "HOST:PORT" in err


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_cli_runs_in_the_foreground_and_forwards_signals(tmp_path, signum):
    with FakeUpstream() as upstream:
        proc = _uba(
            "--upstream", upstream.address, "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path)
        )
        try:
            line = ""
            deadline = time.monotonic() + 60
            while "listening on" not in line:
                assert time.monotonic() < deadline and proc.poll() is None, (
                    proc.stderr.read() if proc.stderr else ""
                )
                line = proc.stdout.readline()
            address = re.search(r"listening on (\S+)", line).group(1)
            response = Client(address).get("/api/behavior-analytics/capabilities")
            assert response.status == 200, response
            proc.send_signal(signum)
            assert proc.wait(timeout=30) == 0
            # the access log went to stdout
            assert "/api/behavior-analytics/capabilities" in proc.stdout.read()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
