"""Priors: what is normal for a group of users (a peer group, or everyone),
pooled from their mature baselines, to judge a user whose own baseline is
not mature yet."""

from __future__ import annotations

from collections.abc import Iterable
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
        self.user_count += 1
        total = baseline.login_count
        if total:
            for index, count in enumerate(baseline.login_hour_of_week):
                if count:
                    self.login_hour_of_week[index] += count / total
            self._fold()
        for name in POOLED_STATS:
            getattr(self, name).merge(getattr(baseline, name))
        self.api_error_share_sum += baseline.api_error_share

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
        self.population.include(baseline)
        group = baseline.peer_group
        if group:
            prior = self.groups.get(group)
            if prior is None and len(self.groups) < self.max_groups:
                prior = self.groups[group] = Prior()
            if prior is not None:
                prior.include(baseline)

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
