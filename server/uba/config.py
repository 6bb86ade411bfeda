"""Server settings: one object, filled from flags, then `UBA_*` environment
variables, then defaults. No other module reads the environment."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from uba.domain.shared_state import CACHED_USERS

# Largest batch RecordActivities accepts.
MAX_BATCH_SIZE = 1000
# Seconds between a front end's looks in storage for alert changes that the
# event log's fan-out did not bring (a message lost with nothing after it).
FANOUT_POLL_INTERVAL = 30.0


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the server can be told. Field name FOO is flag --foo and
    environment variable UBA_FOO."""

    listen: str = "127.0.0.1:50051"
    gateway_listen: str = (
        ""  # HOST:PORT of the REST/gRPC gateway (Envoy) to start beside the server
    )
    data_dir: str = "data"
    database_url: str = ""  # empty: a SQLite file in data_dir
    log_level: str = "info"
    log_json: bool = False
    grace_period: float = 10.0  # seconds in-flight calls get on SIGTERM
    heartbeat_interval: float = 15.0  # seconds between StreamAlerts heartbeats
    max_workers: int = 16  # threads for blocking storage work
    max_pending_events: int = (
        100_000  # events waiting for the writer before ingest answers RESOURCE_EXHAUSTED
    )
    detectors: str = ""  # JSON file that enables, disables and tunes detectors
    # Users whose state stays in memory: bounds the baseline cache and every
    # detector's per-user (and per-address, per-value) state together.
    cached_users: int = CACHED_USERS
    notify: str = ""  # JSON or YAML file of alert and incident delivery destinations
    train_interval: float = (
        24.0  # hours between Isolation Forest retrainings (enhanced mode); 0: never
    )
    disable_detection: bool = False  # store events only (bulk imports, baselines for benchmarks)
    # Seconds; picks up alerts of other server processes. 0: 1 s, or 30 s with
    # --event-log, where NATS brings them and polling is a safety net.
    alert_poll_interval: float = 0.0
    alert_backlog: int = (
        10_000  # alert changes a StreamAlerts subscriber may fall behind before it is cut off
    )
    allow_anonymous: bool = False  # no API keys at all; refused unless listening on loopback
    rate_limit: float = 1000.0  # requests per second per API key (token bucket); 0: no limit
    rate_burst: float = 2000.0  # bucket size: requests a key may make at once
    max_streams_per_key: int = 1000  # concurrent StreamAlerts/ExportLogs per API key; 0: no limit
    key_cache_seconds: float = 10.0  # how long a verified key is trusted without a database read
    auth_failure_rate: float = (
        10.0  # failed authentications per second per client address; 0: no limit
    )
    auth_failure_burst: float = 500.0  # failed authentications a client address may make at once
    trusted_proxies: str = (
        ""  # CIDRs of proxies whose x-forwarded-for is believed (the bundled gateway always is)
    )
    tls_cert: str = (
        ""  # PEM certificate chain of the gRPC port and the gateway listener; empty: plaintext
    )
    tls_key: str = ""  # its PEM private key
    tls_client_ca: str = (
        ""  # PEM CAs; when set, gRPC clients must present a certificate they signed
    )
    gateway_upstream_ca: str = (
        ""  # PEM CAs the gateway checks this server's certificate with [tls_cert]
    )
    gateway_client_cert: str = ""  # the gateway's client certificate, needed with tls_client_ca
    gateway_client_key: str = ""  # its PEM private key
    metrics_listen: str = ""  # HOST:PORT of the Prometheus /metrics endpoint; empty: no metrics
    otlp_endpoint: str = ""  # OTLP/HTTP collector URL traces are sent to; empty: no tracing
    # Retention, in days; 0 keeps forever (docs/operations.md).
    retention_days: int = 0  # events and their hourly rollups
    anomaly_retention_days: int = 0  # anomalies not evidence of an open alert or incident
    alert_retention_days: int = 0  # resolved alerts (with their anomalies) and incidents
    notification_retention_days: int = 0  # delivered notifications
    audit_retention_days: int = 0  # audit entries; at least the longest of the above
    # The partitioned event log (docs/scaling.md); empty: the embedded writer.
    event_log: str = ""  # nats://HOST:PORT[,HOST:PORT...]
    event_log_partitions: int = 16  # when the stream is created; read back afterwards
    event_log_max_msgs: int = 1_000_000  # unstored events the stream holds (at creation)
    event_log_max_bytes: int = 1 << 30  # and their bytes (at creation)
    event_log_timeout: float = 5.0  # seconds a publish may wait for JetStream's ack
    event_log_replicas: int = 1  # copies of the stream, leases and consumers (at creation)
    worker_lease_seconds: float = 10.0  # a dead worker's partitions move after this
    worker_ack_wait: float = 30.0  # seconds before an unacknowledged message is redelivered
    worker_batch: int = 500  # messages a worker fetches from a partition at once

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{Path(self.data_dir).resolve() / 'uba.db'}"

    def tls_problem(self) -> str:
        """Why the TLS settings cannot work together ('' when they can)."""
        if bool(self.tls_cert) != bool(self.tls_key):
            return "--tls-cert and --tls-key go together"
        if not self.tls_cert and (
            self.tls_client_ca or self.gateway_upstream_ca or self.gateway_client_cert
        ):
            return "client certificates and CAs need TLS: give --tls-cert and --tls-key"
        if bool(self.gateway_client_cert) != bool(self.gateway_client_key):
            return "--gateway-client-cert and --gateway-client-key go together"
        if self.gateway_listen and self.tls_client_ca and not self.gateway_client_cert:
            return (
                "with --tls-client-ca the gateway needs a client certificate: give "
                "--gateway-client-cert"
            )
        for name in (
            "tls_cert",
            "tls_key",
            "tls_client_ca",
            "gateway_upstream_ca",
            "gateway_client_cert",
            "gateway_client_key",
        ):
            path = getattr(self, name)
            if path and not Path(path).is_file():
                return f"--{name.replace('_', '-')}: no such file: {path}"
        return ""

    @property
    def effective_alert_poll_interval(self) -> float:
        if self.alert_poll_interval > 0:
            return self.alert_poll_interval
        return FANOUT_POLL_INTERVAL if self.event_log else 1.0

    @property
    def model_dir(self) -> str:
        return str(Path(self.data_dir) / "models")

    @classmethod
    def add_arguments(
        cls, parser: argparse.ArgumentParser, only: frozenset[str] | None = None
    ) -> None:
        """Adds one flag per field (of `only`, when given); flags default to
        None so that the environment and then the field default fill what
        was not given."""
        help_texts = {
            "listen": "gRPC address HOST:PORT (port 0 picks a free one) "
            "[UBA_LISTEN, 127.0.0.1:50051]",
            "gateway_listen": "also start the Envoy gateway (REST, SSE, dashboard, gRPC) on "
            "HOST:PORT [UBA_GATEWAY_LISTEN]",
            "data_dir": "directory for the embedded database and keys [UBA_DATA_DIR, ./data]",
            "database_url": "SQLAlchemy URL, e.g. postgresql+psycopg2://user@host/db "
            "[UBA_DATABASE_URL, SQLite in the data dir]",
            "log_level": "debug, info, warning or error [UBA_LOG_LEVEL, info]",
            "log_json": "log one JSON object per line [UBA_LOG_JSON]",
            "grace_period": "seconds in-flight calls get to finish on SIGTERM "
            "[UBA_GRACE_PERIOD, 10]",
            "heartbeat_interval": "seconds between StreamAlerts heartbeats "
            "[UBA_HEARTBEAT_INTERVAL, 15]",
            "max_workers": "threads for blocking storage work [UBA_MAX_WORKERS, 16]",
            "max_pending_events": "events queued for storage before ingest refuses more with "
            "RESOURCE_EXHAUSTED [UBA_MAX_PENDING_EVENTS, 100000]",
            "detectors": 'JSON file configuring detectors, e.g. {"new_ip": {"enabled": false}} '
            "[UBA_DETECTORS]",
            "cached_users": "users whose baselines and detector state stay in memory; bounds "
            "them all together (memory per cached user and how to choose it: docs/scaling.md) "
            "[UBA_CACHED_USERS, 20000]",
            "notify": "JSON or YAML file of destinations alerts and incidents are delivered to "
            "(webhooks, chat, syslog/CEF; docs/integrations.md) [UBA_NOTIFY]",
            "train_interval": "hours between scheduled Isolation Forest trainings; 0 turns them "
            "off [UBA_TRAIN_INTERVAL, 24]",
            "disable_detection": "store events without scoring them [UBA_DISABLE_DETECTION]",
            "alert_poll_interval": "seconds between looks for alerts raised by other server "
            "processes; with --event-log they come through NATS and this is a safety net "
            "[UBA_ALERT_POLL_INTERVAL, 1; 30 with --event-log]",
            "alert_backlog": "alert changes a subscriber may fall behind before it is cut off with "
            "RESOURCE_EXHAUSTED (it resumes from storage) [UBA_ALERT_BACKLOG, 10000]",
            "allow_anonymous": "turn API keys off (only with a loopback --listen address) "
            "[UBA_ALLOW_ANONYMOUS]",
            "rate_limit": "requests per second each API key may make on average; 0: unlimited "
            "[UBA_RATE_LIMIT, 1000]",
            "rate_burst": "requests an API key may make at once [UBA_RATE_BURST, 2000]",
            "max_streams_per_key": "concurrent streams (alert feed, export) per API key; 0: "
            "unlimited [UBA_MAX_STREAMS_PER_KEY, 1000]",
            "key_cache_seconds": "seconds a verified API key is cached; a revoked key works at "
            "most this long [UBA_KEY_CACHE_SECONDS, 10]",
            "auth_failure_rate": "failed authentications per second a client address may make "
            "before it is refused without a key lookup; 0: unlimited [UBA_AUTH_FAILURE_RATE, 10]",
            "auth_failure_burst": "failed authentications a client address may make at once "
            "[UBA_AUTH_FAILURE_BURST, 500]",
            "trusted_proxies": "addresses or CIDR blocks of proxies (a standalone 'uba gateway', a "
            "load balancer) whose x-forwarded-for names the client; the bundled gateway is "
            "trusted without it [UBA_TRUSTED_PROXIES, none]",
            "tls_cert": "PEM certificate chain: serve gRPC and the gateway over TLS "
            "[UBA_TLS_CERT, plaintext]",
            "tls_key": "PEM private key of --tls-cert [UBA_TLS_KEY]",
            "tls_client_ca": "PEM CA file: gRPC clients must present a certificate it signed "
            "(mutual TLS) [UBA_TLS_CLIENT_CA]",
            "gateway_upstream_ca": "PEM CA file the gateway verifies this server's certificate "
            "with [UBA_GATEWAY_UPSTREAM_CA, --tls-cert itself]",
            "gateway_client_cert": "PEM certificate the gateway presents to this server; required "
            "with --tls-client-ca [UBA_GATEWAY_CLIENT_CERT]",
            "gateway_client_key": "PEM private key of --gateway-client-cert "
            "[UBA_GATEWAY_CLIENT_KEY]",
            "metrics_listen": "serve Prometheus metrics at http://HOST:PORT/metrics, for the "
            "scraper on the internal network (docs/operations.md) [UBA_METRICS_LISTEN, off]",
            "otlp_endpoint": "send OpenTelemetry traces over OTLP/HTTP to this collector URL, "
            "e.g. http://127.0.0.1:4318 (needs the 'tracing' extra) [UBA_OTLP_ENDPOINT, off]",
            "retention_days": "days events (and their hourly counts) are kept; 0: forever "
            "[UBA_RETENTION_DAYS, 0]",
            "anomaly_retention_days": "days anomalies are kept, except the evidence of open "
            "alerts and incidents; 0: forever [UBA_ANOMALY_RETENTION_DAYS, 0]",
            "alert_retention_days": "days resolved alerts and incidents are kept after their "
            "last change; open ones always stay; 0: forever [UBA_ALERT_RETENTION_DAYS, 0]",
            "notification_retention_days": "days delivered notifications are kept; 0: forever "
            "[UBA_NOTIFICATION_RETENTION_DAYS, 0]",
            "audit_retention_days": "days audit entries are kept, at least as long as the others; "
            "0: forever [UBA_AUDIT_RETENTION_DAYS, 0]",
            "event_log": "nats://HOST:PORT[,HOST:PORT...]: publish events to the partitioned "
            "event log on NATS JetStream (serve) or consume it (worker); docs/scaling.md "
            "[UBA_EVENT_LOG, none: the embedded writer]",
            "event_log_partitions": "partitions of the event stream when it is created "
            "[UBA_EVENT_LOG_PARTITIONS, 16]",
            "event_log_max_msgs": "events the stream holds before publishes answer "
            "RESOURCE_EXHAUSTED (at creation) [UBA_EVENT_LOG_MAX_MSGS, 1000000]",
            "event_log_max_bytes": "bytes the stream holds (at creation) "
            "[UBA_EVENT_LOG_MAX_BYTES, 1 GiB]",
            "event_log_timeout": "seconds a publish waits for JetStream before RESOURCE_EXHAUSTED "
            "[UBA_EVENT_LOG_TIMEOUT, 5]",
            "event_log_replicas": "copies JetStream keeps of the stream, the lease bucket and the "
            "consumers, 1 to 5; more than 1 needs a NATS cluster of at least that many servers "
            "(at creation) [UBA_EVENT_LOG_REPLICAS, 1]",
            "worker_lease_seconds": "term of a worker's partition leases; a dead worker's "
            "partitions move after it [UBA_WORKER_LEASE_SECONDS, 10]",
            "worker_ack_wait": "seconds before a message a worker did not acknowledge is "
            "redelivered (at consumer creation) [UBA_WORKER_ACK_WAIT, 30]",
            "worker_batch": "messages a worker takes from a partition at once "
            "[UBA_WORKER_BATCH, 500]",
        }
        for f in fields(cls):
            if only is not None and f.name not in only:
                continue
            flag = "--" + f.name.replace("_", "-")
            if f.type in (bool, "bool"):
                parser.add_argument(
                    flag, action="store_true", default=None, help=help_texts.get(f.name)
                )
            else:
                parser.add_argument(flag, default=None, help=help_texts.get(f.name))

    @classmethod
    def load(
        cls, args: argparse.Namespace | None = None, environ: Mapping[str, str] | None = None
    ) -> Settings:
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = getattr(args, f.name, None) if args is not None else None
            if raw is None:
                raw = environ.get("UBA_" + f.name.upper())
            if raw is None:
                continue
            values[f.name] = _parse(f.name, f.type, raw)
        return cls(**values)


def load_detector_config(path: str) -> dict:
    """The detector configuration file named by the settings ({} when none)."""
    if not path:
        return {}
    try:
        data = json.loads(Path(path).read_text())
    except OSError as exc:
        raise SystemExit(
            f"uba: cannot read detector configuration {path}: {exc.strerror}"
        ) from None
    except json.JSONDecodeError as exc:
        raise SystemExit(f"uba: detector configuration {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise SystemExit(
            f"uba: detector configuration {path} must be a JSON object of detector names"
        )
    return data


def _parse(name: str, kind: object, raw: object) -> object:
    if not isinstance(raw, str):
        return raw
    try:
        if kind in (bool, "bool"):
            return raw.strip().lower() in ("1", "true", "yes", "on")
        if kind in (int, "int"):
            return int(raw)
        if kind in (float, "float"):
            return float(raw)
    except ValueError:
        raise SystemExit(f"uba: {name}: not a number: {raw!r}") from None
    return raw
