"""Sessions as a first-class thing: the context a session was established
with (network, device, user agent, country), kept while the session lives,
so every later event of the same session_id, whatever its type, can be
checked against it.

A session is established by its login (or, when the login was not seen, by
its first event carrying context) and lives while events keep arriving:
it expires `idle_seconds` after its last event. The store is bounded: at
most `max_sessions` sessions, the least recently active forgotten first.
It lives in the shared detector state (a KeyedWindows with one entry per
session), so it is checkpointed with the other detector windows and
survives a restart.
"""

from __future__ import annotations

from dataclasses import dataclass

from uba.domain.event_keys import network_of, wide_network_of
from uba.domain.events import ActivityEvent
from uba.domain.shared_state import KeyedWindows, SharedState

_SEP = "\x1f"  # not allowed in validated event fields (control character)


@dataclass(frozen=True, slots=True)
class SessionContext:
    """Where and with what a session was established."""

    source_ip: str = ""
    device_id: str = ""
    user_agent: str = ""
    country_code: str = ""
    # Highest severity level already reported for this session (0: none), so
    # a detector speaks when it rises, not on every event after.
    reported: int = 0

    @classmethod
    def of(cls, event: ActivityEvent) -> SessionContext:
        return cls(event.source_ip, event.device_id, event.user_agent, event.country_code)

    @property
    def empty(self) -> bool:
        return not (self.source_ip or self.device_id or self.user_agent or self.country_code)

    def filled_from(self, event: ActivityEvent) -> SessionContext:
        """Fields the session did not know yet, taken from a later event."""
        return SessionContext(
            self.source_ip or event.source_ip,
            self.device_id or event.device_id,
            self.user_agent or event.user_agent,
            self.country_code or event.country_code,
            self.reported,
        )

    def encode(self) -> str:
        return _SEP.join(
            (self.source_ip, self.device_id, self.user_agent, self.country_code, str(self.reported))
        )

    @classmethod
    def decode(cls, text: str) -> SessionContext:
        ip, device, agent, country, reported = text.split(_SEP)
        return cls(ip, device, agent, country, int(reported))


@dataclass(frozen=True, slots=True)
class SessionChange:
    """How an event differs from its session's context. Only fields both
    carry are compared; a missing field is no change."""

    network: bool  # another /24 (/48) outside the session's /16 (/32)
    address: bool  # another address at all
    country: bool
    device: bool
    user_agent: bool

    @property
    def others(self) -> int:
        """Changes besides the network."""
        return self.country + self.device + self.user_agent

    def names(self) -> list[str]:
        return [
            n
            for n, on in (
                ("network", self.network),
                ("country", self.country),
                ("device", self.device),
                ("user agent", self.user_agent),
            )
            if on
        ]


def compare(context: SessionContext, event: ActivityEvent) -> SessionChange:
    ip, old_ip = event.source_ip, context.source_ip
    address = bool(ip and old_ip and ip != old_ip)
    # A mobile network hands out addresses from its pools: a new address in
    # the same /24, or in the same /16, is the same place.
    network = (
        address
        and network_of(ip) != network_of(old_ip)
        and wide_network_of(ip) != wide_network_of(old_ip)
    )
    return SessionChange(
        network=network,
        address=address,
        country=bool(
            event.country_code
            and context.country_code
            and event.country_code != context.country_code
        ),
        device=bool(event.device_id and context.device_id and event.device_id != context.device_id),
        user_agent=bool(
            event.user_agent and context.user_agent and event.user_agent != context.user_agent
        ),
    )


class SessionStore:
    """The live sessions, in a named window of the shared detector state."""

    __slots__ = ("windows",)

    def __init__(self, shared: SharedState, name: str, idle_seconds: float, max_sessions: int):
        self.windows: KeyedWindows = shared.windows(name, idle_seconds, max_sessions, 1)

    @staticmethod
    def key(event: ActivityEvent) -> str:
        return f"{event.user_id}{_SEP}{event.session_id}"

    def get(self, event: ActivityEvent, ts: float) -> SessionContext | None:
        """The context of the event's session, or None (no session id, not
        seen, or expired)."""
        if not event.session_id:
            return None
        entry = self.windows.latest(self.key(event), ts)
        return None if entry is None else SessionContext.decode(entry[1])

    def put(self, event: ActivityEvent, ts: float, context: SessionContext) -> None:
        """Stores the session's context and keeps it alive until `ts` plus
        the idle time."""
        self.windows.add(self.key(event), ts, context.encode())
