"""The right to erasure: forget a person, keep the facts.

`ErasureService.forget(user_id)` deletes what describes the person (their
events, baseline, risk, suppressions, their keys in the detectors' windows)
and replaces their id by a pseudonym wherever facts about them are kept
(anomalies, alerts, incidents, notifications, the audit trail). The
pseudonym is an HMAC of the id under a per-database secret: the same person
always gets the same pseudonym, so the kept facts still line up, and it
cannot be turned back into the id without the secret.

It runs on the ingest writer (its own transactions, between ingest groups),
so it never races ingest for the same user: whatever was committed before
its last transaction is gone; events stored after it are new activity.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from uba.domain.errors import InvalidArgument
from uba.domain.security import AuditEvent
from uba.domain.validation import IDENTIFIER_REFUSED, MAX_LENGTHS, first_refused

PSEUDONYM_PREFIX = "erased_"
ACTION = "users.forget"
# Events deleted per writer transaction before the final one.
EVENT_BATCH = 5_000


def pseudonym(secret: str, user_id: str) -> str:
    """The user's pseudonym under the database's secret (96 bits of HMAC)."""
    mac = hmac.new(secret.encode(), user_id.encode("utf-8", "surrogatepass"), hashlib.sha256)
    return PSEUDONYM_PREFIX + mac.hexdigest()[:24]


def _c_escaped(text: str) -> str:
    """The id as protobuf's text format writes it in a request (the audit
    detail): UTF-8 bytes outside printable ASCII as octal escapes."""
    special = {"\n": "\\n", "\r": "\\r", "\t": "\\t", '"': '\\"', "'": "\\'", "\\": "\\\\"}
    out = []
    for byte in text.encode("utf-8", "surrogatepass"):
        char = chr(byte)
        if char in special:
            out.append(special[char])
        elif 32 <= byte < 127:
            out.append(char)
        else:
            out.append(f"\\{byte:03o}")
    return "".join(out)


class Replacer:
    """Replaces the id where it stands as a whole token in free text (a
    title "alice: new country", a request `user_id: "alice"`, also in its
    escaped text-format spelling), never inside a longer name ("alice" in
    "alice.smith" or "malice")."""

    def __init__(self, user_id: str, replacement: str):
        self.spellings = frozenset({user_id, _c_escaped(user_id)})
        self.replacement = replacement
        self._pattern = re.compile(
            r"(?<![\w.@+-])(?:"
            + "|".join(map(re.escape, sorted(self.spellings, key=len, reverse=True)))
            + r")(?![\w.@+-]*\w)"
        )

    def __call__(self, text: str) -> str:
        if not any(s in text for s in self.spellings):
            return text
        return self._pattern.sub(lambda _: self.replacement, text)


def replace_in_json(value: Any, replace: Callable[[str], str]) -> Any:
    """`replace` applied to every string (keys too) of a JSON value."""
    if isinstance(value, str):
        return replace(value)
    if isinstance(value, list):
        return [replace_in_json(v, replace) for v in value]
    if isinstance(value, dict):
        return {replace(k): replace_in_json(v, replace) for k, v in value.items()}
    return value


@dataclass(frozen=True, slots=True)
class ErasureReport:
    pseudonym: str
    events_deleted: int = 0
    # Baselines, risk, suppressions, active hours: rows about the person only.
    records_deleted: int = 0
    # Anomalies, alerts, incidents, notifications, audit entries rewritten.
    records_pseudonymised: int = 0

    @property
    def anything(self) -> bool:
        return bool(self.events_deleted or self.records_deleted or self.records_pseudonymised)


class ErasureTransaction(Protocol):
    """What the erasure needs of the writer's transaction (uba.storage.retention)."""

    def pseudonym_secret(self) -> str: ...
    def delete_user_events(self, user_id: str, limit: int | None) -> int: ...
    def erase_user(self, user_id: str, pseudonym: str, replace: Replacer) -> tuple[int, int]: ...
    def append_audit_rewrite(self, event: AuditEvent, pseudonym: str) -> None: ...


class Writer(Protocol):
    def run_exclusive(self, action: Callable[[Any], Any]) -> Any: ...


class ForgetsUsers(Protocol):
    """The analyzer: drops a user from its caches and detector windows and
    checkpoints the windows in the given transaction."""

    def forget_user(self, uow: Any, user_id: str) -> None: ...


class ErasureService:
    def __init__(
        self, writer: Writer, analyzer: ForgetsUsers | None, clock: Callable[[], datetime]
    ):
        self._writer = writer
        self._analyzer = analyzer
        self._clock = clock

    def forget(self, user_id: str, actor: str = "", peer: str = "") -> ErasureReport:
        """Erases the user (blocking: call it off the event loop)."""
        # Ingest's rule for a user id, no stricter: every id it stored can
        # be erased (str.isprintable() refused no-break spaces, private-use
        # and unassigned characters that ingest takes).
        limit = MAX_LENGTHS["user_id"]
        if not user_id or len(user_id) > limit or first_refused(user_id, IDENTIFIER_REFUSED):
            raise InvalidArgument.single(
                "user_id",
                f"required, at most {limit} characters, without control, format or line "
                "separator characters",
            )
        if user_id.startswith(PSEUDONYM_PREFIX):
            raise InvalidArgument.single("user_id", "is a pseudonym already")
        # Events in bounded transactions first, so ingest waits for none long.
        batch: list[int] = []

        def delete_batch(uow: Any) -> None:
            batch.append(uow.retention.delete_user_events(user_id, EVENT_BATCH))

        while not batch or batch[-1] == EVENT_BATCH:
            self._writer.run_exclusive(delete_batch).result()
        deleted = sum(batch)
        done: list[ErasureReport] = []

        def final(uow: Any) -> None:
            tx: ErasureTransaction = uow.retention
            alias = pseudonym(tx.pseudonym_secret(), user_id)
            events = tx.delete_user_events(user_id, None)
            removed, rewritten = tx.erase_user(user_id, alias, Replacer(user_id, alias))
            if self._analyzer is not None:
                self._analyzer.forget_user(uow, user_id)
            report = ErasureReport(alias, deleted + events, removed, rewritten)
            tx.append_audit_rewrite(
                AuditEvent(
                    ACTION,
                    "ok",
                    actor=actor,
                    target=alias,
                    peer=peer,
                    occurred_at=self._clock(),
                    detail=f"events_deleted={report.events_deleted} "
                    f"records_deleted={removed} records_pseudonymised={rewritten}",
                ),
                alias,
            )
            done.append(report)

        # Results leave through `done`: an action's None result is no change
        # for the writer to tell subscribers about.
        self._writer.run_exclusive(final).result()
        return done[0]
