"""Gateway fixtures: a real Envoy in front of the real uba server, or in
front of a scripted fake (fake_upstream.py) for what only the gateway
decides."""

from __future__ import annotations

import pytest

from gateway.fake_upstream import FakeUpstream
from gateway.gateway_support import Client, Gateway, start_gateway
from uba.gateway import find_envoy


@pytest.fixture(scope="session")
def envoy_binary() -> str:
    return find_envoy()


@pytest.fixture(scope="module")
def fake_gateway(tmp_path_factory, envoy_binary):
    """Envoy in front of the scripted FakeUpstream."""
    with FakeUpstream() as upstream:
        process = start_gateway(upstream.address, tmp_path_factory.mktemp("gateway-fake"))
        try:
            yield Gateway(process, Client(process.listen_address), process.listen_address, upstream)
        finally:
            process.stop()


@pytest.fixture(scope="module")
def gateway(uba_server, tmp_path_factory, envoy_binary):
    """Envoy in front of the real server (SQLite and PostgreSQL)."""
    process = start_gateway(uba_server.address, tmp_path_factory.mktemp("gateway"))
    try:
        yield Gateway(
            process,
            Client(process.listen_address, uba_server.api_key),
            process.listen_address,
            uba_server,
        )
    finally:
        process.stop()
