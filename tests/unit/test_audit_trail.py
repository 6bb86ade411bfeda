"""Reading the audit trail through the domain (AuditTrail), over an
in-memory reader: newest first, page after page without gap or repeat, and
a page token that only works for the filters it was issued for."""

from __future__ import annotations

import pytest

from uba.domain.errors import InvalidArgument
from uba.domain.security import AuditEvent, AuditTrail


class MemoryReader:
    """The AuditReader port over a list, as storage answers it."""

    def __init__(self, events: list[AuditEvent]):
        self.events = events

    def page_audit(
        self, actor: str, action: str, limit: int, before_seq: int | None
    ) -> list[AuditEvent]:
        rows = [
            e
            for e in sorted(self.events, key=lambda e: e.seq, reverse=True)
            if (not actor or e.actor == actor)
            and (not action or e.action == action)
            and (before_seq is None or e.seq < before_seq)
        ]
        return rows[:limit]


def trail(count: int = 7) -> AuditTrail:
    events = [
        AuditEvent(
            action="ResolveAlert" if seq % 2 else "ListLogs",
            outcome="ok",
            actor="alice" if seq % 3 else "bob",
            seq=seq,
        )
        for seq in range(1, count + 1)
    ]
    return AuditTrail(MemoryReader(events))


def every_page(audit: AuditTrail, actor: str = "", action: str = "", size: int = 3):
    pages, token = [], ""
    while True:
        events, token = audit.page(actor, action, size, token)
        pages.append([e.seq for e in events])
        if not token:
            return pages


def test_pages_run_newest_first_without_gap_or_repeat():
    assert every_page(trail()) == [[7, 6, 5], [4, 3, 2], [1]]


def test_an_exact_last_page_has_no_next_token():
    assert every_page(trail(6)) == [[6, 5, 4], [3, 2, 1]]


def test_filters_apply_to_every_page():
    assert every_page(trail(), actor="alice", size=2) == [[7, 5], [4, 2], [1]]
    assert every_page(trail(), action="ResolveAlert", size=10) == [[7, 5, 3, 1]]


def test_a_token_is_refused_for_other_filters():
    _, token = trail().page("alice", "", 2, "")
    assert token
    with pytest.raises(InvalidArgument) as caught:
        trail().page("bob", "", 2, token)
    assert caught.value.violations[0].field == "page_token"


def test_a_negative_page_size_is_refused():
    with pytest.raises(InvalidArgument) as caught:
        trail().page("", "", -1, "")
    assert caught.value.violations[0].field == "page_size"
