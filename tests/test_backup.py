"""Backups taken while a server is serving, restored, and served again.

SQLite: `uba db backup FILE`. PostgreSQL: `pg_dump -Fc`, `pg_restore` into
a new database (the documented commands). Either copy is the database as
of one moment after the command started: every event acknowledged before
the command started is in it; of the events acknowledged while it ran,
those committed before that moment are, later ones are not; nothing
acknowledged after it ended is. Since an acknowledgement means committed,
and a call's events commit in one transaction, the copy holds exactly the
first k calls of a client that sends one call at a time, for some k.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url
from support.events import API_CALL, event, stored_events, unique
from support.server import ServerProcess

from uba.v1 import service_pb2

BATCH = 25


def run(args: list[str]) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("UBA_")}
    return subprocess.run(args, capture_output=True, text=True, timeout=120, env=env)


def uba(*args: str) -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", "uba", *args])


class Sender:
    """One client sending calls of BATCH events one after another, keeping
    when each was sent and acknowledged."""

    def __init__(self, stub, user: str):
        self.stub, self.user = stub, user
        self.calls: list[tuple[float, float, list[str]]] = []  # (sent, acknowledged, ids)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)
        self.error: BaseException | None = None

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                n = len(self.calls)
                batch = [
                    event(self.user, API_CALL, event_id=f"{self.user}-{n}-{k}")
                    for k in range(BATCH)
                ]
                sent = time.monotonic()
                reply = self.stub.RecordActivities(
                    service_pb2.RecordActivitiesRequest(events=batch), timeout=60
                )
                assert reply.accepted_count == BATCH
                self.calls.append((sent, time.monotonic(), [e.event_id for e in batch]))
        except BaseException as exc:  # noqa: BLE001 - reported by stop()
            self.error = exc

    def __enter__(self) -> Sender:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(90)
        assert self.error is None, f"the client failed: {self.error!r}"

    def wait_for(self, calls: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.calls) < calls:
            assert self.error is None, f"the client failed: {self.error!r}"
            assert time.monotonic() < deadline, f"only {len(self.calls)} calls acknowledged"
            time.sleep(0.05)


def served_then_restored(
    old: ServerProcess, take_copy: Callable[[], None], restore: Callable[[], ServerProcess]
) -> None:
    """Sends while `take_copy` runs, stops `old`, starts the server that
    `restore` builds from the copy, and checks what it holds."""
    user = unique("backup")
    with Sender(old.stub, user) as sender:
        sender.wait_for(40)
        began = time.monotonic()
        take_copy()
        ended = time.monotonic()
        sender.wait_for(len(sender.calls) + 5)
    assert old.stop() == 0
    calls = sender.calls
    new = restore()
    try:
        found = {e.event_id for e in stored_events(new.stub, user)}
        before = [ids for _, acked, ids in calls if acked < began]
        after = [ids for sent, _, ids in calls if sent > ended]
        assert before and after
        missing = {i for ids in before for i in ids} - found
        assert not missing, f"{len(missing)} events acknowledged before the backup are not in it"
        assert not found & {i for ids in after for i in ids}
        # One moment: the first k calls, whole, and nothing else.
        k = len(found) // BATCH
        assert found == {i for _, _, ids in calls[:k] for i in ids}
        # The restored server serves: dedupes what it holds, stores what is new.
        again = new.stub.RecordActivities(
            service_pb2.RecordActivitiesRequest(
                events=[
                    event(user, API_CALL, event_id=before[0][0]),
                    event(user, API_CALL, event_id=f"{user}-restored"),
                ]
            )
        )
        assert (again.accepted_count, again.duplicate_count) == (1, 1)
    finally:
        new.stop()


def test_sqlite_backup_while_serving_restores_every_acknowledged_event(tmp_path):
    old = ServerProcess(tmp_path / "old").start()
    target = tmp_path / "backups" / "uba.db"
    target.parent.mkdir()

    def take_copy() -> None:
        # Small steps, so the copy spans many of the server's commits.
        done = uba(
            "db",
            "backup",
            str(target),
            "--data-dir",
            str(old.data_dir),
            "--pages",
            "8",
            "--pause",
            "0.002",
        )
        assert done.returncode == 0, done.stderr
        assert "integrity_check ok" in done.stdout
        assert [p.name for p in target.parent.iterdir()] == ["uba.db"]  # no partial file left
        assert target.stat().st_mode & 0o077 == 0  # the owner's alone, like the database

    def restore() -> ServerProcess:
        (tmp_path / "new").mkdir()
        shutil.copy(target, tmp_path / "new" / "uba.db")
        return ServerProcess(tmp_path / "new", api_key=old.api_key).start()

    try:
        served_then_restored(old, take_copy, restore)
    finally:
        old.kill()


def test_backup_refuses_postgresql_and_names_pg_dump(tmp_path):
    done = uba(
        "db",
        "backup",
        str(tmp_path / "x.db"),
        "--database-url",
        "postgresql+psycopg2://uba:secret@db.internal:5432/uba",
    )
    assert done.returncode == 2
    assert "pg_dump -Fc" in done.stderr
    assert "postgresql://uba:***@db.internal:5432/uba" in done.stderr
    assert "secret" not in done.stderr
    assert not (tmp_path / "x.db").exists()


def libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.mark.skipif(
    not (shutil.which("pg_dump") and shutil.which("pg_restore")),
    reason="pg_dump and pg_restore (PostgreSQL client tools) are not installed",
)
def test_pg_dump_while_serving_restores_every_acknowledged_event(tmp_path, make_database_url):
    url = make_database_url("postgresql")
    old = ServerProcess(tmp_path / "old", url).start()
    dump = tmp_path / "uba.dump"
    copy_url = make_database_url("postgresql")

    def take_copy() -> None:
        done = run(["pg_dump", "-Fc", "-f", str(dump), libpq(url)])
        assert done.returncode == 0, done.stderr

    def restore() -> ServerProcess:
        done = run(
            [
                "pg_restore",
                "--exit-on-error",
                "--single-transaction",
                "--no-owner",
                "-d",
                libpq(copy_url),
                str(dump),
            ]
        )
        assert done.returncode == 0, done.stderr
        return ServerProcess(tmp_path / "new", copy_url, api_key=old.api_key).start()

    try:
        served_then_restored(old, take_copy, restore)
    finally:
        old.kill()


def test_backup_of_a_missing_database_creates_nothing(tmp_path: Path):
    done = uba("db", "backup", str(tmp_path / "x.db"), "--data-dir", str(tmp_path / "nothing"))
    assert done.returncode == 1 and "no database at" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []
