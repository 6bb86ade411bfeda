"""Connecting to the database and keeping its schema current.

SQLite is the embedded default: WAL so readers never wait for the writer,
synchronous=FULL so a committed (acknowledged) event survives a power loss,
a busy timeout, and BEGIN IMMEDIATE for write transactions so two writers
never deadlock on a lock upgrade. PostgreSQL is used through psycopg2.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).with_name("migrations")
SQLITE_BUSY_TIMEOUT_MS = 15_000


class Database:
    """One engine per process, and the two kinds of transaction we use."""

    def __init__(self, url: str, pool_size: int = 16):
        self.url = make_url(url)
        self.backend = self.url.get_backend_name()  # "sqlite" or "postgresql"
        self._held: Connection | None = None
        if self.backend == "sqlite":
            self.engine = _sqlite_engine(url)
        elif self.backend == "postgresql":
            self.engine = create_engine(
                url,
                pool_size=pool_size,
                max_overflow=pool_size,
                # A restarted database leaves dead pooled connections behind.
                pool_pre_ping=True,
            )
        else:
            raise ValueError(
                f"unsupported database {self.backend!r}: use sqlite:// or postgresql+psycopg2://"
            )

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction: committed on exit, rolled back on error."""
        with self.engine.connect() as conn:
            if self.backend == "sqlite":
                conn = conn.execution_options(sqlite_immediate=True)
            with conn.begin():
                yield conn

    @contextmanager
    def write_held(self) -> Iterator[Connection]:
        """A write transaction on a connection kept open between calls, for
        the single writer thread: saves the pool round trip on every group
        commit. A failed transaction discards the connection, so a restarted
        database gets a fresh one."""
        conn = self._held
        if conn is None:
            conn = self.engine.connect()
            if self.backend == "sqlite":
                conn = conn.execution_options(sqlite_immediate=True)
            self._held = conn
        try:
            with conn.begin():
                yield conn
        except BaseException:
            self._held = None
            try:
                conn.invalidate()
                conn.close()
            except Exception:  # noqa: BLE001 - already broken; nothing more to do
                log.debug("discarding the writer connection failed", exc_info=True)
            raise

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            yield conn

    def upgrade(self) -> None:
        """Applies every pending migration (idempotent)."""
        with self.engine.begin() as conn:
            cfg = Config()
            cfg.set_main_option("script_location", str(MIGRATIONS))
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    def current_revision(self) -> str | None:
        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    @staticmethod
    def head_revision() -> str | None:
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        return ScriptDirectory.from_config(cfg).get_current_head()

    def dispose(self) -> None:
        if self._held is not None:
            self._held.close()
            self._held = None
        self.engine.dispose()


def _sqlite_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False}
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):  # noqa: ANN001
        # Let SQLAlchemy, not the driver, issue BEGIN (see _on_begin).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get("sqlite_immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine
