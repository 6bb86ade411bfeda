"""The data directory is the owner's alone, and nothing planted in it is
followed: a real server (with its gateway) creates the directory 0700 and
every file 0600 whatever umask it was started with, narrows its own files
that an older start left readable, and replaces a symbolic link planted at
admin.key instead of writing through it."""

from __future__ import annotations

import os
import stat
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from gateway.gateway_support import API, Client
from support.events import event, unique
from support.server import ServerProcess

from uba.v1 import service_pb2


@contextmanager
def umask(value: int):
    """The umask the server process inherits (the usual, permissive one)."""
    previous = os.umask(value)
    try:
        yield
    finally:
        os.umask(previous)


def modes(root: Path) -> dict[str, int]:
    """Permission bits of the data dir and of everything in it."""
    found = {".": stat.S_IMODE(root.stat().st_mode)}
    for folder, dirs, files in os.walk(root):
        for name in (*dirs, *files):
            path = Path(folder) / name
            found[str(path.relative_to(root))] = stat.S_IMODE(path.lstat().st_mode)
    return found


def open_to_others(root: Path) -> dict[str, str]:
    return {name: f"{mode:04o}" for name, mode in modes(root).items() if mode & 0o077}


def wait_for(condition, what: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := condition():
            return result
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_server_and_gateway_create_every_data_file_owner_only(tmp_path):
    data = tmp_path / "data"
    with umask(0o022):
        server = ServerProcess(data, extra_args=["--gateway-listen", "127.0.0.1:0"]).start()
    try:
        line = wait_for(
            lambda: next((out for out in server.output if "uba: gateway on " in out), None),
            "the gateway",
        )
        gateway = Client(
            line.split("uba: gateway on ", 1)[1].split()[0].removeprefix("http://"), server.api_key
        )
        user = unique("private")
        reply = server.stub.RecordActivities(
            service_pb2.RecordActivitiesRequest(events=[event(user)])
        )
        assert reply.accepted_count == 1
        # A query string Envoy's access log records in full.
        assert gateway.get(f"{API}/logs", params={"user_id": user}).status == 200
        log = data / "gateway" / "envoy.log"
        wait_for(lambda: log.exists() and user.encode() in log.read_bytes(), "the access log line")
        files = modes(data)
        for expected in ("uba.db", "uba.db-wal", "admin.key", "gateway/envoy.log"):
            assert expected in files, sorted(files)
        assert files["."] == 0o700
        assert open_to_others(data) == {}, server.log()
    finally:
        server.stop()


def test_an_existing_data_dir_is_narrowed_with_a_warning(tmp_path):
    data = tmp_path / "data"
    with umask(0o022):
        ServerProcess(data).start().stop()
        # As an older version, or a start with a wider umask, left them.
        data.chmod(0o755)
        for name in ("uba.db", "uba.db-wal", "uba.db-shm", "admin.key"):
            if (data / name).exists():
                (data / name).chmod(0o644)
        (data / "notes.txt").write_text("the operator's own file\n")
        (data / "notes.txt").chmod(0o644)
        server = ServerProcess(data).start()
    try:
        server.stub.RecordActivity(service_pb2.RecordActivityRequest(event=event(unique("again"))))
        # uba's own files are narrowed; a file it does not know is left as it
        # was, and so is the directory, with a warning for each.
        assert open_to_others(data) == {".": "0755", "notes.txt": "0644"}
        assert "narrowed to owner-only access" in server.log() and "admin.key" in server.log()
        assert f"chmod 700 {data}" in server.log()
    finally:
        server.stop()


@pytest.mark.parametrize("target_exists", [True, False], ids=["to-a-file", "dangling"])
def test_a_symbolic_link_planted_at_admin_key_is_replaced_not_followed(tmp_path, target_exists):
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    target = tmp_path / "elsewhere" / "precious"
    target.parent.mkdir()
    if target_exists:
        target.write_text("the victim's file\n")
        target.chmod(0o644)
    (data / "admin.key").symlink_to(target)
    server = ServerProcess(data).start()
    try:
        # The target is untouched (or still absent: the link was not created through).
        if target_exists:
            assert (
                target.read_text() == "the victim's file\n"
                and stat.S_IMODE(target.stat().st_mode) == 0o644
            )
        else:
            assert not target.exists()
        key_file = data / "admin.key"
        assert not key_file.is_symlink() and key_file.is_file()
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        assert [
            p.name for p in data.iterdir() if p.name.startswith(".admin.key")
        ] == []  # no temporary left
        assert "symbolic link" in server.log()
        # The key written is the server's admin key.
        assert server.api_key == key_file.read_text().strip()
        server.stub.ListLogs(service_pb2.ListLogsRequest(page_size=1))
    finally:
        server.stop()


@pytest.mark.parametrize(
    "command", [["db", "upgrade"], ["keys", "create", "--name", "ops", "--scope", "read"]]
)
def test_commands_that_create_the_database_create_it_owner_only(tmp_path, command):
    import subprocess
    import sys

    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("UBA_")}
    with umask(0o022):
        done = subprocess.run(
            [sys.executable, "-m", "uba", *command, "--data-dir", str(data)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 0, done.stderr
    assert "uba.db" in modes(data) and open_to_others(data) == {}
