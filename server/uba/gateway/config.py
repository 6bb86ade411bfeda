"""Renders the Envoy configuration of the gateway.

The template (envoy/envoy.yaml.in) holds every decision; this module only
fills in addresses, ports and file paths, and writes a self-contained
directory: envoy.yaml, the Lua script, the dashboard page and the descriptor
set, so that what Envoy runs can be read in one place.
"""

from __future__ import annotations

import ipaddress
import shutil
import string
from dataclasses import dataclass, field
from pathlib import Path

from google.protobuf import descriptor_pb2
from google.rpc import error_details_pb2, status_pb2

import uba

PACKAGE_DIR = Path(uba.__file__).resolve().parent
# envoy/ at the root of the checkout (the package is installed editable).
SOURCE_DIR = PACKAGE_DIR.parent.parent / "envoy"
TEMPLATE = SOURCE_DIR / "envoy.yaml.in"
LUA_SCRIPT = SOURCE_DIR / "gateway.lua"
DESCRIPTOR = SOURCE_DIR / "uba_descriptor.pb"
INDEX_HTML = PACKAGE_DIR / "web" / "index.html"

DEFAULT_LISTEN = "127.0.0.1:8080"
SERVICE = "uba.v1.BehaviorAnalyticsService"


def split_host_port(address: str, *, what: str = "address") -> tuple[str, int]:
    """"HOST:PORT" or "[V6]:PORT" -> (host, port); port 0 is allowed."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{what} must be HOST:PORT, got {address!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """What varies between gateway runs. Everything else is in the template."""

    upstream: str  # the uba gRPC server, HOST:PORT
    listen: str = DEFAULT_LISTEN  # the front door, HOST:PORT (port 0: any free one)
    admin_port: int = 0  # Envoy's admin interface, always on 127.0.0.1
    rest_timeout_s: float = 60.0  # deadline of unary REST calls
    stream_idle_timeout_s: float = 3600.0  # alert streams and native gRPC streams
    max_connections: int = 10000
    max_page_bytes: int = 1 << 20  # limit of the dashboard's direct response
    max_body_bytes: int = 16 << 20  # largest unary JSON request or answer (the server's message limit)
    template: Path = TEMPLATE
    lua_script: Path = LUA_SCRIPT
    descriptor: Path = DESCRIPTOR
    index_html: Path = INDEX_HTML

    def __post_init__(self) -> None:
        split_host_port(self.upstream, what="upstream")
        split_host_port(self.listen, what="listen")
        if not 0 <= int(self.admin_port) <= 65535:
            raise ValueError(f"admin port out of range: {self.admin_port}")


@dataclass(frozen=True, slots=True)
class RenderedConfig:
    """The files of one rendered configuration."""

    directory: Path
    config_path: Path
    files: dict[str, Path] = field(default_factory=dict)


def gateway_descriptor(source: Path) -> bytes:
    """The service's descriptor set plus google.rpc.Status and its error
    details, so that convert_grpc_status can print `details` (BadRequest
    field violations, RetryInfo) as JSON instead of dropping them."""
    if not source.is_file():
        raise FileNotFoundError(f"descriptor set {source} is missing; run 'make proto'")
    descriptor_set = descriptor_pb2.FileDescriptorSet()
    descriptor_set.ParseFromString(source.read_bytes())
    present = {f.name for f in descriptor_set.file}
    for module in (status_pb2, error_details_pb2):
        for dependency in module.DESCRIPTOR.dependencies:
            _add_file(descriptor_set, present, dependency)
        _add_file(descriptor_set, present, module.DESCRIPTOR)
    return descriptor_set.SerializeToString(deterministic=True)


def _add_file(descriptor_set: descriptor_pb2.FileDescriptorSet, present: set[str], file) -> None:
    if file.name in present:
        return
    for dependency in file.dependencies:
        _add_file(descriptor_set, present, dependency)
    file.CopyToProto(descriptor_set.file.add())
    present.add(file.name)


def _seconds(value: float) -> str:
    return f"{value:g}s"


def _yaml_path(path: Path) -> str:
    text = str(path.resolve())
    if any(c in text for c in '"\\\n'):
        raise ValueError(f"path not usable in the Envoy configuration: {text!r}")
    return text


def render(config: GatewayConfig, out_dir: str | Path) -> RenderedConfig:
    """Writes envoy.yaml and the files it names into `out_dir` (created)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    descriptor = out / "uba_gateway_descriptor.pb"
    descriptor.write_bytes(gateway_descriptor(Path(config.descriptor)))
    lua = out / "gateway.lua"
    shutil.copyfile(config.lua_script, lua)
    page = out / "index.html"
    shutil.copyfile(config.index_html, page)
    if page.stat().st_size > config.max_page_bytes:
        raise ValueError(f"{config.index_html} is larger than max_page_bytes ({config.max_page_bytes})")

    listen_host, listen_port = split_host_port(config.listen, what="listen")
    upstream_host, upstream_port = split_host_port(config.upstream, what="upstream")
    values = {
        "admin_port": int(config.admin_port),
        "listen_host": listen_host,
        "listen_port": listen_port,
        "upstream_host": upstream_host,
        "upstream_port": upstream_port,
        # An address needs no resolver; a name (localhost) is resolved by Envoy.
        "upstream_type": "STATIC" if _is_ip(upstream_host) else "STRICT_DNS",
        "rest_timeout": _seconds(config.rest_timeout_s),
        "stream_idle_timeout": _seconds(config.stream_idle_timeout_s),
        "max_connections": int(config.max_connections),
        "max_page_bytes": int(config.max_page_bytes),
        "max_body_bytes": int(config.max_body_bytes),
        "descriptor": _yaml_path(descriptor),
        "lua_script": _yaml_path(lua),
        "index_html": _yaml_path(page),
    }
    text = string.Template(Path(config.template).read_text()).substitute(values)
    config_path = out / "envoy.yaml"
    config_path.write_text(text)
    return RenderedConfig(
        directory=out,
        config_path=config_path,
        files={"descriptor": descriptor, "lua": lua, "index_html": page},
    )
