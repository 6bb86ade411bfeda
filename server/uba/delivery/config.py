"""The notify file (`--notify FILE`, UBA_NOTIFY): where alerts and incidents
are delivered. JSON or YAML, checked completely at start: any wrong key or
value stops the server with the key's path.

    destinations:
      soc:                       # the destination's name (uba notify ... soc)
        kind: webhook            # webhook, chat or syslog
        url: https://soc.example/uba
        secret: whsec_...        # Standard Webhooks signing secret (webhook)
        headers: {X-Token: abc}  # sent with every request
        format: ocsf             # webhook: uba (default), ocsf; syslog: cef (default), ocsf, uba
        min_severity: medium     # low, medium (default), high, critical
        detectors: [new_country] # only these detectors (default: all)
        tactics: [TA0001]        # only these ATT&CK tactics (default: all)
        alerts: true             # alert changes (default true)
        incidents: true          # incident changes (default true)
      siem:
        kind: syslog
        address: siem.example:6514
        tls: true
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from uba.domain.anomalies import Severity
from uba.domain.notifications import Route
from uba.domain.security import is_loopback_host

KINDS = ("webhook", "chat", "syslog")
FORMATS_OF_KIND = {
    "webhook": ("uba", "ocsf"),
    "chat": ("chat",),
    "syslog": ("cef", "ocsf", "uba"),
}
COMMON_KEYS = {
    "kind",
    "base_url",
    "format",
    "min_severity",
    "detectors",
    "tactics",
    "alerts",
    "incidents",
    "timeout_seconds",
    "retry_initial_seconds",
    "retry_max_seconds",
    "dead_after_seconds",
}
KEYS_OF_KIND = {
    "webhook": COMMON_KEYS | {"url", "secret", "headers", "allow_http", "ca_file"},
    "chat": COMMON_KEYS | {"url", "headers", "allow_http", "ca_file"},
    "syslog": COMMON_KEYS | {"address", "tls", "ca_file", "hostname"},
}


class NotifyConfigError(ValueError):
    """A wrong notify file; the message names the key."""


@dataclass(frozen=True)
class Destination:
    name: str
    kind: str
    format: str
    route: Route
    url: str = ""
    secret: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    ca_file: str = ""
    address: tuple[str, int] = ("", 0)
    tls: bool = False
    hostname: str = ""
    # Where analysts open uba: chat messages and OCSF findings link to it.
    base_url: str = ""
    timeout_seconds: float = 10.0
    # Exponential backoff with jitter between these, then dead letters
    # once a message has waited dead_after_seconds.
    retry_initial_seconds: float = 1.0
    retry_max_seconds: float = 300.0
    dead_after_seconds: float = 86_400.0


def load_notify_config(path: str) -> list[Destination]:
    """The destinations of a notify file ([] without one)."""
    if not path:
        return []
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise NotifyConfigError(f"cannot read {path}: {exc.strerror}") from None
    try:
        data = json.loads(text) if path.endswith(".json") or text.lstrip().startswith("{") else None
        if data is None:
            data = yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise NotifyConfigError(f"{path} is neither valid JSON nor YAML: {exc}") from None
    return parse_notify_config(data)


def parse_notify_config(data: object) -> list[Destination]:
    if not isinstance(data, dict):
        raise NotifyConfigError("the notify file must be a mapping with the key 'destinations'")
    unknown = set(data) - {"destinations"}
    if unknown:
        raise NotifyConfigError(f"{sorted(unknown)[0]}: unknown key; the file has 'destinations'")
    destinations = data.get("destinations")
    if not isinstance(destinations, dict) or not destinations:
        raise NotifyConfigError("destinations: a mapping of destination names to settings")
    return [_destination(str(name), spec) for name, spec in destinations.items()]


def _destination(name: str, spec: object) -> Destination:
    where = f"destinations.{name}"
    if not name or len(name) > 64 or not all(c.isalnum() or c in "-_." for c in name):
        raise NotifyConfigError(f"{where}: a name of letters, digits, '-', '_', '.' (at most 64)")
    if not isinstance(spec, dict):
        raise NotifyConfigError(f"{where}: a mapping of settings")
    kind = spec.get("kind")
    if kind not in KINDS:
        raise NotifyConfigError(f"{where}.kind: one of {', '.join(KINDS)}")
    for key in spec:
        if key not in KEYS_OF_KIND[kind]:
            raise NotifyConfigError(
                f"{where}.{key}: unknown key for kind {kind}; "
                f"known: {', '.join(sorted(KEYS_OF_KIND[kind]))}"
            )
    fmt = spec.get("format", FORMATS_OF_KIND[kind][0])
    if fmt not in FORMATS_OF_KIND[kind]:
        raise NotifyConfigError(f"{where}.format: one of {', '.join(FORMATS_OF_KIND[kind])}")
    options: dict = {}
    if kind in ("webhook", "chat"):
        options["url"] = _url(f"{where}.url", spec.get("url"), _bool(where, spec, "allow_http"))
        options["headers"] = _headers(f"{where}.headers", spec.get("headers", {}))
        if kind == "webhook":
            options["secret"] = _secret(f"{where}.secret", spec.get("secret"))
    else:
        options["address"] = _address(f"{where}.address", spec.get("address"))
        options["tls"] = _bool(where, spec, "tls")
        hostname = spec.get("hostname", "")
        if not isinstance(hostname, str) or len(hostname) > 255 or " " in hostname:
            raise NotifyConfigError(f"{where}.hostname: a host name without spaces")
        options["hostname"] = hostname
    base_url = spec.get("base_url", "")
    if base_url:
        parts = urlsplit(base_url) if isinstance(base_url, str) else None
        if parts is None or parts.scheme not in ("https", "http") or not parts.hostname:
            raise NotifyConfigError(f"{where}.base_url: an http(s):// URL of the uba page")
    options["base_url"] = base_url
    ca_file = spec.get("ca_file", "")
    if ca_file and not (isinstance(ca_file, str) and Path(ca_file).is_file()):
        raise NotifyConfigError(f"{where}.ca_file: not a readable file: {ca_file!r}")
    options["ca_file"] = ca_file
    for key, low, high in (
        ("timeout_seconds", 0.1, 300.0),
        ("retry_initial_seconds", 0.01, 3600.0),
        ("retry_max_seconds", 0.01, 86_400.0),
        ("dead_after_seconds", 1.0, 90 * 86_400.0),
    ):
        if key in spec:
            options[key] = _number(f"{where}.{key}", spec[key], low, high)
    route = Route(
        destination=name,
        min_severity=_severity(f"{where}.min_severity", spec.get("min_severity", "medium")),
        detectors=_names(f"{where}.detectors", spec.get("detectors", [])),
        tactics=_names(f"{where}.tactics", spec.get("tactics", [])),
        alerts=_bool(where, spec, "alerts", True),
        incidents=_bool(where, spec, "incidents", True),
    )
    if not route.alerts and not route.incidents:
        raise NotifyConfigError(f"{where}: alerts and incidents are both off; nothing to send")
    return Destination(name=name, kind=kind, format=fmt, route=route, **options)


def _bool(where: str, spec: dict, key: str, default: bool = False) -> bool:
    value = spec.get(key, default)
    if not isinstance(value, bool):
        raise NotifyConfigError(f"{where}.{key}: true or false")
    return value


def _number(where: str, value: object, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise NotifyConfigError(f"{where}: a number from {low:g} to {high:g}")
    return float(value)


def _severity(where: str, value: object) -> Severity:
    try:
        return Severity[str(value).upper()]
    except KeyError:
        raise NotifyConfigError(f"{where}: one of low, medium, high, critical") from None


def _names(where: str, value: object) -> frozenset[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise NotifyConfigError(f"{where}: a list of names")
    return frozenset(value)


def _headers(where: str, value: object) -> dict[str, str]:
    if not isinstance(value, dict):
        raise NotifyConfigError(f"{where}: a mapping of header names to values")
    for key, val in value.items():
        if not isinstance(key, str) or not key or any(c in key for c in " :\r\n"):
            raise NotifyConfigError(f"{where}: {key!r} is not a header name")
        if key.lower().startswith("webhook-") or key.lower() in ("content-type", "content-length"):
            raise NotifyConfigError(f"{where}.{key}: set by uba, not configurable")
        if not isinstance(val, str) or "\r" in val or "\n" in val:
            raise NotifyConfigError(f"{where}.{key}: a one-line string")
    return dict(value)


def _secret(where: str, value: object) -> str:
    """A Standard Webhooks secret: whsec_ and base64 of 24 to 64 bytes."""
    import base64
    import binascii

    if not isinstance(value, str) or not value.startswith("whsec_"):
        raise NotifyConfigError(f"{where}: a signing secret 'whsec_<base64>' (uba notify secret)")
    try:
        raw = base64.b64decode(value.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError):
        raise NotifyConfigError(f"{where}: the part after whsec_ is not base64") from None
    if not 24 <= len(raw) <= 64:
        raise NotifyConfigError(f"{where}: the secret must be 24 to 64 bytes")
    return value


def _url(where: str, value: object, allow_http: bool) -> str:
    if not isinstance(value, str) or not value:
        raise NotifyConfigError(f"{where}: required")
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise NotifyConfigError(f"{where}: an https:// URL")
    if parts.username or parts.password:
        raise NotifyConfigError(f"{where}: no credentials in the URL; use headers")
    if parts.scheme == "http" and not allow_http and not is_loopback_host(parts.hostname):
        raise NotifyConfigError(
            f"{where}: plain http is allowed to loopback addresses only; "
            "use https or set allow_http: true"
        )
    return value


def _address(where: str, value: object) -> tuple[str, int]:
    if not isinstance(value, str) or ":" not in value:
        raise NotifyConfigError(f"{where}: HOST:PORT")
    host, _, port = value.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise NotifyConfigError(f"{where}: HOST:PORT with a port from 1 to 65535")
    return host, int(port)
