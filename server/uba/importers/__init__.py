"""Log importers: turn files into uba.v1.ActivityEvent messages.

Each importer reads lines one at a time (bounded memory whatever the file
size), yields events with deterministic `event_id`s (so importing the same
file again stores nothing twice) and counts what it could not use in
`stats`. A line it does not understand is counted and sampled, never fatal.

    importer = make_importer("sshd", source_name="auth.log", year=2024, timezone="Europe/Berlin")
    for event in importer.parse(open("auth.log", encoding="utf-8", errors="replace")):
        ...
    print(importer.stats.summary())
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field

FORMATS = ("sshd", "jsonl", "csv", "ocsf", "ecs", "okta", "entra", "cloudtrail", "winlog")
# What each format is, for messages ("this looks like ...").
FORMAT_NAMES = {
    "sshd": "an OpenSSH/syslog auth log",
    "jsonl": "a uba JSON Lines (or `uba export`) file",
    "csv": "a uba CSV file",
    "ocsf": "an OCSF (Authentication / API Activity) file",
    "ecs": "an Elastic Common Schema (ECS) file",
    "okta": "an Okta System Log file",
    "entra": "a Microsoft Entra ID sign-in log",
    "cloudtrail": "an AWS CloudTrail log",
    "winlog": "a Windows Security event log (Winlogbeat JSON or .evtx)",
}
MAX_SAMPLES = 10


@dataclass
class ImportStats:
    """What an importer made of its input.

    lines: lines (or records) read; events: events produced; merged: lines
    folded into another line's event (one attempt logged on several lines);
    ignored: lines understood that record no user activity (other programs,
    sshd housekeeping, PAM's summary of repeats); skipped: lines
    understood that describe activity but cannot become an event (e.g. a
    failure that names no user); unparsed: lines not understood.
    """

    lines: int = 0
    events: int = 0
    merged: int = 0
    ignored: int = 0
    skipped: int = 0
    unparsed: int = 0
    by_type: Counter = field(default_factory=Counter)
    skip_reasons: Counter = field(default_factory=Counter)
    # (line number, reason, text) of the first few unparsed lines.
    samples: list[tuple[int, str, str]] = field(default_factory=list)
    # (line number, reason) of the first few skipped records.
    skip_samples: list[tuple[int, str]] = field(default_factory=list)

    def unparsable(self, line_no: int, reason: str, text: str) -> None:
        self.unparsed += 1
        if len(self.samples) < MAX_SAMPLES:
            self.samples.append((line_no, reason, text[:200]))

    def skip(self, reason: str, line_no: int = 0) -> None:
        self.skipped += 1
        self.skip_reasons[reason] += 1
        if line_no and len(self.skip_samples) < MAX_SAMPLES:
            self.skip_samples.append((line_no, reason))

    def add(self, other: ImportStats) -> None:
        for name in ("lines", "events", "merged", "ignored", "skipped", "unparsed"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.by_type.update(other.by_type)
        self.skip_reasons.update(other.skip_reasons)
        self.samples.extend(other.samples[: max(0, MAX_SAMPLES - len(self.samples))])
        self.skip_samples.extend(other.skip_samples[: max(0, MAX_SAMPLES - len(self.skip_samples))])

    def as_dict(self) -> dict:
        return {
            "lines": self.lines,
            "events": self.events,
            "merged": self.merged,
            "ignored": self.ignored,
            "skipped": self.skipped,
            "unparsed": self.unparsed,
            "by_type": dict(sorted(self.by_type.items())),
            "skip_reasons": dict(self.skip_reasons),
            "unparsed_samples": [{"line": n, "reason": r, "text": t} for n, r, t in self.samples],
            "skipped_samples": [{"line": n, "reason": r} for n, r in self.skip_samples],
        }


def stable_id(prefix: str, *parts: object) -> str:
    """A deterministic event id from the parts that identify an event."""
    digest = hashlib.sha256(
        "\x1f".join(str(p) for p in parts).encode("utf-8", "replace")
    ).hexdigest()
    return f"{prefix}-{digest[:32]}"


class Occurrences:
    """Numbers identical texts within one timestamp, so two identical lines
    get different ids while re-reading the same file gives the same ones.
    Forgets everything when the timestamp changes: memory stays bounded."""

    def __init__(self) -> None:
        self._stamp: object = None
        self._seen: Counter = Counter()

    def next(self, stamp: object, text: str) -> int:
        if stamp != self._stamp:
            self._stamp = stamp
            self._seen.clear()
        self._seen[text] += 1
        return self._seen[text] - 1

    def state(self) -> dict:
        """What `uba ingest --follow` keeps in its checkpoint, so a restart
        within one timestamp numbers identical lines as before."""
        stamp = list(self._stamp) if isinstance(self._stamp, tuple) else self._stamp
        return {"stamp": stamp, "seen": list(self._seen.items())}

    def restore(self, state: dict) -> None:
        stamp = state.get("stamp")
        self._stamp = tuple(stamp) if isinstance(stamp, list) else stamp
        self._seen = Counter(dict(state.get("seen") or []))


_MODULES = {
    "ocsf": ("uba.importers.ocsf", "OcsfImporter"),
    "ecs": ("uba.importers.ecs", "EcsImporter"),
    "okta": ("uba.importers.okta", "OktaImporter"),
    "entra": ("uba.importers.entra", "EntraImporter"),
    "cloudtrail": ("uba.importers.cloudtrail", "CloudTrailImporter"),
    "winlog": ("uba.importers.winlog", "WinlogImporter"),
}


def make_importer(fmt: str, **options):
    """The importer of a format: 'sshd' (OpenSSH/syslog auth logs), 'jsonl'
    or 'csv' (events by field name), or one of the vendor formats (ocsf,
    ecs, okta, entra, cloudtrail, winlog); see docs/importers.md."""
    if fmt == "sshd":
        from uba.importers.sshd import SshdImporter

        return SshdImporter(**options)
    if fmt in ("jsonl", "csv"):
        from uba.importers.records import RecordImporter

        return RecordImporter(fmt, **options)
    if fmt in _MODULES:
        import importlib

        module, name = _MODULES[fmt]
        return getattr(importlib.import_module(module), name)(**options)
    raise ValueError(f"unknown format {fmt!r}; one of: {', '.join(FORMATS)}")


def sniff(head: list[str]) -> str | None:
    """The format the first lines of a file look like, or None when they
    look like none. Looks at up to SNIFF_RECORDS records; a format wins
    by most votes, so one odd line at the top decides nothing."""
    from uba.importers.sniffing import guess

    return guess(head)


def compatible(given: str, sniffed: str | None) -> bool:
    """Whether a file that looks like `sniffed` may be read as `given`.
    Winlogbeat writes ECS, so its files are also valid ECS input."""
    return sniffed is None or given == sniffed or (given, sniffed) == ("ecs", "winlog")
