"""Which format a file's first lines look like (see `uba.importers.sniff`)."""

from __future__ import annotations

import io
import re
from collections import Counter

from uba.importers import ImportStats

SNIFF_RECORDS = 5
_SYSLOG = re.compile(
    r"(?:<\d{1,3}>\d{1,2} \d{4}-\d\d-\d\dT\S+ \S+ \S+ \S+ \S+ .*"  # RFC 5424
    r"|(?:<\d{1,3}>)?[A-Z][a-z]{2} +\d{1,2} \d\d:\d\d:\d\d \S+ .*"  # BSD
    r"|\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d\S* \S+ [^\s:]+(?:\[\d+\])?: .*)"  # rsyslog ISO
)


def kind_of(record: dict) -> str | None:
    """The format one JSON record belongs to."""
    keys = set(record)
    if "class_uid" in keys and ("activity_id" in keys or "category_uid" in keys):
        return "ocsf"
    if {"eventType", "published"} <= keys and ("actor" in keys or "uuid" in keys):
        return "okta"
    if "userPrincipalName" in keys and ("createdDateTime" in keys or "status" in keys):
        return "entra"
    if {"eventSource", "eventName"} <= keys or ("userIdentity" in keys and "eventTime" in keys):
        return "cloudtrail"
    winlog = record.get("winlog")
    if (isinstance(winlog, dict) and "event_id" in winlog) or "winlog.event_id" in keys:
        return "winlog"
    if isinstance(record.get("Event"), dict) and "System" in record["Event"]:
        return "winlog"
    if "@timestamp" in keys or "ecs" in keys or "event.category" in keys:
        return "ecs"
    if {"user_id", "type", "occurred_at"} <= keys or {"user_id", "type"} <= keys:
        return "jsonl"
    return None


def guess(head: list[str]) -> str | None:
    lines = [line for line in head if line.strip()]
    if not lines:
        return None
    first = lines[0].lstrip("\ufeff").strip()
    if first.startswith("ElfFile"):
        return "winlog"
    if first[:1] in "[{":
        from uba.importers.jsondoc import read_records

        votes: Counter = Counter()
        records = read_records(io.StringIO("".join(head)), ImportStats())
        try:
            for n, (_no, record) in enumerate(records):
                if record is not None and (kind := kind_of(record)):
                    votes[kind] += 1
                if n + 1 >= SNIFF_RECORDS:
                    break
        except Exception:  # a head cut inside a record: judge what was read
            pass
        return votes.most_common(1)[0][0] if votes else None
    votes = Counter(
        "sshd" for line in lines[:SNIFF_RECORDS] if _SYSLOG.fullmatch(line.rstrip("\r\n"))
    )
    if votes:
        return "sshd"
    header = {c.strip().strip('"') for c in first.split(",")}
    if {"user_id", "type"} <= header:
        return "csv"
    return None
