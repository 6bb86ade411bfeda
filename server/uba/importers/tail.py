"""Following a growing log file like `tail -F`, for `uba ingest --follow`.

`Tailer.read()` returns the complete lines written since the last call
(a partial last line waits for its newline) and never blocks. At the end of
the file it notices:

- rotation: the path now names another file (renamed away, a new one
  created). The rest of the old file is read first, an unterminated last
  line included, then the new file from its start;
- truncation (copytruncate): the file is shorter than what was read, or
  its first bytes changed. Reading starts again from 0.

A `Position` (device, inode, byte offset after a line, its line number and
a hash of the file's first bytes) says where to resume. The hash tells a
new file that reuses the inode from the old one. `Checkpoint` stores a
position with whatever else the caller needs, atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from typing import Any

HEAD_BYTES = 1024  # bytes hashed to recognise a file
CHUNK = 64 * 1024
# A "line" without a newline longer than this is handed out as it is, so
# a file without newlines cannot fill memory.
MAX_LINE = 1024 * 1024


@dataclass(frozen=True)
class Line:
    text: str  # with its line ending, as a text-mode file would give it
    no: int  # line number within its file
    end: int  # byte offset just after the line
    dev: int
    ino: int
    head: bytes  # the file's first bytes (at least min(HEAD_BYTES, end) of them)

    def position(self) -> Position:
        head = self.head[: min(HEAD_BYTES, self.end)]
        return Position(
            self.dev, self.ino, self.end, self.no, len(head), hashlib.sha256(head).hexdigest()
        )


@dataclass(frozen=True)
class Position:
    dev: int
    ino: int
    offset: int
    line: int
    head_len: int
    head_sha: str

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Position:
        return cls(
            int(d["dev"]),
            int(d["ino"]),
            int(d["offset"]),
            int(d["line"]),
            int(d["head_len"]),
            str(d["head_sha"]),
        )


class _File:
    """An open file and how far it was read."""

    def __init__(self, fd: int, offset: int = 0, line_no: int = 0):
        st = os.fstat(fd)
        self.fd, self.dev, self.ino = fd, st.st_dev, st.st_ino
        self.read_pos = offset  # bytes read, the partial line included
        self.partial = b""
        self.line_no = line_no
        self.head = os.pread(fd, min(HEAD_BYTES, offset), 0)
        os.lseek(fd, offset, os.SEEK_SET)

    def close(self) -> None:
        os.close(self.fd)

    def rewind(self) -> None:
        os.lseek(self.fd, 0, os.SEEK_SET)
        self.read_pos, self.partial, self.line_no, self.head = 0, b"", 0, b""

    def head_changed(self) -> bool:
        return bool(self.head) and os.pread(self.fd, len(self.head), 0) != self.head

    def line(self, data: bytes, end: int) -> Line:
        self.line_no += 1
        return Line(
            data.decode("utf-8", "replace"), self.line_no, end, self.dev, self.ino, self.head
        )

    def lines(self, budget: int) -> list[Line]:
        """Complete lines from the next `budget` bytes (or fewer)."""
        out: list[Line] = []
        while budget > 0 and not out:
            data = os.read(self.fd, min(CHUNK, budget))
            if not data:
                break
            budget -= len(data)
            if len(self.head) < HEAD_BYTES:
                self.head += data[: HEAD_BYTES - len(self.head)]
            self.read_pos += len(data)
            buf, base = self.partial + data, self.read_pos - len(self.partial) - len(data)
            start = 0
            while (i := buf.find(b"\n", start)) >= 0:
                out.append(self.line(buf[start : i + 1], base + i + 1))
                start = i + 1
            self.partial = buf[start:]
            if len(self.partial) > MAX_LINE:
                out.append(self.line(self.partial, self.read_pos))
                self.partial = b""
        return out


class Tailer:
    """Reads `path` like `tail -F`, from `position` when it still names
    the same file (or a file it was rotated to in the same directory),
    else from the start. `notes` collects what happened, for the user."""

    def __init__(self, path: str, position: Position | None = None, budget: int = 4 * CHUNK):
        self.path = path
        self.budget = budget
        self.notes: list[str] = []
        self.file: _File | None = None
        if position is not None:
            self.file = self._resume(position)
        if self.file is None:
            self.file = self._open(self.path)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None

    def read(self) -> list[Line]:
        """The complete lines available now; [] when there are none."""
        if self.file is None:
            self.file = self._open(self.path)
            if self.file is None:
                return []
        f = self.file
        # Truncated (copytruncate), perhaps written past the old end since?
        if os.fstat(f.fd).st_size < f.read_pos or f.head_changed():
            self.notes.append(f"{self.path}: truncated, reading again from the start")
            f.rewind()
        if lines := f.lines(self.budget):
            return lines
        # At the end of the file: has the path been rotated to a new file?
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return []  # renamed away, the new file not created yet: keep reading the old one
        if (st.st_dev, st.st_ino) == (f.dev, f.ino):
            return []
        # Rotated: what reached the old file before the rename comes first.
        if lines := f.lines(self.budget):
            return lines
        rest = [f.line(f.partial, f.read_pos)] if f.partial else []
        f.close()
        self.file = self._open(self.path)
        self.notes.append(f"{self.path}: rotated, reading the new file")
        return rest + (self.file.lines(self.budget) if self.file is not None else [])

    def _open(self, path: str, offset: int = 0, line_no: int = 0) -> _File | None:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        return _File(fd, offset, line_no)

    def _resume(self, pos: Position) -> _File | None:
        """The file the position belongs to, read from the position; None
        when it is gone or was truncated or replaced."""
        for candidate in self._candidates(pos):
            try:
                fd = os.open(candidate, os.O_RDONLY)
            except OSError:
                continue
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) != (pos.dev, pos.ino):
                os.close(fd)
                continue
            head = os.pread(fd, pos.head_len, 0)
            if st.st_size < pos.offset or hashlib.sha256(head).hexdigest() != pos.head_sha:
                os.close(fd)
                self.notes.append(
                    f"{candidate}: not the file of the checkpoint any more (truncated or "
                    "replaced), reading from the start"
                )
                return None
            if candidate != self.path:
                self.notes.append(
                    f"{self.path} was rotated to {candidate} while stopped: reading the rest "
                    "of it first"
                )
            return _File(fd, pos.offset, pos.line)
        return None

    def _candidates(self, pos: Position) -> list[str]:
        """The path, then files in its directory with the position's inode
        (where a rotation while stopped put the file)."""
        out = [self.path]
        try:
            st = os.stat(self.path)
            if (st.st_dev, st.st_ino) == (pos.dev, pos.ino):
                return out
        except OSError:
            pass
        directory = os.path.dirname(os.path.abspath(self.path))
        try:
            with os.scandir(directory) as entries:
                out += [e.path for e in entries if e.inode() == pos.ino and e.is_file()]
        except OSError:
            pass
        return out


class Checkpoint:
    """A JSON file written atomically (temporary file, fsync, rename), so a
    crash leaves the previous checkpoint or the new one, never half of one."""

    def __init__(self, path: str):
        self.path = path

    def load(self) -> dict[str, Any] | None:
        try:
            with open(self.path, encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            return None
        if not isinstance(data, dict):
            raise ValueError(f"{self.path}: not a checkpoint")
        return data

    def save(self, data: dict[str, Any]) -> None:
        directory = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(directory, exist_ok=True)
        tmp = f"{self.path}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, separators=(",", ":"))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        try:  # the rename itself survives a power cut only once the directory is synced
            dfd = os.open(directory, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
