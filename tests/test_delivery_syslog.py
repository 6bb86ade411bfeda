"""Alerts as CEF over syslog/TCP into a real rsyslog (Debian's), which
writes what it parsed to a file: framing, RFC 5424 header and CEF escaping
as a SIEM's collector sees them."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time

import pytest
from support.events import unique
from support.ports import free_port
from support.server import ServerProcess
from test_delivery import all_delivered, burst, wait_until

from uba.v1 import service_pb2

RSYSLOGD = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"


@pytest.fixture
def rsyslog(tmp_path):
    if not os.path.exists(RSYSLOGD):
        if os.environ.get("CI"):
            pytest.fail("rsyslogd is missing; .ci/run installs Debian's rsyslog")
        pytest.skip("rsyslogd is not installed (apt-get install rsyslog)")
    port, out = free_port(), tmp_path / "received.log"
    work = tmp_path / "rsyslog"
    work.mkdir()
    conf = tmp_path / "rsyslog.conf"
    # One field per tab, the message last: the test reads what rsyslog parsed.
    conf.write_text(
        f"""
global(workDirectory="{work}")
module(load="imtcp")
template(name="fields" type="string"
         string="%hostname%\\t%app-name%\\t%msgid%\\t%syslogfacility%\\t%syslogseverity%\\t%msg%\\n")
ruleset(name="uba") {{ action(type="omfile" file="{out}" template="fields") }}
input(type="imtcp" address="127.0.0.1" port="{port}" ruleset="uba")
"""
    )
    proc = subprocess.Popen(
        [RSYSLOGD, "-n", "-f", str(conf), "-i", str(tmp_path / "rsyslog.pid")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"rsyslogd did not start: {proc.communicate()[0]}") from None
            time.sleep(0.1)
    yield port, out
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def parse_cef(line: str) -> tuple[list[str], dict[str, str]]:
    """A CEF line's seven header fields and its extension, unescaped."""
    assert line.startswith("CEF:"), line
    header, i, field = [], 0, ""
    while len(header) < 7:
        c = line[i]
        if c == "\\" and line[i + 1] in "|\\":
            field += line[i + 1]
            i += 2
            continue
        if c == "|":
            header.append(field)
            field = ""
        else:
            field += c
        i += 1
    extension = line[i:]
    pairs = re.split(r"(?<!\\) (?=\w+=)", extension)
    values = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        value = re.sub(
            r"\\(.)", lambda m: {"n": "\n", "r": "\r"}.get(m.group(1), m.group(1)), value
        )
        values[key] = value
    return header, values


def test_alerts_arrive_in_rsyslog_as_cef(tmp_path, rsyslog):
    port, out = rsyslog
    config = tmp_path / "notify.json"
    config.write_text(
        json.dumps(
            {
                "destinations": {
                    "siem": {
                        "kind": "syslog",
                        "address": f"127.0.0.1:{port}",
                        "format": "cef",
                        "hostname": "uba-test",
                        "min_severity": "low",
                        "incidents": False,
                    }
                }
            }
        )
    )
    server = ServerProcess(tmp_path / "data", extra_args=["--notify", str(config)]).start()
    try:
        # A user id with the characters CEF must escape in an extension.
        user = unique("eve=ops\\") + "|x"
        server.stub.RecordActivities(
            service_pb2.RecordActivitiesRequest(events=burst(user, "198.51.100.9"))
        )
        rows = wait_until(all_delivered(server, "siem"), what="the alert's notification delivered")
        lines = wait_until(
            lambda: out.exists() and out.read_text().splitlines(), what="rsyslog's file"
        )
        assert len(lines) == len(rows)
        host, app, msgid, facility, severity, message = lines[0].split("\t", 5)
        assert (host, app, msgid) == ("uba-test", "uba", "alert.created")
        assert facility == "10"  # authpriv
        header, ext = parse_cef(message)
        assert header[:3] == ["CEF:0", "uba", "uba"]
        assert 0 <= int(header[6]) <= 10
        assert ext["duser"] == user, "escaped and unescaped back exactly"
        alerts = server.stub.ListAlerts(service_pb2.ListAlertsRequest(user_id=user)).alerts
        assert ext["externalId"] in {a.alert_id for a in alerts}
        assert int(severity) <= 6
    finally:
        server.stop()
