"""Composition root: builds the storage, the domain services and the gRPC
server from Settings, and runs them until SIGTERM or SIGINT.

One grpc.aio server per process: streams (alert subscribers) cost a
coroutine, not a thread, so hundreds of subscribers do not starve unary
calls. Blocking storage reads run on a bounded thread pool; writes (events,
detection, the alert workflow) go through the ingest service's single
writer thread (group commit).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import secrets
import signal
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from importlib import metadata
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from uba import observability
from uba.api.alert_stream import AlertStream
from uba.api.auth import AuthInterceptor
from uba.api.broker import AlertBroker
from uba.api.drain import DrainInterceptor
from uba.api.errors import ErrorInterceptor
from uba.api.servicer import BehaviorAnalyticsServicer, Capabilities
from uba.config import Settings, load_detector_config
from uba.datadir import write_private_file
from uba.delivery import payloads
from uba.delivery.config import Destination, NotifyConfigError, load_notify_config
from uba.delivery.worker import DeliveryWorker
from uba.detectors.base import POPULATION_SCOPE, STATE_BOUNDS, USER_SCOPE
from uba.detectors.engine import DetectionEngine
from uba.detectors.model_files import SharedModelStore
from uba.detectors.registry import ENHANCED_DETECTORS, DetectorRegistry, default_registry
from uba.domain import security as sec
from uba.domain.alerts import AlertPolicy
from uba.domain.analysis import Analyzer
from uba.domain.backfill import BACKFILL_THROUGH_THE_LOG, BackfillService
from uba.domain.backlog import EventLogStatus
from uba.domain.dashboard import DashboardService
from uba.domain.erasure import ErasureService, LoggedErasureService
from uba.domain.errors import FailedPrecondition, InvalidArgument
from uba.domain.incidents import IncidentService
from uba.domain.ingest import EventSink, IngestService, utcnow
from uba.domain.investigation import InvestigationService
from uba.domain.logs import LogService
from uba.domain.notifications import DestinationInfo, NotificationService, Notifier
from uba.domain.partitions import PopulationPartitions, UserPartitions
from uba.domain.retention import RetentionPolicy, RetentionService
from uba.domain.risk import RiskPolicy
from uba.domain.training import TrainingService
from uba.gateway.probe import is_loopback
from uba.observability import tracing
from uba.observability.writer import WriterTelemetry
from uba.storage.database import Database
from uba.storage.partitions import EventPartitions
from uba.storage.security import AuditWriter, SecurityRepository
from uba.storage.store import Store
from uba.storage.trained_models import ModelRepository
from uba.v1 import service_pb2, service_pb2_grpc

log = logging.getLogger(__name__)

SERVICE_NAME = service_pb2.DESCRIPTOR.services_by_name["BehaviorAnalyticsService"].full_name
# Largest message the server accepts: a full batch of maximal events fits.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
# How long a stopping server refuses new calls before it closes the port.
DRAIN_SECONDS = 0.5


def version() -> str:
    try:
        return metadata.version("uba")
    except metadata.PackageNotFoundError:
        return "0.0.0+unknown"


@dataclass
class Services:
    """The domain services of one process, and what they run on."""

    database: Database
    store: Store
    registry: DetectorRegistry
    engine: DetectionEngine
    analyzer: Analyzer
    ingest: IngestService
    logs: LogService
    dashboard: DashboardService
    investigation: InvestigationService
    backfill: BackfillService
    training: TrainingService
    executor: ThreadPoolExecutor
    security: SecurityRepository
    audit: AuditWriter
    destinations: list[Destination]
    notifier: Notifier | None
    detection_enabled: bool = True
    # PostgreSQL: the events' partitions (None on SQLite).
    partitions: EventPartitions | None = None

    @property
    def analytics_mode(self) -> str:
        enhanced = any(d.family == "enhanced" for d in self.engine.detectors)
        return "enhanced" if enhanced else "basic"

    def detector_infos(self) -> list[dict]:
        enabled = {d.name for d in self.engine.detectors} if self.detection_enabled else set()
        return [
            dict(
                name=i.name,
                version=i.version,
                family=i.family,
                description=i.description,
                available=i.available,
                enabled=i.name in enabled,
                unavailable_reason=i.unavailable_reason,
            )
            for i in self.registry.describe()
        ]

    def close(self) -> None:
        # Keep the detector windows for the next start, then stop writing.
        # (A front end of the event log learnt nothing: the workers save theirs.)
        try:
            if self.ingest.detects_locally:
                self.ingest.run_exclusive(
                    # The store's WriteTransaction is both ingest's narrow transaction
                    # and the analyzer's; uba.domain.ingest types only the former.
                    lambda tx: self.analyzer.checkpoint(tx, force=True)  # type: ignore[arg-type]
                ).result(timeout=10)
        except Exception:  # noqa: BLE001 - losing them costs one window of detection
            log.warning("could not save detector state at shutdown", exc_info=True)
        self.ingest.close()
        self.audit.close()
        self.executor.shutdown(wait=True)
        self.database.dispose()


def with_enhanced_defaults(registry: DetectorRegistry, config: dict, settings: Settings) -> dict:
    """Enhanced mode switches itself on: each enhanced detector the
    configuration does not mention runs when its libraries import."""
    config = dict(config)
    for name in ENHANCED_DETECTORS:
        if name in registry and name not in config and registry.entries[name].available:
            config[name] = {"enabled": True}
    forest = config.get("isolation_forest")
    if forest and forest.get("enabled", False):
        # Models live in the database (model_dir: where older versions kept
        # them, copied in once); score in micro-batches of an ingest group.
        config["isolation_forest"] = {"model_dir": settings.model_dir, "defer": True, **forest}
    return config


def detector_config(settings: Settings, registry: DetectorRegistry) -> dict:
    return with_enhanced_defaults(registry, load_detector_config(settings.detectors), settings)


def use_shared_models(forest, models: ModelRepository) -> None:
    """The Isolation Forest keeps its models in the database, where every
    process of a deployment finds the one a front end trained (a worker of
    the event log scores with it). A model of the data dir from before
    they moved there is copied in once, when the database has none."""
    store = SharedModelStore(models)
    if forest.model_dir:
        try:
            copied = store.import_directory(forest.model_dir, forest.name)
        except Exception:  # noqa: BLE001 - the schedule trains a new one
            log.warning(
                "could not copy the model in %s to the database", forest.model_dir, exc_info=True
            )
        else:
            if copied is not None:
                log.info(
                    "isolation forest model %s copied from %s to the database",
                    copied.version,
                    forest.model_dir,
                )
    forest.use_store(store)


def build_services(
    settings: Settings, sink: EventSink | None = None, scope: str | None = None
) -> Services:
    """`scope`: the detectors of that scope only (an event-log worker's user
    partitions); None: every detector, as one process sees every event."""
    try:
        destinations = load_notify_config(settings.notify)
    except NotifyConfigError as exc:
        raise SystemExit(f"uba: notify file {settings.notify}: {exc}") from None
    if settings.cached_users < 1:
        raise SystemExit(f"uba: --cached-users must be at least 1, got {settings.cached_users}")
    database = Database(settings.resolved_database_url, pool_size=settings.max_workers)
    database.upgrade()
    partitions = EventPartitions(database) if database.backend == "postgresql" else None
    if partitions is not None:
        # Today's partition before the first event (a server stopped for days).
        partitions.prepare(utcnow())
    store = Store(database)
    registry = default_registry()
    try:
        engine = DetectionEngine(
            registry,
            detector_config(settings, registry),
            scope=scope,
            # One bound on every detector's state in memory, as on the baseline cache.
            defaults=dict.fromkeys(STATE_BOUNDS, settings.cached_users),
        )
    except ValueError as exc:
        raise SystemExit(f"uba: detector configuration: {exc}") from None
    forest = next((d for d in engine.detectors if d.name == "isolation_forest"), None)
    models = ModelRepository(database)
    if forest is not None:
        use_shared_models(forest, models)
    risk = RiskPolicy()
    analyzer = Analyzer(
        engine, AlertPolicy(titles=engine.titles), risk, utcnow, cache_size=settings.cached_users
    )
    with store.unit_of_work() as tx:
        analyzer.load_state(tx)
    notifier = (
        Notifier([d.route for d in destinations], payloads.envelope, utcnow)
        if destinations
        else None
    )
    ingest = IngestService(
        store,
        # As in Services.close: the Analyzer takes the store's WriteTransaction,
        # which uba.domain.ingest types only by its store_events.
        None if settings.disable_detection else analyzer,  # type: ignore[arg-type]
        max_pending_events=settings.max_pending_events,
        outbox=notifier,
        sink=sink,
    )
    mode = "enhanced" if any(d.family == "enhanced" for d in engine.detectors) else "basic"
    return Services(
        database=database,
        store=store,
        registry=registry,
        engine=engine,
        analyzer=analyzer,
        ingest=ingest,
        logs=LogService(store),
        dashboard=DashboardService(store, utcnow, risk, analytics_mode=mode),
        investigation=InvestigationService(store, ingest, analyzer),
        backfill=BackfillService(
            store,
            ingest,
            analyzer,
            utcnow,
            refusal=BACKFILL_THROUGH_THE_LOG if sink is not None else "",
        ),
        training=TrainingService(
            store,
            forest,
            utcnow,
            registry.entries["isolation_forest"].unavailable_reason
            if "isolation_forest" in registry
            else "not registered",
            shared_lock=lambda: models.training_lock("isolation_forest"),
        ),
        executor=ThreadPoolExecutor(
            max_workers=settings.max_workers, thread_name_prefix="uba-storage"
        ),
        security=(security := SecurityRepository(database)),
        audit=AuditWriter(security),
        destinations=destinations,
        notifier=notifier,
        detection_enabled=not settings.disable_detection,
        partitions=partitions,
    )


def bootstrap_admin_key(security: SecurityRepository, data_dir: str) -> Path | None:
    """Secure by default: on a database without keys, creates an admin key
    (every scope) and writes its token to DATA_DIR/admin.key, mode 0600.
    Returns the file's path, or None when keys exist already."""
    if security.has_keys():
        return None
    try:
        _key, token = security.create_key(
            "admin", frozenset(sec.SCOPES), utcnow(), actor="uba serve", peer="first start"
        )
    except FailedPrecondition:  # another server process on this database was first
        return None
    path = Path(data_dir) / "admin.key"
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        # A new 0600 file renamed over the name: nothing planted at
        # admin.key (a symbolic link to another file) is followed.
        write_private_file(path, token + "\n")
    except OSError as exc:
        raise SystemExit(
            f"uba: cannot write the admin key to {path}: {exc.strerror}; "
            "create a key with 'uba keys create --scope admin'"
        ) from None
    return path


async def serve(settings: Settings) -> int:
    if problem := settings.tls_problem():
        raise SystemExit(f"uba: {problem}")
    try:
        trusted_proxies = sec.parse_networks(settings.trusted_proxies)
    except InvalidArgument as exc:
        raise SystemExit(f"uba: --trusted-proxies: {exc.violations[0].description}") from None
    if settings.allow_anonymous:
        # The gateway forwards whatever reaches it: it is a listener too.
        for flag, address in (
            ("--listen", settings.listen),
            ("--gateway-listen", settings.gateway_listen),
        ):
            if address and not is_loopback(address):
                raise SystemExit(
                    f"uba: --allow-anonymous is refused with {flag} {address}: "
                    "listen on a loopback address (127.0.0.1, ::1) or use API keys"
                )
    retention = retention_policy(settings)
    event_log = event_log_sink(settings) if settings.event_log else None
    services = build_services(settings, event_log)
    if event_log is not None:
        # Copies for the population detectors, by the keys they count.
        event_log.population = services.engine.population_keys
        try:
            await event_log.start()
        except Exception as exc:  # noqa: BLE001 - unreachable, or no JetStream there
            services.close()
            raise SystemExit(f"uba: event log {settings.event_log}: {_said(exc)}") from None
    # A front end of the event log learns of the changes the other processes
    # commit from NATS, tells them of its own (uba.eventlog.fanout), and
    # reports the workers' lag (uba.eventlog.status) on that connection.
    fanout = status = None
    if event_log is not None:
        from uba.eventlog.status import StatusReader

        fanout = await start_fanout(settings, "uba-frontend", services)
        status = StatusReader(fanout.connection, event_log.partitions)
    metrics = (
        start_metrics(settings, services, status.read if status is not None else None)
        if settings.metrics_listen
        else None
    )
    tracer = tracing.start(settings.otlp_endpoint, version()) if settings.otlp_endpoint else None
    if metrics is not None or tracer is not None:
        services.ingest.telemetry = WriterTelemetry(metrics, tracer)
    if not settings.allow_anonymous:
        key_file = bootstrap_admin_key(services.security, settings.data_dir)
        if key_file is not None:
            # The path, never the key, goes to the output and the log.
            print(
                f"uba: created an admin API key (all scopes) in {key_file}; send it as "
                f"'Authorization: Bearer <key>', or set UBA_API_KEY=$(cat {key_file}) for the CLI "
                f"(client commands also read it from there with --data-dir)",
                flush=True,
            )
            log.info("created the first admin API key in %s", key_file)
    broker = AlertBroker(
        services.store.changes_after,
        services.store.max_alert_seq,
        services.executor,
        poll_interval=settings.effective_alert_poll_interval,
        backlog=settings.alert_backlog,
    )
    await broker.start()
    if fanout is not None:
        await fanout.subscribe(broker.learned, broker.catch_up)
    delivery = DeliveryWorker(services.store, services.destinations, utcnow)
    delivery.start()

    def on_committed(changed: list) -> None:
        broker.poke_threadsafe(changed)
        delivery.poke()
        if fanout is not None:
            fanout.publish_threadsafe(changed)

    services.ingest.on_committed = on_committed
    for detector in (
        services.engine.detectors
    ):  # import ML libraries and load models now, not on the first event
        if hasattr(detector, "warm_up"):
            await asyncio.to_thread(detector.warm_up)
    # On PostgreSQL the pass also makes the coming days' event partitions.
    expiry = (
        asyncio.create_task(
            RetentionService(
                services.ingest, retention, utcnow, housekeeping=services.partitions
            ).run_forever()
        )
        if retention.active or services.partitions is not None
        else None
    )
    scheduler = (
        asyncio.create_task(train_on_schedule(services, settings.train_interval * 3600))
        if services.training.available and settings.train_interval > 0
        else None
    )

    drain = DrainInterceptor()
    interceptors: list[grpc.aio.ServerInterceptor] = [drain]
    if tracer is not None:
        # First: the RPC's span covers authentication and the error mapping.
        interceptors.insert(0, tracing.server_interceptor())
    # The bundled gateway proves with this secret that it wrote x-forwarded-for.
    gateway_token = secrets.token_urlsafe(32)
    key_refresher = None
    if settings.allow_anonymous:
        log.warning(
            "API keys are off (--allow-anonymous): anyone who reaches %s may call every method",
            settings.listen,
        )
    else:
        authenticator = sec.Authenticator(services.security.find, ttl=settings.key_cache_seconds)
        await refresh_active_keys(services, authenticator)
        key_refresher = asyncio.create_task(
            refresh_active_keys(services, authenticator, settings.key_cache_seconds)
        )
        interceptors.append(
            AuthInterceptor(
                authenticator,
                services.audit.record,
                services.executor,
                sec.RateLimiter(settings.rate_limit, settings.rate_burst),
                sec.StreamLimiter(settings.max_streams_per_key),
                sec.FailureLimiter(settings.auth_failure_rate, settings.auth_failure_burst),
                gateway_token=gateway_token,
                trusted_proxies=trusted_proxies,
                recheck_seconds=settings.key_cache_seconds,
            )
        )
    interceptors.append(ErrorInterceptor())
    server = grpc.aio.server(
        interceptors=interceptors,
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.so_reuseport", 1),
            # Ping a connection with calls open that has been quiet for 30 s;
            # a peer that does not answer in 10 s (frozen, gone without a
            # FIN) is dropped, and its streams with it.
            ("grpc.keepalive_time_ms", 30_000),
            ("grpc.keepalive_timeout_ms", 10_000),
        ],
    )
    capabilities = Capabilities(
        version(),
        services.database.backend,
        services.analytics_mode,
        services.detector_infos(),
        event_log=status.read if status is not None else None,
    )
    stream = AlertStream(
        broker, services.store.changes_after, services.executor, settings.heartbeat_interval
    )
    service_pb2_grpc.add_BehaviorAnalyticsServiceServicer_to_server(
        BehaviorAnalyticsServicer(
            services.ingest,
            services.logs,
            services.dashboard,
            services.investigation,
            stream,
            services.backfill,
            services.training,
            capabilities,
            services.executor,
            sec.AuditTrail(services.security),
            IncidentService(services.store, services.ingest, services.analyzer),
            NotificationService(
                services.store,
                services.notifier,
                [DestinationInfo(d.name, d.kind, d.format) for d in services.destinations],
                delivery.poke,
            ),
            # With the event log the workers erase, in order with the
            # user's events (docs/scaling.md, "Erasure").
            LoggedErasureService(event_log, services.store)
            if event_log is not None
            else ErasureService(
                services.ingest,
                None if settings.disable_detection else services.analyzer,
                utcnow,
            ),
        ),
        server,
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )

    credentials = server_credentials(settings)
    port = (
        server.add_secure_port(settings.listen, credentials)
        if credentials
        else server.add_insecure_port(settings.listen)
    )
    if port == 0:
        raise SystemExit(f"uba: cannot listen on {settings.listen}")
    host = settings.listen.rsplit(":", 1)[0]
    await server.start()
    tune_garbage_collector()
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    security_note = (
        "TLS, client certificates required"
        if settings.tls_client_ca
        else "TLS"
        if credentials
        else "plaintext"
    )
    print(
        f"uba: listening on {host}:{port} ({security_note}, storage: {services.database.backend}, "
        f"analytics: {services.analytics_mode})",
        flush=True,
    )
    # Handlers first: a stop asked for while the gateway starts is a stop.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    gateway = (
        await start_gateway(settings, f"{host}:{port}", gateway_token)
        if settings.gateway_listen
        else None
    )
    log.info(
        "serving on %s:%d with %s storage, %d detectors",
        host,
        port,
        services.database.backend,
        len(services.engine.detectors),
    )

    watcher = asyncio.create_task(watch_database(services, health_servicer))
    gateway_watch = (
        asyncio.create_task(watch_gateway(gateway, stop)) if gateway is not None else None
    )
    await stop.wait()

    # Graceful stop: tell load balancers first, end streams with a status
    # that makes clients resume elsewhere, then let in-flight calls end.
    log.info("shutting down: health NOT_SERVING, grace period %.1fs", settings.grace_period)
    watcher.cancel()
    if key_refresher is not None:
        key_refresher.cancel()
    gateway_died = (
        gateway_watch is not None
        and gateway_watch.done()
        and not gateway_watch.cancelled()
        and gateway_watch.exception() is None
    )
    if gateway_watch is not None:
        gateway_watch.cancel()
    await health_servicer.enter_graceful_shutdown()
    drain.draining = True
    if gateway is not None:
        await asyncio.to_thread(gateway.stop)
    await broker.close()
    if scheduler is not None:
        scheduler.cancel()
    if expiry is not None:
        expiry.cancel()
    if services.partitions is not None:
        services.partitions.stop()  # its thread ends at its next batch
    # A moment for callers to see NOT_SERVING and UNAVAILABLE before the
    # port closes (calls that reach a closing port are CANCELLED by gRPC).
    await asyncio.sleep(min(DRAIN_SECONDS, settings.grace_period))
    await server.stop(settings.grace_period)
    if fanout is not None:
        await fanout.close()
    if event_log is not None:
        await event_log.close()
    # What is not sent yet stays in the outbox for the next start.
    await asyncio.to_thread(delivery.stop, min(settings.grace_period, 5.0))
    services.close()
    if metrics is not None:
        metrics.close()
    tracing.stop()
    if gateway_died:
        log.error("stopped because the gateway died: exit status 1")
        return 1
    log.info("stopped")
    return 0


def start_metrics(
    settings: Settings,
    services: Services,
    event_log: Callable[[], Coroutine[Any, Any, EventLogStatus]] | None = None,
):
    """The Prometheus metrics of this process, served on --metrics-listen
    (uba.observability.metrics): installed as the adapters' recorder, with
    the scrape-time reads of the writer queue, the engine, the pool,
    storage and (a front end) the event log's lag."""
    from uba.observability.metrics import Metrics, StateCollector

    metrics = Metrics()
    loop = asyncio.get_running_loop()

    def event_log_now() -> EventLogStatus:
        # Scrapes run on the HTTP server's thread; NATS is read on the loop.
        assert event_log is not None
        return asyncio.run_coroutine_threadsafe(event_log(), loop).result(timeout=5)

    destinations = [d.name for d in services.destinations]
    metrics.declare(("RecordActivity", "RecordActivities"), destinations)
    services.engine.measure_time()
    metrics.add_collector(
        StateCollector(
            pending=lambda: services.ingest.pending,
            max_pending=settings.max_pending_events,
            engine=services.engine,
            pool=services.database.engine.pool,
            counts=lambda: services.store.operational_counts(destinations),
            model_created_at=services.training.model_created_at,
            event_log=event_log_now if event_log is not None else None,
            build={
                "version": version(),
                "storage": services.database.backend,
                "analytics": services.analytics_mode,
            },
        )
    )
    services.training.on_trained = metrics.trained
    metrics.watch_gc()
    observability.install(metrics)
    host, port = metrics.serve(settings.metrics_listen)
    print(f"uba: metrics on http://{host}:{port}/metrics", flush=True)
    return metrics


def retention_policy(settings: Settings) -> RetentionPolicy:
    try:
        return RetentionPolicy(
            events_days=settings.retention_days,
            anomaly_days=settings.anomaly_retention_days,
            alert_days=settings.alert_retention_days,
            notification_days=settings.notification_retention_days,
            audit_days=settings.audit_retention_days,
        )
    except ValueError as exc:
        raise SystemExit(f"uba: retention: {exc}") from None


def event_log_limits(settings: Settings):
    from uba.eventlog.layout import StreamLimits

    try:
        return StreamLimits(
            partitions=settings.event_log_partitions,
            max_msgs=settings.event_log_max_msgs,
            max_bytes=settings.event_log_max_bytes,
            replicas=settings.event_log_replicas,
        )
    except ValueError as exc:
        raise SystemExit(f"uba: {exc}") from None


def _said(exc: BaseException) -> str:
    """An event-log failure for the operator: our own refusals say what to
    change; NATS's errors are shown with their type."""
    from uba.eventlog.layout import EventLogRefused

    return str(exc) if isinstance(exc, EventLogRefused) else repr(exc)


def _require_shared_database(settings: Settings) -> None:
    """Front ends and workers of one log must share a database."""
    if not settings.database_url.startswith("postgresql"):
        raise SystemExit(
            "uba: --event-log needs --database-url postgresql://... shared by the front ends "
            "and workers"
        )


def event_log_sink(settings: Settings):
    """The front end's sink: events go to the log, not the local writer."""
    _require_shared_database(settings)
    try:
        from uba.eventlog.publisher import NatsEventSink
    except ImportError:
        raise SystemExit("uba: --event-log needs nats-py: install uba[eventlog]") from None
    try:
        return NatsEventSink(
            settings.event_log,
            event_log_limits(settings),
            utcnow,
            timeout=settings.event_log_timeout,
        )
    except ValueError as exc:
        raise SystemExit(f"uba: --event-log: {exc}") from None


async def start_fanout(settings: Settings, name: str, services: Services):
    """The process's connection for alert and incident changes (it publishes
    those it commits; a front end also subscribes once its broker runs)."""
    from uba.eventlog.fanout import ChangeFanout

    fanout = ChangeFanout(settings.event_log, name)
    try:
        await fanout.start()
    except Exception as exc:  # noqa: BLE001 - NATS unreachable at start
        services.close()
        raise SystemExit(f"uba: event log {settings.event_log}: {exc!r}") from None
    return fanout


async def run_worker(settings: Settings) -> int:
    """`uba worker`: consumes owned partitions of the event log into the
    database through the same writer (GroupCommit) as the embedded mode."""
    if not settings.event_log:
        raise SystemExit("uba worker: --event-log nats://HOST:PORT is required")
    _require_shared_database(settings)
    try:
        from uba.eventlog.worker import EventLogWorker
    except ImportError:
        raise SystemExit("uba: --event-log needs nats-py: install uba[eventlog]") from None
    limits = event_log_limits(settings)  # refused before anything is opened
    # The user partitions run the user detectors; the population detectors
    # run on the population partitions, one analyzer each.
    services = build_services(settings, scope=USER_SCOPE)
    for detector in services.engine.detectors:
        if hasattr(detector, "warm_up"):
            await asyncio.to_thread(detector.warm_up)
    config = detector_config(settings, services.registry)

    def population_analyzer(partition: int, accept, state_name: str) -> Analyzer:
        engine = DetectionEngine(
            services.registry,
            config,
            scope=POPULATION_SCOPE,
            accept=accept,
            defaults=dict.fromkeys(STATE_BOUNDS, settings.cached_users),
        )
        return Analyzer(
            engine,
            AlertPolicy(titles=engine.titles),
            RiskPolicy(),
            utcnow,
            cache_size=2_000,
            state_name=state_name,
        )

    detecting = services.detection_enabled
    population = PopulationPartitions(
        services.store, population_analyzer if detecting else None, services.notifier, utcnow
    )
    # The user partitions share the population aggregates (peer windows)
    # and the priors with the other workers' through the log.
    users = UserPartitions(services.ingest, services.analyzer if detecting else None, utcnow)
    await asyncio.wrap_future(users.prepare())
    try:
        worker = EventLogWorker(
            settings.event_log,
            limits,
            users,
            lease_seconds=settings.worker_lease_seconds,
            ack_wait=settings.worker_ack_wait,
            batch=settings.worker_batch,
            population=population,
            aggregates=users if users.aggregates is not None else None,
        )
    except ValueError as exc:
        population.close()
        users.close()
        services.close()
        raise SystemExit(f"uba: --event-log: {exc}") from None
    # After each commit: its alert and incident changes to every front end.
    fanout = await start_fanout(settings, f"uba-worker-{worker.owner}", services)
    services.ingest.on_committed = fanout.publish_threadsafe
    metrics = None
    if settings.metrics_listen:
        # The worker's own page: what its writer stores and its detectors
        # spend, and the log's lag as the front ends report it.
        from uba.eventlog.status import StatusReader

        status = StatusReader(fanout.connection, limits.partitions)
        metrics = start_metrics(settings, services, status.read)
        services.ingest.telemetry = WriterTelemetry(metrics, None)
    population.on_committed = fanout.publish_threadsafe
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    ready = asyncio.Event()
    task = asyncio.create_task(worker.run(stop, ready))
    ready_wait = asyncio.create_task(ready.wait())
    await asyncio.wait((task, ready_wait), return_when=asyncio.FIRST_COMPLETED)
    if ready.is_set():
        tune_garbage_collector()
        print(
            f"uba: worker {worker.owner} consuming {settings.event_log} "
            f"(storage: {services.database.backend}, analytics: {services.analytics_mode})",
            flush=True,
        )
    code = 0
    try:
        await task
    except Exception as exc:  # noqa: BLE001 - NATS unreachable at start, or no JetStream
        log.error("worker stopped: %s", _said(exc))
        code = 1
    ready_wait.cancel()
    await asyncio.to_thread(population.close)
    await asyncio.to_thread(users.close)
    await fanout.close()
    services.close()
    if metrics is not None:
        metrics.close()
    return code


def tune_garbage_collector() -> None:
    """With Python's defaults, under load, full collections of the cyclic
    garbage collector come often and take long (they traverse every cached
    baseline, detector window and library object) while every call in
    flight waits. So the objects alive once the server is up (libraries,
    the model) are frozen out of collections, and collections run less
    often: the young generation every 10,000 allocations instead of 700
    (cyclic garbage still dies young), full ones after 100 middle ones
    instead of 10. Measurements: docs/benchmarks.md."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 20, 100)


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """TLS for the gRPC port from the PEM files named by the settings (None:
    plaintext). With a client CA, a client without a certificate it signed
    fails the handshake."""
    if not settings.tls_cert:
        return None
    pair = (Path(settings.tls_key).read_bytes(), Path(settings.tls_cert).read_bytes())
    client_ca = Path(settings.tls_client_ca).read_bytes() if settings.tls_client_ca else None
    return grpc.ssl_server_credentials(
        [pair], root_certificates=client_ca, require_client_auth=client_ca is not None
    )


async def start_gateway(settings: Settings, upstream: str, gateway_token: str = ""):
    """Starts Envoy in front of this server (REST, SSE, the dashboard page
    and native gRPC on one address) and waits until it serves."""
    from uba.gateway import GatewayProcess, TlsFiles

    listen_tls = upstream_tls = None
    if settings.tls_cert:
        # With --tls-client-ca, the gateway asks for client certificates too.
        listen_tls = TlsFiles(settings.tls_cert, settings.tls_key, settings.tls_client_ca)
        upstream_tls = TlsFiles(
            settings.gateway_client_cert,
            settings.gateway_client_key,
            settings.gateway_upstream_ca or settings.tls_cert,
        )
    gateway = GatewayProcess(
        upstream,
        settings.gateway_listen,
        work_dir=Path(settings.data_dir) / "gateway",
        listen_tls=listen_tls,
        upstream_tls=upstream_tls,
        proxy_token=gateway_token,
    )
    gateway.start()
    await asyncio.to_thread(gateway.wait_ready)
    print(
        f"uba: gateway on {gateway.url} (dashboard, REST under /api/behavior-analytics/, gRPC)",
        flush=True,
    )
    return gateway


async def refresh_active_keys(
    services: Services, authenticator: sec.Authenticator, every_seconds: float | None = None
) -> None:
    """Keeps the authenticator's set of active keys current: once, or every
    `every_seconds` for as long as the server runs."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            digests = await loop.run_in_executor(
                services.executor, services.security.active_digests, utcnow()
            )
            authenticator.remember_active(digests)
        except Exception:  # noqa: BLE001 - the database is down; keys are still looked up one by one
            log.warning("cannot refresh the set of active API keys", exc_info=True)
        if every_seconds is None:
            return
        await asyncio.sleep(max(every_seconds, 1.0))


async def watch_gateway(gateway, stop: asyncio.Event) -> None:
    """A gateway that dies (Envoy killed or crashed) would leave REST down
    with nobody told: log it and stop the whole server, which then exits
    non-zero, so that a supervisor restarts both. (Envoy, for its part, gets
    SIGTERM when this process dies: see uba.gateway.launch.)"""
    from uba.gateway.launch import describe_exit

    code = await gateway.exited()
    log.error(
        "the gateway (envoy, pid %d) exited unexpectedly (%s); stopping the server so that its "
        "supervisor restarts both",
        gateway.process.pid,
        describe_exit(code),
    )
    stop.set()


async def train_on_schedule(services: Services, every_seconds: float) -> None:
    """Trains the Isolation Forest when stored history calls for it (no
    model yet, newer events by a train interval of event time, or older
    history imported: TrainingService.due), checked every ten minutes (or
    each interval when shorter), on a storage thread."""
    loop = asyncio.get_running_loop()
    poll = min(600.0, every_seconds)
    await asyncio.sleep(min(60.0, poll))
    while True:
        try:
            done = await loop.run_in_executor(
                services.executor, services.training.scheduled, timedelta(seconds=every_seconds)
            )
            if done is not None:
                reason, info = done
                log.info(
                    "isolation forest trained (%s): model %s on %d rows",
                    reason,
                    info.version,
                    info.rows,
                )
        except Exception as exc:  # noqa: BLE001 - too little history yet, or the database is down
            log.info("scheduled isolation forest training skipped: %s", exc)
        await asyncio.sleep(poll)


async def watch_database(services: Services, health_servicer, interval: float = 1.0) -> None:
    """Health follows the database: NOT_SERVING while it cannot be reached
    (load balancers stop sending; clients retry), SERVING once it is back."""
    loop = asyncio.get_running_loop()
    serving = True
    while True:
        await asyncio.sleep(interval)
        try:
            await asyncio.wait_for(loop.run_in_executor(services.executor, services.store.ping), 5)
            reachable = True
        except Exception:  # noqa: BLE001 - any failure means: not serving
            reachable = False
        if reachable != serving:
            serving = reachable
            status = (
                health_pb2.HealthCheckResponse.SERVING
                if serving
                else health_pb2.HealthCheckResponse.NOT_SERVING
            )
            for name in ("", SERVICE_NAME):
                await health_servicer.set(name, status)
            log.warning(
                "database %s: health %s",
                "reachable again" if serving else "unreachable",
                "SERVING" if serving else "NOT_SERVING",
            )
