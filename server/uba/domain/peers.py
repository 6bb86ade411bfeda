"""Peer analytics: who else uses a value (an endpoint, a network, a country,
a kind of device), in the user's peer group and in the whole population.

"First use by this user, and none of their peers used it in 30 days" is a
much stronger signal than "first use by this user, common in their team";
and when a large share of a group adopts the same new value within days (a
rollout, a VPN change, a laptop refresh), that is a change of the
organisation, not of one user.

Peer groups come from the events' `peer_group` when callers send it, else
from behaviour: `UserBaseline.learned_peer_group`, users clustered by the
set of API areas that carry most of their calls (users with the same main
areas share it; see `uba.domain.event_keys.learned_group_of`). A user whose group changes is
simply counted in the new group from then on.

Everything lives in windows of the shared detector state (so it is bounded,
checkpointed and survives restarts), and every question is a dict look-up:
- `peers.KIND`: key "group, value", entries the users who used it in the
  last `window_days` (each user is added when not already in the window, so
  a window holds at most one entry per user);
- `adopted.KIND`: keys "value" and "group, value", the users (of
  everyone, of the group) for whom it was new in the last `shift_days`
  (first use by them); a user with a group is compared with their group's
  adopters, so one team's refresh is no change for another team;
- `members`: key group (and "*" for everyone), the users active in the last
  `window_days`.

These windows are the population aggregates: their values are user ids,
their keys are shared by many users. Workers of the event log hold whole
users per partition, so they share these windows across partitions and
workers (uba.domain.aggregates, `aggregate_shape`) instead of keeping them
per partition.
"""

from __future__ import annotations

from dataclasses import dataclass

from uba.domain.shared_state import KeyedWindows, SharedState

_DAY = 86400.0
_SEP = "\x1f"
ALL = "*"
# Keys per window unless the detector gives its `max_values` (the
# composition root sets that from --cached-users).
MAX_KEYS = 200_000
# Per key at most this many users are kept; beyond it counts saturate,
# which only matters for values used by more users than that.
MAX_USERS_PER_KEY = 5_000
WINDOW_DAYS = 30.0
SHIFT_DAYS = 7.0
_PEERS, _ADOPTED = "peers.", "adopted."


def aggregate_shape(name: str) -> tuple[float, int, int] | None:
    """(span in seconds, max keys, max users per key) of the population
    aggregate window called `name`, or None when `name` is not one."""
    if name.startswith(_PEERS):
        return WINDOW_DAYS * _DAY, MAX_KEYS, MAX_USERS_PER_KEY
    if name.startswith(_ADOPTED):
        return SHIFT_DAYS * _DAY, MAX_KEYS, MAX_USERS_PER_KEY
    return None


@dataclass(frozen=True, slots=True)
class Usage:
    """Who else uses a value, for one user's event."""

    peers: int  # users of the peer group who used it in the window (the user excluded)
    population: int  # users of anyone who used it in the window (the user excluded)
    group: str
    group_size: int  # active members of the group in the window
    population_size: int
    # Users of the group (else of everyone) for whom it was new in the
    # shift window (the user excluded).
    adopters: int

    def org_change(self, min_adopters: int, min_share: float) -> bool:
        """Whether many users adopted the value together: at least
        `min_adopters`, and at least `min_share` of the group (or of everyone
        when the user has no group)."""
        size = self.group_size if self.group else self.population_size
        return self.adopters >= min_adopters and self.adopters >= min_share * max(size, 1)

    def describe(self, noun: str) -> str:
        who = f"peer group {self.group}" if self.group else "the population"
        return (
            f"{noun} used by {self.peers} of {self.group_size} in {who} and {self.population} of "
            f"{self.population_size} users in 30 days"
        )


class PeerActivity:
    """The windows of one kind of value (endpoint, network, country, device kind)."""

    __slots__ = ("peers", "adopted", "members")

    def __init__(
        self,
        shared: SharedState,
        kind: str,
        window_days: float = WINDOW_DAYS,
        shift_days: float = SHIFT_DAYS,
        max_keys: int = MAX_KEYS,
    ):
        self.peers: KeyedWindows = shared.windows(
            f"{_PEERS}{kind}", window_days * _DAY, max_keys, MAX_USERS_PER_KEY
        )
        self.adopted: KeyedWindows = shared.windows(
            f"{_ADOPTED}{kind}", shift_days * _DAY, max_keys, MAX_USERS_PER_KEY
        )
        self.members: KeyedWindows = shared.windows(
            f"{_PEERS}members", window_days * _DAY, max_keys, MAX_USERS_PER_KEY
        )

    def usage(self, user_id: str, group: str, value: str, ts: float) -> Usage:
        peers = self.peers
        used_by_peers = peers.distinct(f"{group}{_SEP}{value}", ts) if group else 0
        if group and peers.has_value(f"{group}{_SEP}{value}", user_id, ts):
            used_by_peers -= 1
        everyone = peers.distinct(f"{ALL}{_SEP}{value}", ts)
        if peers.has_value(f"{ALL}{_SEP}{value}", user_id, ts):
            everyone -= 1
        # Adopters are counted where they are compared: in the peer group
        # (a refresh in one team is not a change for another team's users).
        adopted_key = f"{group}{_SEP}{value}" if group else value
        adopters = self.adopted.distinct(adopted_key, ts)
        if self.adopted.has_value(adopted_key, user_id, ts):
            adopters -= 1
        return Usage(
            used_by_peers,
            everyone,
            group,
            self.members.distinct(group, ts) if group else 0,
            self.members.distinct(ALL, ts),
            adopters,
        )

    def users(self, group: str, value: str, ts: float) -> int:
        """Users of the group (else of everyone) who used `value` in the
        window, the asking user included."""
        return self.peers.distinct(f"{group or ALL}{_SEP}{value}", ts)

    def used_by(self, user_id: str, group: str, value: str, ts: float) -> bool:
        """Whether the user used `value` in the window (counted in `group`)."""
        return self.peers.has_value(f"{group or ALL}{_SEP}{value}", user_id, ts)

    def note_member(self, user_id: str, group: str, ts: float) -> None:
        """Counts the user as active in their group (and everyone) without
        a value: for detectors that compare a share of the group."""
        members = self.members
        for key in (group, ALL) if group else (ALL,):
            if not members.has_value(key, user_id, ts):
                members.add(key, ts, user_id)

    def observe(self, user_id: str, group: str, value: str, ts: float, new_to_user: bool) -> None:
        """Counts the user's use of `value` (at most once per window)."""
        for key in (
            (f"{group}{_SEP}{value}", f"{ALL}{_SEP}{value}") if group else (f"{ALL}{_SEP}{value}",)
        ):
            if not self.peers.has_value(key, user_id, ts):
                self.peers.add(key, ts, user_id)
        if new_to_user:
            for key in (value, f"{group}{_SEP}{value}") if group else (value,):
                if not self.adopted.has_value(key, user_id, ts):
                    self.adopted.add(key, ts, user_id)
        self.note_member(user_id, group, ts)
