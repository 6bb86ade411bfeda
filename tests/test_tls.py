"""TLS from configuration, with certificates made in the test: the gRPC
port with a server certificate, then with client certificates required
(mutual TLS), and the Envoy gateway's listener in front of such a server
(HTTPS for REST, gRPC over TLS), Envoy itself verifying the server and
presenting its own client certificate.

What a user relies on: a client that trusts the CA gets through; plaintext,
an unknown CA, or (with mutual TLS) a missing or foreign client certificate
fails the handshake before any method runs, and nothing is stored; API keys
are still checked on top of TLS; a wrong combination of settings stops the
server with a message naming the flag.
"""

from __future__ import annotations

import http.client
import json
import ssl
import subprocess
import sys
import uuid
from datetime import UTC, datetime

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from support.certs import CertificateAuthority
from support.server import ServerProcess

from uba.v1 import events_pb2, service_pb2, service_pb2_grpc
from uba_client import RetryPolicy, UbaClient
from uba_client.errors import UbaError

pytestmark = pytest.mark.timeout(180)
# A refused handshake is UNAVAILABLE, which clients normally retry; here the
# first answer is the one under test.
NO_RETRY = {"retry": RetryPolicy(max_attempts=1), "ingest_retry": RetryPolicy(max_attempts=1)}


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A CA with a server and a client certificate, and a foreign CA with a
    client certificate of its own."""
    directory = tmp_path_factory.mktemp("pki")
    ca, other = CertificateAuthority("uba test CA"), CertificateAuthority("someone else's CA")
    return {
        "ca": ca.write(directory, "ca"),
        "ca_pem": ca.pem,
        "other_ca": other.write(directory, "other-ca"),
        "server": ca.issue(directory, "server", server=True),
        "client": ca.issue(directory, "client"),
        "gateway_client": ca.issue(directory, "gateway-client"),
        "foreign_client": other.issue(directory, "foreign-client"),
    }


def _start(tmp_path, *args: str, **kwargs) -> ServerProcess:
    return ServerProcess(tmp_path / "data", extra_args=list(args), **kwargs).start()


def _tls_args(pki) -> list[str]:
    return ["--tls-cert", str(pki["server"].cert), "--tls-key", str(pki["server"].key)]


def _record(client: UbaClient, user: str) -> str:
    event_id = f"tls-{uuid.uuid4().hex}"
    client.record(user_id=user, type="login_success", event_id=event_id, source_ip="192.0.2.10")
    return event_id


def _code(call) -> grpc.StatusCode:
    try:
        call()
    except UbaError as exc:
        return exc.code
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def _stored(server: ServerProcess, pki, user: str) -> list[str]:
    with UbaClient(
        server.address,
        api_key=server.api_key,
        tls=pki["ca"],
        client_cert=pki["client"].cert,
        client_key=pki["client"].key,
    ) as client:
        return [e.event_id for e in client.list_logs(user_id=user).events]


def test_grpc_over_tls_needs_a_client_that_trusts_the_ca(tmp_path, pki):
    server = _start(tmp_path, *_tls_args(pki))
    try:
        assert "(TLS," in server.log()
        with UbaClient(server.address, api_key=server.api_key, tls=pki["ca"], timeout=5) as client:
            event_id = _record(client, "tls-user")
            assert [e.event_id for e in client.list_logs(user_id="tls-user").events] == [event_id]

        # Plaintext to a TLS port, or a CA that did not sign the server: the
        # handshake fails, so the call never reaches a method.
        request = service_pb2.RecordActivityRequest(
            event=events_pb2.ActivityEvent(
                user_id="tls-user",
                type=events_pb2.ACTIVITY_TYPE_LOGIN_SUCCESS,
                event_id="tls-plaintext",
            )
        )
        with grpc.insecure_channel(server.address) as channel:
            stub = service_pb2_grpc.BehaviorAnalyticsServiceStub(channel)
            assert (
                _code(lambda: stub.RecordActivity(request, timeout=3, metadata=server.metadata))
                == grpc.StatusCode.UNAVAILABLE
            )
        with UbaClient(
            server.address, api_key=server.api_key, tls=pki["other_ca"], timeout=3, **NO_RETRY
        ) as client:
            assert _code(lambda: _record(client, "tls-user")) == grpc.StatusCode.UNAVAILABLE
        with UbaClient(server.address, api_key=server.api_key, tls=pki["ca"], timeout=5) as client:
            assert [e.event_id for e in client.list_logs(user_id="tls-user").events] == [event_id]
    finally:
        server.stop()


def test_mutual_tls_requires_a_certificate_from_the_client_ca(tmp_path, pki):
    server = _start(tmp_path, *_tls_args(pki), "--tls-client-ca", str(pki["ca"]))
    try:
        assert "client certificates required" in server.log()
        no_cert = UbaClient(
            server.address, api_key=server.api_key, tls=pki["ca"], timeout=3, **NO_RETRY
        )
        foreign = UbaClient(
            server.address,
            api_key=server.api_key,
            tls=pki["ca"],
            timeout=3,
            **NO_RETRY,
            client_cert=pki["foreign_client"].cert,
            client_key=pki["foreign_client"].key,
        )
        for refused in (no_cert, foreign):
            with refused:
                assert (
                    _code(lambda client=refused: _record(client, "mtls-user"))
                    == grpc.StatusCode.UNAVAILABLE
                )

        # A good certificate is not a key: API keys are still checked.
        with UbaClient(
            server.address,
            tls=pki["ca"],
            timeout=5,
            client_cert=pki["client"].cert,
            client_key=pki["client"].key,
        ) as keyless:
            assert _code(lambda: _record(keyless, "mtls-user")) == grpc.StatusCode.UNAUTHENTICATED
        with UbaClient(
            server.address,
            api_key=server.api_key,
            tls=pki["ca"],
            timeout=5,
            client_cert=pki["client"].cert,
            client_key=pki["client"].key,
        ) as client:
            event_id = _record(client, "mtls-user")
        assert _stored(server, pki, "mtls-user") == [event_id]

        # The CLI takes the same files.
        cli = subprocess.run(
            [
                sys.executable,
                "-m",
                "uba",
                "logs",
                "--server",
                server.address,
                "--api-key",
                server.api_key,
                "--ca-file",
                str(pki["ca"]),
                "--client-cert",
                str(pki["client"].cert),
                "--client-key",
                str(pki["client"].key),
                "--user",
                "mtls-user",
                "--json",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert cli.returncode == 0, cli.stderr
        assert event_id in cli.stdout
    finally:
        server.stop()


def _https(
    address: str,
    ca,
    path: str,
    key: str | None,
    method: str = "GET",
    body: dict | None = None,
    client=None,
    headers: dict | None = None,
):
    context = ssl.create_default_context(cafile=str(ca))
    if client is not None:
        context.load_cert_chain(str(client.cert), str(client.key))
    host, port = address.rsplit(":", 1)
    connection = http.client.HTTPSConnection(host, int(port), context=context, timeout=15)
    try:
        payload = json.dumps(body).encode() if body is not None else None
        all_headers = {"content-type": "application/json", **(headers or {})}
        if key is not None:
            all_headers["authorization"] = f"Bearer {key}"
        connection.request(method, path, body=payload, headers=all_headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_gateway_listener_and_upstream_over_tls(tmp_path, pki):
    """`uba serve --gateway-listen` with TLS on both hops and client
    certificates required by the server: Envoy verifies the server with the
    CA and presents its own client certificate."""
    server = _start(
        tmp_path,
        *_tls_args(pki),
        "--tls-client-ca",
        str(pki["ca"]),
        "--gateway-client-cert",
        str(pki["gateway_client"].cert),
        "--gateway-client-key",
        str(pki["gateway_client"].key),
        "--gateway-upstream-ca",
        str(pki["ca"]),
        "--gateway-listen",
        "127.0.0.1:0",
    )
    client = pki["client"]
    try:
        gateway = _gateway_address(server)
        status, body = _https(
            gateway,
            pki["ca"],
            "/api/behavior-analytics/events",
            server.api_key,
            "POST",
            {
                "userId": "gw-tls-user",
                "type": "ACTIVITY_TYPE_LOGIN_SUCCESS",
                "eventId": "gw-tls-1",
                "occurredAt": datetime.now(UTC).isoformat(),
            },
            client=client,
        )
        assert status == 200, body
        status, body = _https(
            gateway,
            pki["ca"],
            "/api/behavior-analytics/logs?userId=gw-tls-user",
            server.api_key,
            client=client,
        )
        assert status == 200, body
        assert [e["eventId"] for e in json.loads(body)["events"]] == ["gw-tls-1"]
        status, body = _https(gateway, pki["ca"], "/", server.api_key, client=client)
        assert status == 200 and b"<html" in body.lower()

        # Over HTTPS the dashboard's key cookie is __Host-uba_key (Secure,
        # set by this origin only); a plain uba_key cookie is not taken.
        download = "/api/behavior-analytics/logs/download?format=csv"
        same_origin = {"sec-fetch-site": "same-origin"}
        for cookie, expected in (
            (f"__Host-uba_key={server.api_key}", 200),
            (f"uba_key={server.api_key}", 401),
        ):
            status, body = _https(
                gateway,
                pki["ca"],
                download,
                None,
                client=client,
                headers={"cookie": cookie, **same_origin},
            )
            assert status == expected, (cookie, body)
        status, body = _https(
            gateway,
            pki["ca"],
            download,
            None,
            client=client,
            headers={"cookie": f"__Host-uba_key={server.api_key}", "origin": f"https://{gateway}"},
        )
        assert status == 200, body

        # --tls-client-ca holds on the gateway too: without a certificate, or
        # with one from another CA, the TLS handshake fails (HTTPS and gRPC).
        for refused in (None, pki["foreign_client"]):
            # (TLS 1.3: the client learns it when it reads: no HTTP answer comes.)
            with pytest.raises((ssl.SSLError, ConnectionResetError)):
                _https(
                    gateway,
                    pki["ca"],
                    "/api/behavior-analytics/logs",
                    server.api_key,
                    client=refused,
                )
        with UbaClient(
            gateway, api_key=server.api_key, tls=pki["ca"], timeout=3, **NO_RETRY
        ) as no_cert:
            assert _code(lambda: _record(no_cert, "gw-tls-user")) == grpc.StatusCode.UNAVAILABLE

        # Plain HTTP to the TLS listener gets no answer; a client that does
        # not trust the CA refuses the gateway.
        host, port = gateway.rsplit(":", 1)
        plain = http.client.HTTPConnection(host, int(port), timeout=5)
        with pytest.raises((ConnectionError, http.client.HTTPException, OSError)):
            plain.request("GET", "/api/behavior-analytics/logs")
            plain.getresponse().read()
        plain.close()
        with pytest.raises(ssl.SSLError):
            _https(
                gateway,
                pki["other_ca"],
                "/api/behavior-analytics/logs",
                server.api_key,
                client=client,
            )

        # Native gRPC over TLS through Envoy (ALPN h2); the health check
        # stays open without a key.
        with UbaClient(
            gateway,
            api_key=server.api_key,
            tls=pki["ca"],
            timeout=10,
            client_cert=client.cert,
            client_key=client.key,
        ) as grpc_client:
            event_id = _record(grpc_client, "gw-tls-user")
            assert {e.event_id for e in grpc_client.list_logs(user_id="gw-tls-user").events} == {
                "gw-tls-1",
                event_id,
            }
        credentials = grpc.ssl_channel_credentials(
            pki["ca_pem"], client.key.read_bytes(), client.cert.read_bytes()
        )
        with grpc.secure_channel(gateway, credentials) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=10
            )
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        server.stop()


def _gateway_address(server: ServerProcess) -> str:
    import re
    import time

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        match = re.search(r"gateway on https://(\S+)", server.log())
        if match:
            return match.group(1)
        if server.proc.poll() is not None:
            break
        time.sleep(0.1)
    raise AssertionError("gateway did not start:\n" + server.log())


@pytest.mark.parametrize(
    "args, complaint",
    [
        (["--tls-cert", "{server_cert}"], "--tls-cert and --tls-key go together"),
        (["--tls-client-ca", "{ca}"], "need TLS"),
        (
            [
                "--tls-cert",
                "{server_cert}",
                "--tls-key",
                "{server_key}",
                "--tls-client-ca",
                "{ca}",
                "--gateway-listen",
                "127.0.0.1:0",
            ],
            "--gateway-client-cert",
        ),
        (["--tls-cert", "{missing}", "--tls-key", "{server_key}"], "--tls-cert: no such file"),
    ],
)
def test_inconsistent_tls_settings_stop_the_server_naming_the_flag(tmp_path, pki, args, complaint):
    files = {
        "server_cert": pki["server"].cert,
        "server_key": pki["server"].key,
        "ca": pki["ca"],
        "missing": tmp_path / "missing.pem",
    }
    argv = [a.format(**files) for a in args]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "uba",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            str(tmp_path / "data"),
            *argv,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert complaint in result.stderr, result.stderr
