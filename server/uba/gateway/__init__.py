"""The REST gateway: Envoy's gRPC-JSON transcoder in front of the uba server.

`config` renders envoy/envoy.yaml.in with addresses and file paths filled in;
`launch` finds the envoy binary, validates the rendered file and runs it.
"""

from uba.gateway.config import GatewayConfig, RenderedConfig, TlsFiles, render
from uba.gateway.launch import EnvoyNotFound, GatewayError, GatewayProcess, find_envoy, validate

__all__ = [
    "EnvoyNotFound",
    "GatewayConfig",
    "GatewayError",
    "GatewayProcess",
    "RenderedConfig",
    "TlsFiles",
    "find_envoy",
    "render",
    "validate",
]
