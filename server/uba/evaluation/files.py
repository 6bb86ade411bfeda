"""A scenario as files: events in uba JSON Lines (what `uba ingest` and
`uba evaluate --events` read) and labels in the format of
`uba evaluate --labels`, so the generator also feeds other tools."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import IO

from uba.domain.events import ActivityEvent
from uba.evaluation.score import Label

_TEXT = (
    "source_ip",
    "user_agent",
    "device_id",
    "session_id",
    "country_code",
    "city",
    "timezone",
    "peer_group",
    "api_method",
    "api_path",
    "source",
)


def event_record(e: ActivityEvent) -> dict:
    record: dict = {
        "event_id": e.event_id,
        "user_id": e.user_id,
        "type": e.type.value,
        "occurred_at": e.occurred_at.isoformat(),
    }
    record.update({name: getattr(e, name) for name in _TEXT if getattr(e, name)})
    if e.latitude is not None and e.longitude is not None:
        record["latitude"], record["longitude"] = e.latitude, e.longitude
    if e.status_code:
        record["status_code"] = e.status_code
    if e.bytes_transferred:
        record["bytes_transferred"] = e.bytes_transferred
    if e.session_duration is not None:
        record["session_duration_seconds"] = e.session_duration.total_seconds()
    if e.attributes:
        record["attributes"] = dict(e.attributes)
    return record


def label_record(lb: Label, first: ActivityEvent, last: ActivityEvent) -> dict:
    """The label for a labels file; its window clipped to the events' range."""
    start = min(max(lb.start, first.occurred_at), last.occurred_at)
    end = max(min(lb.end, last.occurred_at), start)
    return {
        "kind": lb.kind,
        "category": lb.category,
        "entity": list(lb.users) + list(lb.sources),
        "start": start.isoformat(),
        "end": end.isoformat(),
        "description": lb.description,
        "event_ids": list(lb.event_ids),
    }


def write_jsonl(records: Iterable[dict], out: IO[str]) -> int:
    n = 0
    for r in records:
        out.write(json.dumps(r, ensure_ascii=False) + "\n")
        n += 1
    return n


def save(events: list[ActivityEvent], labels: list[Label], directory: Path) -> tuple[Path, Path]:
    """Writes DIR/events.jsonl and DIR/labels.jsonl; returns their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    events_path, labels_path = directory / "events.jsonl", directory / "labels.jsonl"
    with open(events_path, "w", encoding="utf-8") as out:
        write_jsonl((event_record(e) for e in events), out)
    with open(labels_path, "w", encoding="utf-8") as out:
        write_jsonl(
            (label_record(lb, events[0], events[-1]) for lb in labels if lb.users or lb.sources),
            out,
        )
    return events_path, labels_path
