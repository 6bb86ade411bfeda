"""Online backup of the embedded SQLite database while a server writes to it.

SQLite's backup API copies the database page by page. Left to itself, it
starts again from the first page whenever another connection commits
between two steps, so against a server that commits every few milliseconds
a paced backup would never finish. Here the source connection first opens
a read transaction: every step then reads that one snapshot (WAL lets the
server keep committing meanwhile), and a short pause after each step leaves
the disk and the CPU to the server. The copy is written to a temporary file
beside the target, checked with PRAGMA integrity_check (or quick_check),
flushed to disk and renamed over the target, so the target is always either
the previous backup or a complete, checked new one.

PostgreSQL is backed up with its own tools (pg_dump); see docs/operations.md.
"""

from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url


class BackupError(Exception):
    """The backup could not be made; the target is left as it was."""


@dataclass(frozen=True, slots=True)
class BackupResult:
    source: Path
    target: Path
    pages: int
    bytes: int
    seconds: float
    check: str  # the PRAGMA that verified the copy


def pg_dump_hint(url: str) -> str:
    """The command that backs up the PostgreSQL database of `url`."""
    libpq = make_url(url).set(drivername="postgresql").render_as_string(hide_password=True)
    return (
        "this copies the embedded SQLite database; this one is PostgreSQL: back it up "
        f"with pg_dump, e.g. pg_dump -Fc -f FILE '{libpq}' (restore with pg_restore; see "
        "docs/operations.md, Backup and restore)"
    )


def sqlite_file(url: str) -> Path:
    """The database file of a SQLite URL; BackupError for anything else."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql":
        raise BackupError(pg_dump_hint(url))
    if parsed.get_backend_name() != "sqlite":
        raise BackupError(f"cannot back up a {parsed.get_backend_name()!r} database")
    if not parsed.database or parsed.database == ":memory:":
        raise BackupError("an in-memory database has nothing on disk to back up")
    return Path(parsed.database)


def backup_sqlite(
    source: Path,
    target: Path,
    *,
    pages_per_step: int = 1024,
    pause: float = 0.005,
    full_check: bool = True,
) -> BackupResult:
    """Copies `source` to `target` as of one moment while other processes
    keep writing to it, pausing `pause` seconds after each step of
    `pages_per_step` pages."""
    source, target = Path(source).resolve(), Path(target).absolute()
    if not source.is_file():
        raise BackupError(f"no database at {source}")
    if target.resolve() in {source, *(Path(f"{source}{s}") for s in ("-wal", "-shm"))}:
        raise BackupError(f"{target} is the database itself; choose another file")
    if not target.parent.is_dir():
        raise BackupError(f"directory {target.parent} does not exist")
    if target.is_dir():
        raise BackupError(f"{target} is a directory; name a file")
    temporary = target.with_name(f".{target.name}.{os.getpid()}.partial")
    started = time.monotonic()
    try:
        pages = _copy(source, temporary, pages_per_step, pause)
        check = "integrity_check" if full_check else "quick_check"
        _verify(temporary, check)
        _flush(temporary)
        os.replace(temporary, target)
        _flush(target.parent)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return BackupResult(
        source, target, pages, target.stat().st_size, time.monotonic() - started, check
    )


def _copy(source: Path, temporary: Path, pages_per_step: int, pause: float) -> int:
    # mode=rw: never create an empty database where none is.
    src = sqlite3.connect(
        source.as_uri() + "?mode=rw", uri=True, timeout=15.0, isolation_level=None
    )
    try:
        src.execute("PRAGMA busy_timeout=15000")
        # The snapshot starts at the first read of the transaction.
        src.execute("BEGIN")
        src.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        temporary.unlink(missing_ok=True)
        dst = sqlite3.connect(temporary, isolation_level=None)
        total = [0]

        def step(_status: int, remaining: int, count: int) -> None:
            total[0] = count
            if remaining and pause > 0:
                time.sleep(pause)

        try:
            src.backup(dst, pages=pages_per_step, progress=step)
        except sqlite3.Error as exc:
            raise BackupError(f"copying {source} failed: {exc}") from exc
        finally:
            dst.close()
        src.execute("ROLLBACK")
        return total[0]
    except sqlite3.Error as exc:
        raise BackupError(f"reading {source} failed: {exc}") from exc
    finally:
        src.close()


def _verify(path: Path, check: str) -> None:
    # immutable: a plain read of the file, no -wal or -shm left beside it.
    conn = sqlite3.connect(path.as_uri() + "?mode=ro&immutable=1", uri=True)
    try:
        rows = [r[0] for r in conn.execute(f"PRAGMA {check}")]
    except sqlite3.Error as exc:
        raise BackupError(f"the copy cannot be read: {exc}") from exc
    finally:
        conn.close()
    if rows != ["ok"]:
        raise BackupError(f"the copy fails {check}: " + "; ".join(map(str, rows[:5])))


def _flush(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
