"""`uba gateway`: run Envoy in front of a uba gRPC server.

Renders the configuration into DATA_DIR/gateway, validates it with
`envoy --mode validate`, then runs Envoy in the foreground until SIGTERM or
SIGINT, which it passes on to Envoy. An Envoy that exits without being asked
to (killed, crashed) makes the command exit non-zero, so that a supervisor
restarts it.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from uba.config import Settings
from uba.datadir import make_private

DEFAULT_LISTEN = "127.0.0.1:8080"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "gateway",
        help="run the REST gateway (Envoy) in front of a uba server",
        description=(
            "Run Envoy with the gRPC-JSON transcoder: REST, server-sent events, the dashboard page "
            "and native gRPC on one listener, all forwarded to the uba gRPC server."
        ),
    )
    parser.add_argument(
        "--upstream",
        default=None,
        metavar="HOST:PORT",
        help="the uba gRPC server, or several processes as HOST:PORT,HOST:PORT (load is spread "
        "over the healthy ones) [UBA_LISTEN, 127.0.0.1:50051]",
    )
    parser.add_argument(
        "--listen",
        default=DEFAULT_LISTEN,
        metavar="HOST:PORT",
        help="address browsers and gRPC clients connect to (port 0 picks a free one) "
        f"[{DEFAULT_LISTEN}]",
    )
    parser.add_argument(
        "--data-dir",
        default=None,
        help="the configuration is written to DATA_DIR/gateway [UBA_DATA_DIR, ./data]",
    )
    parser.add_argument(
        "--envoy", default=None, metavar="PATH", help="envoy binary [the venv's, then PATH]"
    )
    parser.add_argument(
        "--log-level",
        default="warning",
        choices=["trace", "debug", "info", "warning", "error", "critical", "off"],
        help="Envoy's log level [warning]; access log lines go to stdout",
    )
    tls = parser.add_argument_group("TLS (PEM files)")
    tls.add_argument(
        "--tls-cert",
        default="",
        metavar="FILE",
        help="serve HTTPS and gRPC over TLS with this certificate chain",
    )
    tls.add_argument("--tls-key", default="", metavar="FILE", help="private key of --tls-cert")
    tls.add_argument(
        "--client-ca",
        default="",
        metavar="FILE",
        help="require client certificates signed by these CAs on the listener",
    )
    tls.add_argument(
        "--upstream-ca",
        default="",
        metavar="FILE",
        help="connect to the server(s) over TLS, verifying them with these CAs",
    )
    tls.add_argument(
        "--upstream-cert",
        default="",
        metavar="FILE",
        help="client certificate for servers that require one (with --upstream-ca)",
    )
    tls.add_argument(
        "--upstream-key", default="", metavar="FILE", help="private key of --upstream-cert"
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="render and validate the configuration, print its path, and exit",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # deferred: `uba --help` stays fast
    from uba.gateway import GatewayError, GatewayProcess, TlsFiles, validate
    from uba.gateway.launch import describe_exit

    settings = Settings.load(argparse.Namespace(data_dir=args.data_dir, listen=args.upstream))
    work_dir = Path(settings.data_dir) / "gateway"
    try:
        make_private(settings.data_dir)  # Envoy's log records full query strings
        listen_tls = (
            TlsFiles(args.tls_cert, args.tls_key, args.client_ca)
            if args.tls_cert or args.tls_key or args.client_ca
            else None
        )
        upstream_tls = (
            TlsFiles(args.upstream_cert, args.upstream_key, args.upstream_ca)
            if args.upstream_ca or args.upstream_cert or args.upstream_key
            else None
        )
        if listen_tls is not None and not listen_tls.cert:
            raise ValueError("--client-ca needs --tls-cert and --tls-key")
        gateway = GatewayProcess(
            settings.listen,
            args.listen,
            work_dir=work_dir,
            envoy=args.envoy,
            log_level=args.log_level,
            foreground=True,
            listen_tls=listen_tls,
            upstream_tls=upstream_tls,
        )
        rendered = gateway.rendered_config()
        validate(rendered.config_path, gateway.envoy)
    except (GatewayError, ValueError, OSError) as exc:
        print(f"uba gateway: {exc}", file=sys.stderr)
        return 2
    if args.check:
        print(f"uba gateway: {rendered.config_path} is valid")
        return 0
    if refusal := _anonymous_upstream(gateway):
        print(f"uba gateway: {refusal}", file=sys.stderr)
        return 2

    asked_to_stop: list[int] = []

    def forward(signum: int, _frame) -> None:
        asked_to_stop.append(signum)
        gateway.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        gateway.start()
        try:
            gateway.wait_ready()
        except GatewayError as exc:
            print(f"uba gateway: {exc}", file=sys.stderr)
            gateway.stop()
            return 1
        print(
            f"uba gateway: listening on {gateway.listen_address} -> {settings.listen} "
            f"(dashboard {gateway.url}/, admin socket {gateway.admin_socket})",
            flush=True,
        )
        code = gateway.wait()
    finally:
        gateway.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if asked_to_stop:
        # Envoy exits 0 on SIGTERM; report a signal-initiated stop as success.
        return 0 if code in (0, -signal.SIGTERM, -signal.SIGINT) else 1
    assert gateway.process is not None  # started: wait() returned its exit code
    print(
        f"uba gateway: envoy (pid {gateway.process.pid}) exited unexpectedly "
        f"({describe_exit(code)}); the gateway is down",
        file=sys.stderr,
        flush=True,
    )
    return 1


def _anonymous_upstream(gateway) -> str:
    """The reason to refuse a listener beyond loopback in front of a server
    that answers without an API key (`--allow-anonymous`), else "". A
    server that cannot be reached yet is let be, with a warning: it is
    asked again at the next start."""
    from uba.gateway.probe import accepts_anonymous, is_loopback

    config = gateway.config
    if is_loopback(config.listen):
        return ""
    for host, port in config.upstreams():
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        answer = accepts_anonymous(address, config.upstream_tls)
        if answer:
            return (
                f"the server at {address} answers without an API key (--allow-anonymous); "
                f"refusing to expose it on {config.listen}: listen on a loopback address or give "
                "the server API keys"
            )
        if answer is None:
            print(
                f"uba gateway: warning: could not check whether the server at {address} requires "
                "API keys (not reachable now)",
                file=sys.stderr,
            )
    return ""
