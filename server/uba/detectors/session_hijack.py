"""Session hijack: a session that continues from somewhere else.

The context a session was established with (see uba.domain.sessions) is
checked on every later event of the same session_id, whatever its type. A
session that moves to another network and also changes country, device or
user agent has most likely been taken over (a stolen session cookie or
token, ATT&CK T1539/T1550.004): MEDIUM with one such change besides the
network, HIGH with two or more. A new address alone is tolerated (mobile
networks move clients between addresses, also between /24s of one /16), as
is a user agent or device change from the same network.
"""

from __future__ import annotations

from uba.detectors.base import DetectionContext, Detector, Finding, require_positive
from uba.domain.anomalies import Feature, Severity
from uba.domain.events import ActivityEvent
from uba.domain.sessions import SessionChange, SessionContext, SessionStore, compare
from uba.domain.shared_state import CACHED_USERS

# Live sessions kept per user of max_users (a laptop and a phone, say).
SESSIONS_PER_USER = 2
_LEVELS = (None, Severity.MEDIUM, Severity.HIGH)


def _level(change: SessionChange) -> int:
    """0: nothing to report; 1: MEDIUM; 2: HIGH."""
    if change.network:
        return min(change.others, 2)
    # Without addresses to compare, a new country with a new device or agent.
    if not change.address and change.country and (change.device or change.user_agent):
        return 1
    return 0


class SessionHijackDetector(Detector):
    name = "session_hijack"
    version = "1.0"
    description = (
        "An event of a live session from another network and another country, device or user agent "
        "than the session was established with (checked on every event type)."
    )
    title = "Session continued from elsewhere"
    event_types = None  # every event of a session

    def __init__(
        self,
        idle_seconds: float = 12 * 3600.0,
        max_users: int = CACHED_USERS,
        max_sessions: int | None = None,
    ):
        self.idle_seconds = idle_seconds
        self.max_users = max_users
        # Live sessions kept, the least recently active forgotten first;
        # None: SESSIONS_PER_USER for each of max_users.
        self.max_sessions = max_sessions

    def check_params(self) -> None:
        require_positive(self, "idle_seconds", "max_users")
        if self.max_sessions is not None:
            require_positive(self, "max_sessions")

    def _store(self, ctx: DetectionContext) -> SessionStore:
        bound = self.max_sessions
        if bound is None:
            bound = SESSIONS_PER_USER * self.max_users
        return SessionStore(ctx.shared, self.name, self.idle_seconds, int(bound))

    def score_one(self, event: ActivityEvent, ctx: DetectionContext) -> list[Finding]:
        if not event.session_id:
            return []
        context = self._store(ctx).get(event, ctx.clock.ts)
        if context is None:
            return []
        change = compare(context, event)
        level = _level(change)
        if level <= context.reported:
            return []
        changed = change.names()
        was = ", ".join(
            f"{label} {old}"
            for label, old, on in (
                ("address", context.source_ip, change.address),
                ("country", context.country_code, change.country),
                ("device", context.device_id, change.device),
                ("agent", context.user_agent, change.user_agent),
            )
            if on
        )
        now = ", ".join(
            f"{label} {new}"
            for label, new, on in (
                ("address", event.source_ip, change.address),
                ("country", event.country_code, change.country),
                ("device", event.device_id, change.device),
                ("agent", event.user_agent, change.user_agent),
            )
            if on
        )
        return [
            Finding(
                score=1.0 + len(changed),
                severity=_LEVELS[level],  # type: ignore[arg-type]
                reason=(
                    f"session {event.session_id} continued ({event.type.value}) with another "
                    f"{' and '.join(changed)}: {now}; established with {was}"
                ),
                observed=now,
                expected=f"the session's own context: {was}",
                features=tuple(
                    Feature(f"session_{n.replace(' ', '_')}_changed", 1.0, 0.0) for n in changed
                ),
            )
        ]

    def learn_one(self, event: ActivityEvent, ctx: DetectionContext) -> None:
        if not event.session_id:
            return
        store = self._store(ctx)
        ts = ctx.clock.ts
        context = store.get(event, ts)
        if context is None:
            fresh = SessionContext.of(event)
            if not fresh.empty:
                store.put(event, ts, fresh)
            return
        level = _level(compare(context, event))
        if level > context.reported:
            # Keep what the session was established with; remember the report.
            store.put(
                event,
                ts,
                SessionContext(
                    context.source_ip,
                    context.device_id,
                    context.user_agent,
                    context.country_code,
                    level,
                ),
            )
        elif level == 0:
            store.put(event, ts, context.filled_from(event))
        else:
            store.put(event, ts, context)
