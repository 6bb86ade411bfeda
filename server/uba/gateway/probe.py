"""Does a uba server answer without an API key?

`uba serve --allow-anonymous` refuses every listener beyond loopback, its
own gateway's included; a standalone `uba gateway` cannot see the server's
flags, so before it listens beyond loopback it asks the server itself: one
GetCapabilities call with no key. A server that answers it runs without
keys, and a gateway on the network would hand it to anyone.
"""

from __future__ import annotations

from pathlib import Path

from uba.domain.security import is_loopback_host
from uba.gateway.config import TlsFiles, split_host_port


def is_loopback(address: str) -> bool:
    """True for HOST:PORT on 127.0.0.0/8, ::1 or localhost."""
    host, _ = split_host_port(address)
    return is_loopback_host(host)


def accepts_anonymous(
    upstream: str, tls: TlsFiles | None = None, timeout: float = 5.0
) -> bool | None:
    """True if the server at HOST:PORT answers a keyed method without a key,
    False if it asks for one, None if it cannot be told (not reachable)."""
    import grpc

    from uba.v1 import service_pb2, service_pb2_grpc

    if tls is not None:
        credentials = grpc.ssl_channel_credentials(
            Path(tls.ca).read_bytes() if tls.ca else None,
            Path(tls.key).read_bytes() if tls.key else None,
            Path(tls.cert).read_bytes() if tls.cert else None,
        )
        channel = grpc.secure_channel(upstream, credentials)
    else:
        channel = grpc.insecure_channel(upstream)
    try:
        service_pb2_grpc.BehaviorAnalyticsServiceStub(channel).GetCapabilities(
            service_pb2.GetCapabilitiesRequest(), timeout=timeout
        )
        return True
    except grpc.RpcError as exc:
        if exc.code() in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
            return False
        return None
    finally:
        channel.close()
