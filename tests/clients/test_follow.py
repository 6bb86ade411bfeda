"""`uba ingest --follow` end to end: a real follower process against a real
server, a real file appended to, rotated, truncated; stopped with SIGTERM
and started again from its checkpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from support.server import KEYS

from uba_client import UbaClient


def stored(address: str) -> list:
    with UbaClient(address, api_key=KEYS.get(address)) as client:
        return [e for e in client.iter_logs() if e.user_id.startswith("fol-")]


def wait_for(address: str, count: int, timeout: float = 15.0) -> list:
    deadline = time.monotonic() + timeout
    while True:
        events = stored(address)
        if len(events) >= count or time.monotonic() > deadline:
            assert len(events) == count, f"{len(events)} events stored, expected {count}"
            return events
        time.sleep(0.1)


class Log:
    """Lines of distinct logins, one second apart."""

    def __init__(self, path: Path):
        self.path = path
        self.n = 0

    def lines(self, k: int) -> str:
        out = []
        for _ in range(k):
            self.n += 1
            out.append(
                f"Mar  1 10:{self.n // 60:02d}:{self.n % 60:02d} web1 sshd[{1000 + self.n}]: "
                f"Accepted password for fol-u{self.n} from 10.9.0.{self.n} port 22 ssh2\n"
            )
        return "".join(out)

    def append(self, text: str, path: Path | None = None) -> None:
        with open(path or self.path, "a", encoding="utf-8") as f:
            f.write(text)


def start_follower(address: str, log: Path, checkpoint: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("UBA_")}
    env.update(UBA_SERVER=address, UBA_API_KEY=KEYS[address])
    return subprocess.Popen(
        [sys.executable, "-m", "uba", "ingest", "--follow", "--format", "sshd", "--year", "2025"]
        + ["--poll", "0.1", "--linger", "0.2", "--checkpoint", str(checkpoint), "--json"]
        + [str(log)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def stop(proc: subprocess.Popen) -> tuple[dict, str]:
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    return json.loads(out), err


def test_follow_across_rotation_truncation_and_restart(uba_server, tmp_path):
    address = uba_server.address
    path, checkpoint = tmp_path / "auth.log", tmp_path / "follow.json"
    log = Log(path)
    log.append(log.lines(3))
    proc = start_follower(address, path, checkpoint)
    try:
        wait_for(address, 3)
        log.append(log.lines(3) + "Mar  1 10:00:06 web1 sshd")  # and half a line
        wait_for(address, 6)
        # Rotation: the old file gets more after its rename, before the new file starts.
        log.append("[77]: Connection closed by 10.9.0.77 port 22\n" + log.lines(2))
        path.rename(tmp_path / "auth.log.1")
        log.append(log.lines(1), tmp_path / "auth.log.1")
        path.write_text(log.lines(2))
        wait_for(address, 11)
        # copytruncate
        with open(path, "r+") as f:
            f.truncate(0)
        log.append(log.lines(2))
        wait_for(address, 13)
        # An attempt logged on two lines, cut in half by the restart.
        log.append("Mar  1 10:00:13 web1 sshd[900]: Invalid user fol-eve from 10.9.9.9 port 5\n")
        time.sleep(0.5)
    finally:
        first, err = stop(proc)
    assert (first["accepted"], first["duplicate"], first["invalid"]) == (13, 0, 0), err
    assert "rotated" in err and "truncated" in err

    log.append(log.lines(2))  # written while no follower runs
    proc = start_follower(address, path, checkpoint)
    try:
        wait_for(address, 15)
        log.append(
            "Mar  1 10:00:16 web1 sshd[900]: Failed password for invalid user fol-eve "
            "from 10.9.9.9 port 5 ssh2\n" + log.lines(1)
        )
        events = wait_for(address, 17)
    finally:
        second, err = stop(proc)
    # The restarted follower sent only what was new: nothing twice.
    assert (second["accepted"], second["duplicate"], second["invalid"]) == (4, 0, 0), err
    assert second["follow"]["resumed_at_line"] > 0
    users = sorted(e.user_id for e in events)
    assert users == sorted([f"fol-u{i}" for i in range(1, 17)] + ["fol-eve"])
    assert len({e.event_id for e in events}) == 17
    eve = next(e for e in events if e.user_id == "fol-eve")
    assert eve.attributes["invalid_user"] == "true" and eve.source_ip == "10.9.9.9"
