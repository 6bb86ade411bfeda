"""`uba ingest --follow FILE`: keep importing a growing log file.

One importer instance reads one endless stream of lines that a `Tailer`
hands out across rotations and truncations, so what the sshd importer
carries from line to line (an attempt logged on three lines, the year)
survives them. Events are sent when a batch is full or when the oldest
buffered one has waited `linger` seconds.

The checkpoint is written only at a line boundary after the server
acknowledged every event of the lines before it: it holds the position
after the last such line and the importer's state at that point, so a
restart resumes exactly there and sends nothing twice; a crash between
two checkpoints re-sends at most the lines after the last one, which the
server recognises by their ids. SIGINT/SIGTERM: send what was read, write
the checkpoint, exit 0.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from uba.commands.common import UsageError, note
from uba.importers import ImportStats
from uba.importers.tail import Checkpoint, Line, Position, Tailer

VERSION = 1
MAX_REPORTED = 5
JSON_FORMATS = ("jsonl", "ocsf", "ecs", "okta", "entra", "cloudtrail", "winlog")


class _Stopped(Exception):
    """Raised through the importer when following ends."""


def default_checkpoint(data_dir: str, path: str) -> str:
    """DATA_DIR/follow/NAME-HASH.json: one checkpoint per followed path."""
    absolute = os.path.abspath(path)
    digest = hashlib.sha256(absolute.encode()).hexdigest()[:12]
    return str(Path(data_dir) / "follow" / f"{Path(path).name}-{digest}.json")


def check_followable(path: str, fmt: str, head: list[str], evtx: bool) -> None:
    """Refuses formats that need the whole file."""
    if evtx:
        raise UsageError(
            f"{path}: --follow reads text lines; an .evtx file is a binary database "
            "(export it with Winlogbeat as JSON Lines and follow that)"
        )
    if fmt in JSON_FORMATS:
        first = next((line.strip() for line in head if line.strip()), "")
        try:
            whole_line = isinstance(json.loads(first.removesuffix(",")), dict) if first else True
        except json.JSONDecodeError:
            whole_line = False
        if not whole_line:
            raise UsageError(
                f"{path}: --follow reads JSON Lines (one object a line); this file is a JSON "
                "document, which is only complete at its end: import it without --follow"
            )


class Follower:
    def __init__(
        self,
        path: str,
        fmt: str,
        importer,
        client,
        checkpoint: str,
        batch_size: int = 500,
        poll: float = 1.0,
        linger: float = 1.0,
        quiet: bool = False,
    ):
        self.path, self.fmt, self.importer, self.client = path, fmt, importer, client
        self.checkpoint = Checkpoint(checkpoint)
        self.batch_size, self.poll, self.linger, self.quiet = batch_size, poll, linger, quiet
        self.outcome: Counter = Counter()
        self.invalid_samples: list[str] = []
        self.stop = False
        self.undelivered = ""
        self.resumed_at: Position | None = None
        self._buffer: list = []
        self._oldest = 0.0
        self._last: Line | None = None  # the last line handed to the importer
        self._saved: Line | None = None  # the line the checkpoint was last written at
        self._csv_header: str | None = None
        self._stream_no = 0  # lines handed to the importer (its line numbers)
        self._marks: list[
            tuple[int, int]
        ] = []  # (stream line, file line) where a run of lines starts
        self._reported = (0, 0)
        self.tailer: Tailer | None = None

    # -- the loop -----------------------------------------------------------------

    def run(self) -> int:
        saved = self.checkpoint.load()
        position = None
        if saved is not None:
            if saved.get("version") != VERSION or saved.get("file") != os.path.abspath(self.path):
                raise UsageError(
                    f"{self.checkpoint.path} is the checkpoint of {saved.get('file')!r}, not of "
                    f"{self.path}; give another --checkpoint"
                )
            if saved.get("format") != self.fmt:
                raise UsageError(
                    f"{self.checkpoint.path} was written reading --format {saved.get('format')}, "
                    f"not {self.fmt}"
                )
            position = Position.from_dict(saved["position"])
            self.importer.restore(saved.get("importer") or {})
            self._csv_header = saved.get("csv_header")
        self.tailer = Tailer(self.path, position)
        self._notes()
        f = self.tailer.file
        if position is not None and f is not None and f.read_pos == position.offset > 0:
            self.resumed_at = position
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            for event in self.importer.parse(self._lines()):
                if not self._buffer:
                    self._oldest = time.monotonic()
                self._buffer.append(event)
        except _Stopped:
            pass
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
            self.tailer.close()
        # Refused events are reported, not a failure of the follower: a service
        # manager that stopped it should see a clean exit.
        return 1 if self.undelivered else 0

    def _on_signal(self, signum, frame) -> None:
        self.stop = True

    def _lines(self) -> Iterator[str]:
        """The stream the importer reads. Sending and checkpointing happen
        here, between lines, where every event of the lines handed out so
        far has reached the buffer."""
        assert self.tailer is not None
        f = self.tailer.file
        if self.fmt == "csv" and self._csv_header and f is not None and f.read_pos > 0:
            self._stream_no += 1
            yield self._csv_header  # the header of the file resumed in the middle
        while True:
            lines = self.tailer.read()
            self._notes()
            if not lines:
                self._boundary(idle=True)
                self._sleep(self.poll)
                continue
            for line in lines:
                self._boundary(idle=False)
                previous, self._last = self._last, line
                if self.fmt == "csv" and line.no == 1:
                    if self._csv_header is None:
                        self._csv_header = line.text
                    elif line.text.rstrip("\r\n") == self._csv_header.rstrip("\r\n"):
                        continue  # the header again, of a rotated or truncated file
                    else:
                        note(
                            f"uba: {self.path}: a new file with another CSV header; stopping "
                            "(start again with another --checkpoint to read it)"
                        )
                        self._last = previous
                        self.stop = True
                        self._boundary(idle=True)
                self._stream_no += 1
                if (
                    previous is None
                    or (previous.dev, previous.ino) != (line.dev, line.ino)
                    or line.no != previous.no + 1
                ):
                    self._marks.append((self._stream_no, line.no))
                yield line.text

    def _boundary(self, idle: bool) -> None:
        now = time.monotonic()
        due = len(self._buffer) >= self.batch_size or (
            self._buffer and now - self._oldest >= self.linger
        )
        if self.stop or due:
            self._send()
            self._save()
        elif idle and self._last is not self._saved:
            self._save()  # lines that made no event: no need to read them again
        if self.stop:
            raise _Stopped

    def _sleep(self, seconds: float) -> None:
        """Sleeps, waking early to stop or to send what lingered."""
        end = time.monotonic() + seconds
        while not self.stop:
            left = end - time.monotonic()
            if self._buffer:
                left = min(left, self._oldest + self.linger - time.monotonic())
            if left <= 0:
                return
            time.sleep(min(left, 0.05))

    # -- sending --------------------------------------------------------------------

    def _send(self) -> None:
        from uba_client import UbaError

        events, self._buffer = self._buffer, []
        for i in range(0, len(events), self.batch_size):
            chunk = events[i : i + self.batch_size]
            delay = 1.0
            while True:
                try:
                    results = self.client.record_batch(chunk, max_batch=self.batch_size).results
                    break
                except UbaError as exc:
                    # The client already retried; a follower keeps trying
                    # until told to stop, and never checkpoints past these.
                    if self.stop:
                        self.undelivered = str(exc)
                        self.outcome["failed"] += len(events) - i
                        raise _Stopped from None
                    note(f"uba: {exc}; trying again in {delay:.0f} s")
                    self._sleep(delay)
                    delay = min(delay * 2, 30.0)
            for result, event in zip(results, chunk, strict=False):
                self.outcome[result.status] += 1
                if result.status == "invalid" and len(self.invalid_samples) < MAX_REPORTED:
                    why = "; ".join(f"{f}: {d}" for f, d in result.violations)
                    self.invalid_samples.append(
                        f"invalid {event.event_id} (user {event.user_id!r}): {why}"
                    )
        self._report_skips()

    def _save(self) -> None:
        if self._last is None:
            return
        self.checkpoint.save(
            {
                "version": VERSION,
                "file": os.path.abspath(self.path),
                "format": self.fmt,
                "position": self._last.position().as_dict(),
                "csv_header": self._csv_header,
                "importer": self.importer.state(),
                "written_at": datetime.now(UTC).isoformat(),
            }
        )
        self._saved = self._last

    # -- reporting -----------------------------------------------------------------

    def file_line(self, stream_no: int) -> int:
        """The line number within its file of the importer's line number."""
        start, file_no = 0, stream_no
        for mark_stream, mark_file in self._marks:
            if mark_stream > stream_no:
                break
            start, file_no = mark_stream, mark_file
        return file_no + (stream_no - start) if start else stream_no

    def _notes(self) -> None:
        assert self.tailer is not None
        for text in self.tailer.notes:
            if not self.quiet:
                note(f"uba: {text}")
        self.tailer.notes.clear()

    def _report_skips(self) -> None:
        stats: ImportStats = self.importer.stats
        done_unparsed, done_skipped = self._reported
        for no, reason, text in stats.samples[done_unparsed:MAX_REPORTED]:
            note(f"uba: {self.path}:{self.file_line(no)}: skipped, {reason}: {text[:120]}")
        for no, reason in stats.skip_samples[done_skipped:MAX_REPORTED]:
            note(f"uba: {self.path}:{self.file_line(no)}: not imported, {reason}")
        self._reported = (
            max(done_unparsed, min(len(stats.samples), MAX_REPORTED)),
            max(done_skipped, min(len(stats.skip_samples), MAX_REPORTED)),
        )
