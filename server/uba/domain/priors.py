"""Priors: what is normal for a group of users (a peer group, or everyone),
pooled from their mature baselines, to judge a user whose own baseline is
not mature yet."""

from __future__ import annotations

import copy
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from uba.domain.clock import HOURS_PER_WEEK
from uba.domain.stats import RunningStats
from uba.domain.user_baseline import SCHEMA_VERSION, UserBaseline

# The statistics a prior pools across users.
POOLED_STATS = (
    "logins_per_day",
    "failed_logins_per_hour",
    "log_session_seconds",
    "api_calls_per_hour",
    "bytes_per_hour",
)


@dataclass(frozen=True, slots=True)
class Contribution:
    """What one user's mature baseline adds to the priors: no id, only the
    numbers pooled (the event log's workers exchange these)."""

    peer_group: str
    # (hour of the week, share of the user's logins), for the hours used.
    hours: tuple[tuple[int, float], ...]
    stats: tuple[RunningStats, ...]  # one per POOLED_STATS name
    api_error_share: float

    @classmethod
    def of(cls, baseline: UserBaseline) -> Contribution:
        total = baseline.login_count
        hours = (
            tuple(
                (i, count / total) for i, count in enumerate(baseline.login_hour_of_week) if count
            )
            if total
            else ()
        )
        return cls(
            baseline.peer_group,
            hours,
            tuple(copy.copy(getattr(baseline, name)) for name in POOLED_STATS),
            baseline.api_error_share,
        )

    def to_list(self) -> list:
        return [
            self.peer_group,
            [list(h) for h in self.hours],
            [s.to_list() for s in self.stats],
            self.api_error_share,
        ]

    @classmethod
    def from_list(cls, data: list) -> Contribution:
        group, hours, stats, share = data
        if len(stats) != len(POOLED_STATS):
            raise ValueError("a prior contribution of another layout")
        return cls(
            str(group),
            tuple((int(i), float(w)) for i, w in hours),
            tuple(RunningStats.from_list(s) for s in stats),
            float(share),
        )


@dataclass(slots=True)
class Prior:
    """What is normal for a group of users (a peer group, or everyone),
    pooled from their mature baselines. A new user is judged against it
    until the user's own baseline is mature."""

    user_count: int = 0
    # Sum over users of each user's share of logins per hour of the week, so
    # every user weighs the same however often they log in.
    login_hour_of_week: list[float] = field(default_factory=lambda: [0.0] * HOURS_PER_WEEK)
    logins_per_day: RunningStats = field(default_factory=RunningStats)
    failed_logins_per_hour: RunningStats = field(default_factory=RunningStats)
    log_session_seconds: RunningStats = field(default_factory=RunningStats)
    api_calls_per_hour: RunningStats = field(default_factory=RunningStats)
    bytes_per_hour: RunningStats = field(default_factory=RunningStats)
    api_error_share_sum: float = 0.0
    # Derived, not serialised: login_hour_of_week folded to 24 hours, as a
    # probability distribution (uniform while empty).
    hour_of_day_share: list[float] = field(default_factory=list, compare=False, repr=False)
    # login_hour_of_week as a probability distribution (uniform while empty).
    hour_of_week_share: list[float] = field(default_factory=list, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._fold()

    def _fold(self) -> None:
        by_hour = [0.0] * 24
        for index, weight in enumerate(self.login_hour_of_week):
            by_hour[index % 24] += weight
        total = sum(by_hour)
        self.hour_of_day_share = [w / total for w in by_hour] if total > 0 else [1 / 24] * 24
        self.hour_of_week_share = (
            [w / total for w in self.login_hour_of_week]
            if total > 0
            else [1 / HOURS_PER_WEEK] * HOURS_PER_WEEK
        )

    @property
    def api_error_share(self) -> float:
        return self.api_error_share_sum / self.user_count if self.user_count else 0.0

    def include(self, baseline: UserBaseline) -> None:
        """Adds one user's baseline to the pool."""
        self.add(Contribution.of(baseline))

    def add(self, share: Contribution) -> None:
        """Adds one user's share (`Contribution.of` their baseline)."""
        self.user_count += 1
        if share.hours:
            for index, weight in share.hours:
                self.login_hour_of_week[index] += weight
            self._fold()
        for name, stats in zip(POOLED_STATS, share.stats, strict=True):
            getattr(self, name).merge(stats)
        self.api_error_share_sum += share.api_error_share

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "user_count": self.user_count,
            "login_hour_of_week": list(self.login_hour_of_week),
            "api_error_share_sum": self.api_error_share_sum,
        }
        for name in POOLED_STATS:
            data[name] = getattr(self, name).to_list()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Prior:
        pooled: dict[str, Any] = {name: RunningStats.from_list(data[name]) for name in POOLED_STATS}
        return cls(
            user_count=int(data["user_count"]),
            login_hour_of_week=[float(v) for v in data["login_hour_of_week"]],
            api_error_share_sum=float(data["api_error_share_sum"]),
            **pooled,
        )


@dataclass(slots=True)
class PriorBaselines:
    """The population prior and one prior per peer group.

    Storage rebuilds it with `build` from all mature baselines when it likes
    (at start-up, nightly); between rebuilds the engine adds each baseline
    once, when it turns mature, so a fresh deployment gains a prior."""

    population: Prior = field(default_factory=Prior)
    groups: dict[str, Prior] = field(default_factory=dict)
    # A peer group is used once it pools this many users.
    min_group_users: int = 5
    # Bound on the number of peer groups kept; later groups pool only into
    # the population.
    max_groups: int = 1000

    @classmethod
    def build(
        cls, baselines: Iterable[UserBaseline], min_group_users: int = 5, max_groups: int = 1000
    ) -> PriorBaselines:
        priors = cls(min_group_users=min_group_users, max_groups=max_groups)
        for baseline in baselines:
            if baseline.mature:
                priors.include(baseline)
        return priors

    def include(self, baseline: UserBaseline) -> None:
        """A baseline turned mature: its share joins the pool."""
        self.add(Contribution.of(baseline))

    def add(self, share: Contribution) -> None:
        self.population.add(share)
        group = share.peer_group
        if group:
            prior = self.groups.get(group)
            if prior is None and len(self.groups) < self.max_groups:
                prior = self.groups[group] = Prior()
            if prior is not None:
                prior.add(share)

    def select(self, peer_group: str) -> tuple[Prior | None, str]:
        """The prior to judge a new user of `peer_group` against, and how to
        name it in a reason: the peer group when it is large enough, else the
        population, else None while nobody is mature yet."""
        if peer_group:
            prior = self.groups.get(peer_group)
            if prior is not None and prior.user_count >= self.min_group_users:
                return prior, f"peer group {peer_group}"
        if self.population.user_count:
            return self.population, "population"
        return None, "no prior"

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA_VERSION,
            "min_group_users": self.min_group_users,
            "max_groups": self.max_groups,
            "population": self.population.to_dict(),
            "groups": {name: prior.to_dict() for name, prior in self.groups.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PriorBaselines:
        # The prior's layout is the same in schemas 1 and 2.
        if data.get("schema") not in (1, SCHEMA_VERSION):
            raise ValueError(f"unsupported prior schema {data.get('schema')!r}")
        return cls(
            population=Prior.from_dict(data["population"]),
            groups={name: Prior.from_dict(p) for name, p in data["groups"].items()},
            min_group_users=int(data["min_group_users"]),
            max_groups=int(data["max_groups"]),
        )


@dataclass(slots=True)
class SharedPriors(PriorBaselines):
    """The priors of the event log's workers (docs/scaling.md, "Priors"):
    one pool for the deployment, whichever worker saw which user.

    A baseline turning mature on a worker is not pooled here at once: its
    share goes out through the log (`take`) and is pooled when it comes
    back (`absorb`), as on every other worker, in the log's order. So all
    workers hold the same pool as of the same position of the log
    (`position`), and any of them may save it: a worker that starts loads
    the saved pool and pools what the log holds after its position."""

    position: int = 0
    _outbox: deque[Contribution] = field(default_factory=deque, compare=False, repr=False)

    def include(self, baseline: UserBaseline) -> None:
        self._outbox.append(Contribution.of(baseline))

    def take(self) -> list[Contribution]:
        """The shares of the baselines that turned mature here since the
        last call (any thread)."""
        outbox = self._outbox
        taken: list[Contribution] = []
        while outbox:
            taken.append(outbox.popleft())
        return taken

    def absorb(self, position: int, shares: Sequence[Contribution]) -> None:
        """Pools the shares the log holds at `position` (once: a position
        at or before the pool's is pooled already)."""
        if position <= self.position:
            return
        for share in shares:
            self.add(share)
        self.position = position

    def to_dict(self) -> dict[str, Any]:
        return {**PriorBaselines.to_dict(self), "position": self.position}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SharedPriors:
        pooled = PriorBaselines.from_dict(data)
        return cls(
            population=pooled.population,
            groups=pooled.groups,
            min_group_users=pooled.min_group_users,
            max_groups=pooled.max_groups,
            position=int(data.get("position", 0)),
        )
