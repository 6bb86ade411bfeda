"""Renders the Envoy configuration of the gateway.

The template (envoy/envoy.yaml.in) holds every decision; this module only
fills in addresses, ports and file paths, and writes a self-contained
directory: envoy.yaml, the Lua script, the dashboard page and the descriptor
set, so that what Envoy runs can be read in one place.
"""

from __future__ import annotations

import ipaddress
import json
import re
import secrets
import shutil
import string
from dataclasses import dataclass, field
from pathlib import Path

from google.api import annotations_pb2, http_pb2
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
APP_JS = PACKAGE_DIR / "web" / "app.js"
# The REST contract (make openapi) and the API reference page: our page and
# initializer, Swagger UI from the pinned npm package (make tools).
OPENAPI_JSON = SOURCE_DIR.parent / "docs" / "openapi" / "uba.openapi.json"
DOCS_HTML = PACKAGE_DIR / "web" / "docs" / "index.html"
DOCS_JS = PACKAGE_DIR / "web" / "docs" / "docs.js"
SWAGGER_UI_DIR = SOURCE_DIR.parent / "tools" / "node_modules" / "swagger-ui-dist"
SWAGGER_UI_FILES = ("swagger-ui.css", "swagger-ui-bundle.js")

DEFAULT_LISTEN = "127.0.0.1:8080"
# Envoy's admin interface: a Unix socket in the gateway's directory (Envoy
# runs there), never a TCP port.
ADMIN_SOCKET = "admin.sock"
SERVICE = "uba.v1.BehaviorAnalyticsService"
HTTP_VERBS = ("get", "put", "post", "delete", "patch")


def split_host_port(address: str, *, what: str = "address") -> tuple[str, int]:
    """ "HOST:PORT" or "[V6]:PORT" -> (host, port); port 0 is allowed."""
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
class TlsFiles:
    """PEM files of one side of a TLS connection."""

    cert: str = ""  # certificate chain this side presents
    key: str = ""  # its private key
    ca: str = ""  # certificates trusted to have signed the other side's

    def __post_init__(self) -> None:
        if bool(self.cert) != bool(self.key):
            raise ValueError("a TLS certificate needs its key, and a key its certificate")
        for path in (self.cert, self.key, self.ca):
            if path and not Path(path).is_file():
                raise ValueError(f"TLS file {path} does not exist")


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """What varies between gateway runs. Everything else is in the template."""

    upstream: str  # the uba gRPC server(s): HOST:PORT, or several, comma-separated
    listen: str = DEFAULT_LISTEN  # the front door, HOST:PORT (port 0: any free one)
    rest_timeout_s: float = 60.0  # deadline of unary REST calls
    stream_idle_timeout_s: float = 3600.0  # alert streams and native gRPC streams
    max_connections: int = 10000
    max_page_bytes: int = 1 << 20  # limit of the dashboard's direct responses (page, script)
    # Limit of the API reference's direct responses (Swagger UI's script is
    # about 1.7 MB; the OpenAPI document about 0.2 MB).
    max_docs_bytes: int = 4 << 20
    max_body_bytes: int = (
        16 << 20
    )  # largest unary JSON request or answer (the server's message limit)
    template: Path = TEMPLATE
    lua_script: Path = LUA_SCRIPT
    descriptor: Path = DESCRIPTOR
    index_html: Path = INDEX_HTML
    app_js: Path = APP_JS
    openapi_json: Path = OPENAPI_JSON
    docs_html: Path = DOCS_HTML
    docs_js: Path = DOCS_JS
    swagger_ui_dir: Path = SWAGGER_UI_DIR
    # The listener serves TLS (HTTPS and gRPC over TLS) when `cert` is set;
    # with `ca` too, clients must present a certificate it signed.
    listen_tls: TlsFiles | None = None
    # Envoy speaks TLS to the servers when given: `ca` verifies them (their
    # names are checked against the upstream host), `cert` and `key` are
    # Envoy's client certificate for servers that require one.
    upstream_tls: TlsFiles | None = None
    # Sent to the servers in x-uba-gateway (replacing any a caller sent): the
    # server it was started by believes this gateway's x-forwarded-for.
    proxy_token: str = field(default_factory=lambda: secrets.token_urlsafe(32))

    def __post_init__(self) -> None:
        self.upstreams()
        if not self.proxy_token or not self.proxy_token.replace("-", "").replace("_", "").isalnum():
            raise ValueError("proxy_token must be a non-empty URL-safe token")
        split_host_port(self.listen, what="listen")
        if self.upstream_tls is not None and not self.upstream_tls.ca:
            raise ValueError(
                "TLS to the upstream needs the CA that signed the servers' certificates"
            )

    def upstreams(self) -> list[tuple[str, int]]:
        """(host, port) of each server process behind the gateway."""
        addresses = [a.strip() for a in self.upstream.split(",") if a.strip()]
        if not addresses:
            raise ValueError("upstream must name at least one HOST:PORT")
        return [split_host_port(a, what="upstream") for a in addresses]


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


def rest_methods(source: Path) -> dict[str, tuple[str, ...]]:
    """The REST paths of the service's HTTP rules (google.api.http, with
    their additional bindings) as RE2 regular expressions of the path, each
    with the HTTP methods a path it matches may take, e.g.
    {"^/api/x/[^/]+/acknowledge/?$": ("POST",)}. A `{field}` is one path
    segment; where two templates can match the same path (a literal segment
    against a `{field}`), each gets the methods of both."""
    descriptor_set = descriptor_pb2.FileDescriptorSet()
    descriptor_set.ParseFromString(Path(source).read_bytes())
    templates: dict[tuple[str, ...], set[str]] = {}
    for file in descriptor_set.file:
        for service in file.service:
            if f"{file.package}.{service.name}" != SERVICE:
                continue
            for method in service.method:
                rule = http_pb2.HttpRule()
                rule.ParseFromString(
                    method.options.Extensions[annotations_pb2.http].SerializeToString()
                )
                for binding in (rule, *rule.additional_bindings):
                    verb = binding.WhichOneof("pattern")
                    if verb in HTTP_VERBS:
                        segments = _segments(getattr(binding, verb))
                        templates.setdefault(segments, set()).add(verb.upper())
    methods = {}
    for segments in templates:
        verbs = set().union(*(v for t, v in templates.items() if _overlap(segments, t)))
        # Both spellings: Envoy picks the filters a request passes when it
        # first routes it, on the path as sent, before gateway.lua strips
        # the trailing slash; the transcoder must be off for both.
        methods["^/" + "/".join(segments) + "/?$"] = tuple(sorted(verbs))
    return dict(sorted(methods.items()))


_VARIABLE = "[^/]+"


def _segments(template: str) -> tuple[str, ...]:
    """A path template as regex pieces, one per segment."""
    parts = []
    for segment in template.strip("/").split("/"):
        if re.fullmatch(r"\{[A-Za-z_][A-Za-z0-9_.]*\}", segment):
            parts.append(_VARIABLE)
        elif re.fullmatch(r"[A-Za-z0-9_-]+", segment):
            parts.append(segment)
        else:
            raise ValueError(f"HTTP rule path not supported by the gateway: {template!r}")
    return tuple(parts)


def _overlap(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    return len(a) == len(b) and all(
        x == y or _VARIABLE in (x, y) for x, y in zip(a, b, strict=True)
    )


def _method_not_allowed_routes(source: Path) -> str:
    """One route per REST path: a method it does not take is answered 405
    with an Allow header, here, instead of the transcoder's 404 "Could not
    resolve". Flow mappings, one per line, indented for the template."""
    routes = []
    for regex, verbs in rest_methods(source).items():
        allowed = ", ".join(verbs)
        method = (
            {"exact": verbs[0]}
            if len(verbs) == 1
            else {"safe_regex": {"regex": f"^({'|'.join(verbs)})$"}}
        )
        routes.append(
            {
                "match": {
                    "safe_regex": {"regex": regex},
                    "headers": [{"name": ":method", "string_match": method, "invert_match": True}],
                },
                "direct_response": {
                    "status": 405,
                    "body": {"inline_string": f"method not allowed on this path; use {allowed}"},
                },
                "response_headers_to_add": [
                    {
                        "header": {"key": "allow", "value": allowed},
                        "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                    }
                ],
                "typed_per_filter_config": {
                    "envoy.filters.http.grpc_json_transcoder": {
                        "@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig",
                        "disabled": True,
                    }
                },
            }
        )
    return ("\n" + " " * 14).join("- " + json.dumps(route) for route in routes)


def _listener_tls(tls: TlsFiles | None) -> dict | None:
    if tls is None:
        return None
    context: dict = {
        "common_tls_context": {
            "tls_certificates": [_certificate(tls)],
            # gRPC clients need HTTP/2, negotiated by ALPN; browsers may use either.
            "alpn_protocols": ["h2", "http/1.1"],
            "tls_params": {"tls_minimum_protocol_version": "TLSv1_2"},
        }
    }
    if tls.ca:
        context["require_client_certificate"] = True
        context["common_tls_context"]["validation_context"] = {
            "trusted_ca": {"filename": _yaml_path(Path(tls.ca))}
        }
    return _tls_socket("DownstreamTlsContext", context)


def _upstream_tls(tls: TlsFiles | None, upstreams: list[tuple[str, int]]) -> dict | None:
    if tls is None:
        return None
    # Every server's certificate must name the host the gateway dials.
    names = sorted({host for host, _ in upstreams})
    common: dict = {
        "alpn_protocols": ["h2"],
        "validation_context": {
            "trusted_ca": {"filename": _yaml_path(Path(tls.ca))},
            "match_typed_subject_alt_names": [
                {"san_type": "IP_ADDRESS" if _is_ip(n) else "DNS", "matcher": {"exact": n}}
                for n in names
            ],
        },
    }
    if tls.cert:
        common["tls_certificates"] = [_certificate(tls)]
    context: dict = {"common_tls_context": common}
    if len(names) == 1 and not _is_ip(names[0]):
        context["sni"] = names[0]
    return _tls_socket("UpstreamTlsContext", context)


def _tls_socket(context_type: str, context: dict) -> dict:
    return {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3."
            + context_type,
            **context,
        },
    }


def _certificate(tls: TlsFiles) -> dict:
    return {
        "certificate_chain": {"filename": _yaml_path(Path(tls.cert))},
        "private_key": {"filename": _yaml_path(Path(tls.key))},
    }


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
    script = out / "app.js"
    for source, copy in ((config.index_html, page), (config.app_js, script)):
        shutil.copyfile(source, copy)
        if copy.stat().st_size > config.max_page_bytes:
            raise ValueError(f"{source} is larger than max_page_bytes ({config.max_page_bytes})")

    docs = _copy_docs(config, out)

    listen_host, listen_port = split_host_port(config.listen, what="listen")
    upstreams = config.upstreams()
    endpoints = [
        {"endpoint": {"address": {"socket_address": {"address": h, "port_value": p}}}}
        for h, p in upstreams
    ]
    values = {
        "admin_socket": ADMIN_SOCKET,
        "listen_host": listen_host,
        "listen_port": listen_port,
        # JSON is YAML: the generated blocks are written as flow mappings.
        "upstream_endpoints": json.dumps(endpoints),
        # Addresses need no resolver; names (localhost) are resolved by Envoy.
        "upstream_type": "STATIC" if all(_is_ip(h) for h, _ in upstreams) else "STRICT_DNS",
        "listen_transport_socket": json.dumps(_listener_tls(config.listen_tls)),
        "listen_tls_note": "on" if config.listen_tls else "off",
        "upstream_transport_socket": json.dumps(_upstream_tls(config.upstream_tls, upstreams)),
        "upstream_tls_note": "on" if config.upstream_tls else "off",
        "rest_timeout": _seconds(config.rest_timeout_s),
        "stream_idle_timeout": _seconds(config.stream_idle_timeout_s),
        "max_connections": int(config.max_connections),
        "max_direct_bytes": max(int(config.max_page_bytes), int(config.max_docs_bytes)),
        "max_body_bytes": int(config.max_body_bytes),
        "method_not_allowed_routes": _method_not_allowed_routes(Path(config.descriptor)),
        "descriptor": _yaml_path(descriptor),
        "lua_script": _yaml_path(lua),
        "index_html": _yaml_path(page),
        "proxy_token": config.proxy_token,
        "app_js": _yaml_path(script),
        "docs_status": 200 if docs.ready else 503,
        **{key: _yaml_path(path) for key, path in docs.files.items()},
    }
    text = string.Template(Path(config.template).read_text()).substitute(values)
    config_path = out / "envoy.yaml"
    config_path.write_text(text)
    return RenderedConfig(
        directory=out,
        config_path=config_path,
        files={
            "descriptor": descriptor,
            "lua": lua,
            "index_html": page,
            "app_js": script,
            **docs.files,
        },
    )


@dataclass(frozen=True, slots=True)
class _Docs:
    ready: bool  # False: Swagger UI is not installed; the page says how to install it
    files: dict[str, Path]


_DOCS_MISSING = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>uba REST API reference</title></head>
<body><h1>uba REST API reference</h1>
<p>This page needs Swagger UI, which is not installed: run <code>make tools</code>
(<code>npm ci</code> in <code>tools/</code>) and restart the gateway.</p>
<p>The contract itself: <a href="/api/behavior-analytics/openapi.json">openapi.json</a>.</p>
</body></html>
"""


def _copy_docs(config: GatewayConfig, out: Path) -> _Docs:
    """The OpenAPI document and the API reference page's files, copied into
    the gateway directory. Without Swagger UI (tools/node_modules not
    installed) the page is a 503 that names the command, and the document
    is still served."""
    if not Path(config.openapi_json).is_file():
        raise FileNotFoundError(
            f"OpenAPI document {config.openapi_json} is missing; run 'make openapi'"
        )
    docs_dir = out / "docs"
    docs_dir.mkdir(exist_ok=True)
    files = {
        "openapi_json": out / "openapi.json",
        "docs_html": docs_dir / "index.html",
        "docs_js": docs_dir / "docs.js",
        "swagger_ui_css": docs_dir / "swagger-ui.css",
        "swagger_ui_js": docs_dir / "swagger-ui-bundle.js",
    }
    ui = Path(config.swagger_ui_dir)
    ready = all((ui / name).is_file() for name in SWAGGER_UI_FILES)
    shutil.copyfile(config.openapi_json, files["openapi_json"])
    if ready:
        shutil.copyfile(config.docs_html, files["docs_html"])
        shutil.copyfile(config.docs_js, files["docs_js"])
        shutil.copyfile(ui / "swagger-ui.css", files["swagger_ui_css"])
        shutil.copyfile(ui / "swagger-ui-bundle.js", files["swagger_ui_js"])
    else:
        files["docs_html"].write_text(_DOCS_MISSING)
        for key in ("docs_js", "swagger_ui_css", "swagger_ui_js"):
            files[key].write_text("")
    for path in files.values():
        if path.stat().st_size > config.max_docs_bytes:
            raise ValueError(f"{path.name} is larger than max_docs_bytes ({config.max_docs_bytes})")
    return _Docs(ready, files)
