"""What the CLI prints on a terminal is shown, never obeyed: a stored value
with TAB, CR, LF, an escape sequence or a line separator (older data, free
text, a row written past the API) cannot forge a table row or send the
terminal a command. Every table and line goes through one escaping helper."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from sqlalchemy import text
from support.events import unique

from uba.commands.common import say, shown, table
from uba.storage.database import Database

HOSTILE = {
    "\t": "\\t",
    "\n": "\\n",
    "\r": "\\r",
    "\x1b": "\\x1b",
    "\x07": "\\x07",
    "\x7f": "\\x7f",
    "\x85": "\\x85",
    "\x9b": "\\x9b",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
    "\u202e": "\\u202e",
    "\u200b": "\\u200b",
    "\U000e0001": "\\U000e0001",
}


def raw_controls(output: str) -> set[str]:
    """Characters of the output that a terminal would act on (the line
    ends of print() aside)."""
    return {c for c in output.replace("\n", "") if c in HOSTILE}


def test_every_hostile_character_is_shown_as_an_escape():
    for char, escape in HOSTILE.items():
        assert shown(f"a{char}b") == f"a{escape}b"
    # What is printable stays as it is, backslashes and wide text included.
    for fine in ("CORP\\alice", "Zürich", "山田", "José 😀", "a b", "", "\\n literally"):
        assert shown(fine) == fine


def test_a_table_keeps_one_line_per_row_whatever_the_cells_hold(capsys):
    forged = "alice\n2026-01-01 00:00:00  login_success  root\r\x1b[2K"
    table([["1", forged, "x\ty"], ["2", "bob", "\u202eevil"]], ["SEQ", "USER", "DETAIL"])
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert len(lines) == 3 and not raw_controls(out)
    assert "alice\\n2026-01-01 00:00:00  login_success  root\\r\\x1b[2K" in lines[1]
    assert lines[1].endswith("x\\ty") and lines[2].endswith("\\u202eevil")
    # Columns line up on the escaped text.
    assert lines[0].index("DETAIL") == lines[2].index("\\u202eevil")


def test_lines_and_errors_are_escaped_too(capsys):
    say("alert for mallory\x1b]0;owned\x07 from \u2028here")
    from uba.commands.common import fail, note

    fail("no user named 'a\nb'")
    note("skipped: \x1b[31mred")
    captured = capsys.readouterr()
    assert captured.out == "alert for mallory\\x1b]0;owned\\x07 from \\u2028here\n"
    assert captured.err == "uba: no user named 'a\\nb'\nskipped: \\x1b[31mred\n"


def test_uba_logs_prints_a_stored_hostile_value_escaped(uba_server, uba_cli):
    """A row stored past the API (older data, a direct write) holding a
    newline, a carriage return and escape sequences in the columns `uba
    logs` shows."""
    url = uba_server.database_url or f"sqlite:///{uba_server.data_dir.resolve()}/uba.db"
    user = unique("old")
    now_us = int(time.time() * 1_000_000) - 60_000_000
    forged_row = "\n2026-01-01 00:00:00  login_success  root  10.0.0.1  -  \r\x1b[2K"
    database = Database(url)
    try:
        with database.engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO events (event_id, user_id, type, occurred_at_us, received_at_us, "
                    "source_ip, user_agent, device_id, session_id, country_code, city, timezone, "
                    "peer_group, api_method, api_path, status_code, bytes_transferred, source) "
                    "VALUES (:id, :user, 'api_call', :at, :at, '', "
                    "'\x1b]0;owned\x07', '', '', '', '', '', '', :method, :path, 200, 0, '')"
                ),
                {
                    "id": unique("e"),
                    "user": user,
                    "at": now_us,
                    "method": "\x1b[31mGET",
                    "path": "/v1/items" + forged_row,
                },
            )
    finally:
        database.dispose()
    run = uba_cli("logs", "--user", user, server=uba_server.address)
    assert run.code == 0, run.err
    lines = run.out.splitlines()
    assert len(lines) == 2, run.out  # the header and the one event: no forged row
    assert not raw_controls(run.out)
    assert lines[1].endswith(
        "\\x1b[31mGET /v1/items\\n2026-01-01 00:00:00  login_success  root  10.0.0.1  -  "
        "\\r\\x1b[2K -> 200"
    )
    assert datetime.fromtimestamp(now_us / 1e6, UTC).strftime("%Y-%m-%d %H:%M:%S") in lines[1]
