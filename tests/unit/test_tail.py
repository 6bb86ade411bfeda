"""The tailer behind `uba ingest --follow`: complete lines only, rotation
(the rest of the old file first), truncation, resuming from a position,
and a file that reuses the inode with other content. Real files."""

from __future__ import annotations

import json
import os

from uba.importers import make_importer
from uba.importers.tail import Checkpoint, Tailer


def texts(lines) -> list[str]:
    return [line.text for line in lines]


def append(path, text: str) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(text)


def test_a_partial_line_waits_for_its_newline(tmp_path):
    log = tmp_path / "app.log"
    log.write_text("one\ntw")
    tailer = Tailer(str(log))
    assert texts(tailer.read()) == ["one\n"]
    assert tailer.read() == []
    append(log, "o\nthree")
    lines = tailer.read()
    assert texts(lines) == ["two\n"]
    assert (lines[0].no, lines[0].end) == (2, len(b"one\ntwo\n"))


def test_rotation_reads_the_rest_of_the_old_file_first(tmp_path):
    log = tmp_path / "auth.log"
    log.write_text("a1\n")
    tailer = Tailer(str(log))
    assert texts(tailer.read()) == ["a1\n"]
    append(log, "a2\n")  # written, not read yet, when the file is rotated
    log.rename(tmp_path / "auth.log.1")
    assert texts(tailer.read()) == ["a2\n"]  # renamed, no new file yet
    with open(tmp_path / "auth.log.1", "a") as f:
        f.write("a3\na4-unterminated")  # the writer still has the old file open
    log.write_text("b1\nb2\n")
    got: list[str] = []
    for _ in range(5):
        got += texts(tailer.read())
    assert got == ["a3\n", "a4-unterminated", "b1\n", "b2\n"]
    assert any("rotated" in note for note in tailer.notes)
    append(log, "b3\n")
    lines = tailer.read()
    assert texts(lines) == ["b3\n"] and lines[0].no == 3


def test_rotated_away_with_no_new_file_keeps_reading_the_old_one(tmp_path):
    log = tmp_path / "auth.log"
    log.write_text("a1\n")
    tailer = Tailer(str(log))
    tailer.read()
    log.rename(tmp_path / "auth.log.1")
    append(tmp_path / "auth.log.1", "a2\n")
    assert texts(tailer.read()) == ["a2\n"]
    assert tailer.read() == []


def test_truncation_starts_again_from_the_start(tmp_path):
    log = tmp_path / "app.log"
    log.write_text("x1\nx2\nx3\npartial")
    tailer = Tailer(str(log))
    assert len(tailer.read()) == 3
    with open(log, "r+") as f:  # copytruncate
        f.truncate(0)
    append(log, "y1\n")
    lines = tailer.read()
    assert texts(lines) == ["y1\n"]  # the old partial line is dropped, numbering restarts
    assert (lines[0].no, lines[0].end) == (1, 3)
    assert any("truncated" in note for note in tailer.notes)


def test_truncated_and_regrown_past_the_old_size_between_reads(tmp_path):
    log = tmp_path / "app.log"
    log.write_text("old1\n")
    tailer = Tailer(str(log))
    tailer.read()
    with open(log, "r+") as f:  # same inode, larger than what was read, other first bytes
        f.truncate(0)
        f.write("new1\nnew2\n")
    lines = tailer.read()
    assert texts(lines) == ["new1\n", "new2\n"] and lines[0].no == 1
    assert any("truncated" in note for note in tailer.notes)


def test_resume_from_a_position(tmp_path):
    log = tmp_path / "app.log"
    log.write_text("l1\nl2\n")
    first = Tailer(str(log))
    position = first.read()[-1].position()
    first.close()
    append(log, "l3\n")
    again = Tailer(str(log), position)
    lines = again.read()
    assert texts(lines) == ["l3\n"] and lines[0].no == 3
    assert again.notes == []


def test_a_file_that_reuses_the_inode_with_other_content_is_read_from_the_start(tmp_path):
    log = tmp_path / "app.log"
    log.write_text("first file line 1\nfirst file line 2\n")
    tailer = Tailer(str(log))
    position = tailer.read()[-1].position()
    tailer.close()
    # Same inode (rewritten in place), at least as long: only the hash tells.
    with open(log, "r+") as f:
        f.truncate(0)
        f.write("SECOND file line 1\nsecond file line 2\nsecond file line 3\n")
    assert os.stat(log).st_ino == position.ino
    again = Tailer(str(log), position)
    assert texts(again.read())[0] == "SECOND file line 1\n"
    assert any("not the file of the checkpoint" in note for note in again.notes)


def test_resume_after_a_rotation_while_stopped_reads_the_old_rest_first(tmp_path):
    log = tmp_path / "auth.log"
    log.write_text("a1\n")
    tailer = Tailer(str(log))
    position = tailer.read()[-1].position()
    tailer.close()
    append(log, "a2\n")
    log.rename(tmp_path / "auth.log.1")
    log.write_text("b1\n")
    again = Tailer(str(log), position)
    got: list[str] = []
    for _ in range(3):
        got += texts(again.read())
    assert got == ["a2\n", "b1\n"]


def test_checkpoint_is_replaced_whole(tmp_path):
    cp = Checkpoint(str(tmp_path / "state" / "cp.json"))
    assert cp.load() is None
    cp.save({"n": 1})
    cp.save({"n": 2})
    assert cp.load() == {"n": 2}
    assert sorted(os.listdir(tmp_path / "state")) == ["cp.json"]


SSHD = [
    "Mar  1 10:00:00 h sshd[7]: Invalid user eve from 10.0.0.9 port 1\n",
    "Mar  1 10:00:00 h sshd[8]: Failed password for root from 10.0.0.8 port 2 ssh2\n",
    "Mar  1 10:00:01 h sshd[7]: Failed password for invalid user eve from 10.0.0.9 port 1 ssh2\n",
    "Mar  1 10:00:01 h sshd[8]: Failed password for root from 10.0.0.8 port 2 ssh2\n",
    "Mar  1 10:00:01 h sshd[8]: Failed password for root from 10.0.0.8 port 2 ssh2\n",
    "Mar  1 10:00:02 h sshd[9]: Accepted password for bob from 10.0.0.7 port 3 ssh2\n",
    "Mar  1 10:00:09 h sshd[9]: Received disconnect from 10.0.0.7 port 3:11: bye\n",
]


def _ids(events) -> list[tuple[str, int, str]]:
    return [(e.event_id, e.type, e.session_id) for e in events]


def test_sshd_state_survives_a_restart_at_any_line():
    whole = make_importer("sshd", year=2025)
    expected = _ids(whole.parse(SSHD))
    # eve's two lines are one attempt; the logout knows its session
    assert len(expected) == 6 and expected[-1][2] == expected[-2][2] != ""
    for cut in range(len(SSHD) + 1):
        first = make_importer("sshd", year=2025)
        got = _ids(_until_exhausted(first, SSHD[:cut]))
        state = json.loads(json.dumps(first.state()))
        second = make_importer("sshd", year=2025)
        second.restore(state)
        got += _ids(second.parse(SSHD[cut:]))
        assert got == expected, cut


def _until_exhausted(importer, lines):
    """Events of `lines` without the end-of-file flush a follower never
    reaches: stop pulling when the lines run out."""
    events = []
    gen = importer.parse(_Stop.around(lines))
    try:
        for event in gen:
            events.append(event)
    except _Stop:
        pass
    return events


class _Stop(Exception):
    @classmethod
    def around(cls, lines):
        yield from lines
        raise cls


def test_record_occurrences_survive_a_restart():
    line = '{"user_id": "u", "type": "login_success", "occurred_at": "2025-01-01T00:00:00Z"}\n'
    whole = [e.event_id for e in make_importer("jsonl").parse([line] * 3)]
    assert len(set(whole)) == 3
    first = make_importer("jsonl")
    got = [e.event_id for e in _until_exhausted(first, [line])]
    second = make_importer("jsonl")
    second.restore(json.loads(json.dumps(first.state())))
    got += [e.event_id for e in second.parse([line] * 2)]
    assert got == whole
