"""Unusual login time: how likely a login at this local hour of the week is
for the user.

Local time comes from the user's IANA zone (zoneinfo), so 08:00 stays 08:00
across daylight-saving changes. Three distributions over the 168 hours of
the week are blended:
- the user's own logins at this hour of the week, with the neighbouring
  hours sharing a quarter of their weight each (07:50 is not alarming for
  someone who starts at 08:00);
- the weekday/weekend fallback: the user's logins at this hour on any day
  of the same kind (Monday-Friday, or Saturday-Sunday), spread over those
  days, so a first Wednesday at 08:00 is as usual as the Tuesdays were,
  while a first Saturday night is not;
- the prior (peer group, else population) as `prior_strength`
  pseudo-logins, so a new user is judged by their peers and an established
  user mostly by their own history.
A rare hour (below a tenth of `min_probability`; or, for a user mature
for logins, one at a time of day they never logged in within two hours of,
however much the prior dilutes that) is MEDIUM only in the user's night:
the `night_hours` hours that end an hour before their usual day begins
(the start of the shortest run of hours holding 90% of their logins, on
all days; 23:00-07:00 for someone who starts at 08:00). An evening login,
a Sunday afternoon look at the mail, is unusual but not what MEDIUM is
for: it is LOW, with the reason.
It is MEDIUM only, too, when the user seldom logs in within two hours of
that time of day on any day (2% of their logins), and when the user's
peers do not log in at that time of day either (the same local hour, give
or take one, on weekdays or weekend days, in the last 30 days, from
uba.domain.peers; two user-hours at least and `peer_share` of the group's
active members, so a rota's odd pages in a big team are not its hour): a
night shift's member is LOW, a finance user's first Saturday night is not.
A team on call covers nights on a rota, one member a week (or a few):
`NightCover` says who in the user's group logged in in their own night in
30 days and in each of the last four weeks, and who was up at an hour
unusual for them this local week (the week's on-call member shows so, in
the evening or at the weekend, often before a night). A night login when
this week's place is taken by as many others as usually cover nights at
once stays MEDIUM, whatever peers did at this hour; the user's second
night of a week is LOW (the first told the story); else a team that
covers nights (in three of the last four weeks, or in every week seen,
two at least) lowers it.
A login less than `day_hours` after an earlier login of the same local
day at an hour usual for the user is not judged: their day is under way
(a phone at lunch, a new session after a meeting).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from uba.detectors.base import (
    DetectionContext,
    Detector,
    Finding,
    require_fraction,
    require_positive,
)
from uba.domain.anomalies import Feature, Severity
from uba.domain.clock import HOURS_PER_WEEK, EventClock
from uba.domain.events import ActivityEvent, ActivityType
from uba.domain.peers import PeerActivity
from uba.domain.shared_state import CACHED_USERS
from uba.domain.user_baseline import UserBaseline

_UNIFORM_WEEK = [1 / HOURS_PER_WEEK] * HOURS_PER_WEEK
# Share of the uniform distribution mixed into the prior, so no hour has
# probability 0 (the score is -log p and must stay finite).
_FLOOR_MIX = 0.01
_WEEKDAYS = (0, 1, 2, 3, 4)
_WEEKEND = (5, 6)


def _smoothed(values: list, index: int) -> float:
    """Weight of one hour of the week with its neighbours (wrapping the week)."""
    n = HOURS_PER_WEEK
    return 0.25 * values[(index - 1) % n] + 0.5 * values[index] + 0.25 * values[(index + 1) % n]


def _day_kind_share(counts: list, index: int) -> float:
    """Logins at this hour (smoothed) on days of the same kind, per such day."""
    hour = index % 24
    days = _WEEKEND if index // 24 >= 5 else _WEEKDAYS
    return sum(_smoothed(counts, d * 24 + hour) for d in days) / len(days)


def usual_band(probabilities: Sequence[float], coverage: float) -> tuple[int, int] | None:
    """The shortest run of local hours (wrapping midnight) holding
    `coverage` of the probability: (first hour, length); None when only the
    whole day does."""
    total = sum(probabilities)
    if total <= 0:
        return None
    # Sums over the day twice over, so a run may wrap midnight.
    running = [0.0]
    for i in range(48):
        running.append(running[-1] + probabilities[i % 24])
    for length in range(1, 24):
        best_start, best_mass = 0, -1.0
        for start in range(24):
            mass = running[start + length] - running[start]
            if mass > best_mass:
                best_start, best_mass = start, mass
        if best_mass >= coverage * total:
            return best_start, length
    return None


def usual_hours(probabilities: list[float], coverage: float) -> str:
    """`usual_band` as "08-18" (08:00 to 18:00)."""
    band = usual_band(probabilities, coverage)
    if band is None:
        return "any hour"
    start, length = band
    return f"{start:02d}-{(start + length) % 24:02d}"


def _night_label(hours: list[int]) -> str:
    """The night's hours as "night 23-07" (23:00 to 07:00)."""
    return f"night {hours[0]:02d}-{(hours[-1] + 1) % 24:02d}"


# The peer values of a member's login in their own night: any night of the
# last 30 days; one of a local week (Monday to Sunday); and of a login at an
# hour unusual for them (a night, an evening, a weekend day) in a local week.
_NIGHT = "night"
_WEEK = "night@"
_OFF = "off-hours@"
_SEEN = "seen@"  # a login of a member mature for logins in a local week
# Past weeks that show how a team covers nights: members at once, and
# whether it does every week (a quiet week allowed).
_ROTA_WEEKS = 4
_ROTA_MIN_WEEKS = 3
_ROTA_MIN_KNOWN = 2
# Share of a member's own logins that mark their day when their night
# logins are counted for the team.
_CORE_OF_DAY = 0.75


@dataclass(frozen=True, slots=True)
class NightCover:
    """How the user's peer group covers nights: one member at a time on a
    rota, or several."""

    group: str
    members: int  # other members with a login in their night in 30 days
    this_week: int  # other members up at an hour unusual for them this week
    mine: bool  # the user had a login in their night this week already
    at_once: int  # members with one in the usual week of the last four that had any
    weeks: int  # of the last four weeks, those with one
    known: int  # of the last four weeks, those the group was seen in

    @property
    def rota(self) -> bool:
        """Members up at night in three of the last four weeks, or, in a
        deployment that has seen the group for two or three of them, in
        every one (two of two is about as unlikely by chance as three of
        four)."""
        return self.weeks >= _ROTA_MIN_WEEKS or (
            self.known >= _ROTA_MIN_KNOWN and self.weeks >= self.known
        )

    @property
    def taken(self) -> bool:
        """This week's place is taken by as many other members as usually
        cover nights at once: the user is not on the rota now."""
        return not self.mine and self.at_once >= 1 and self.this_week >= self.at_once

    def describe(self) -> str:
        return (
            f"{self.members} members of {self.group} logged in in their night in 30 days, in "
            f"{self.weeks} of the last {_ROTA_WEEKS} weeks, usually {self.at_once} in a week; "
            f"{self.this_week} other up at an hour unusual for them this week"
        )


class LoginTimeDetector(Detector):
    name = "login_time"
    version = "3.1"
    description = (
        "Successful login at a local hour of the week (weekday or weekend habits, DST-correct) the "
        "user (or, while new, their peer group) rarely logs in."
    )
    title = "Login at an unusual time"
    event_types = frozenset({ActivityType.LOGIN_SUCCESS})

    def __init__(
        self,
        min_probability: float = 0.0015,
        prior_strength: float = 20.0,
        usual_hours_coverage: float = 0.9,
        min_peers: int = 2,
        peer_share: float = 0.1,
        near_share: float = 0.02,
        night_hours: int = 8,
        day_hours: float = 8.0,
        max_values: int = CACHED_USERS,
    ):
        # Per hour of the week: a uniform user would have 1/168 (0.006).
        self.min_probability = min_probability
        self.prior_strength = prior_strength
        self.usual_hours_coverage = usual_hours_coverage
        self.min_peers = min_peers
        # Peers' logins at the hour (user-hours, in 30 days) that lower it:
        # at least min_peers and this share of the group's active members.
        self.peer_share = peer_share
        # Share of the user's logins within two hours of the time of day
        # (any day) that keeps a rare hour of the week LOW.
        self.near_share = near_share
        # Length of the user's night, which ends an hour before their usual
        # day begins: the only hours where time alone is MEDIUM.
        self.night_hours = night_hours
        # A working day: a login this soon after one earlier the same local
        # day continues it.
        self.day_hours = day_hours
        # Keys kept in the peer windows (the least recently used go first).
        self.max_values = max_values

    def check_params(self) -> None:
        require_fraction(
            self, "min_probability", "usual_hours_coverage", "near_share", "peer_share"
        )
        require_positive(
            self, "prior_strength", "min_peers", "max_values", "night_hours", "day_hours"
        )
        if self.night_hours > 22:
            raise ValueError(f"{self.name}.night_hours must be at most 22")

    @staticmethod
    def _hour_kind(index: int) -> str:
        """The value peers share: the local hour on a weekday or a weekend day."""
        return f"{'we' if index // 24 >= 5 else 'wd'}{index % 24:02d}"

    def learn_one(self, event: ActivityEvent, ctx: DetectionContext) -> None:
        baseline = ctx.baseline
        if (
            ctx.quarantined
            or ctx.alarmed_by - {self.name}
            or not baseline.in_familiar_context(event, ctx.clock.ts)
        ):
            # Peers' evidence comes from their ordinary logins: a login
            # another detector rated MEDIUM (from a new country, say), or
            # from a device or network new to the user within 8 hours,
            # vouches for no one.
            return
        group = baseline.effective_peer_group or event.peer_group
        clock = ctx.clock
        if not ctx.alarmed:
            PeerActivity(ctx.shared, "hour", max_keys=int(self.max_values)).observe(
                event.user_id, group, self._hour_kind(clock.hour_of_week), clock.ts, False
            )
        if group and baseline.mature_for("logins"):
            # A member up in their own night, on their own device or network,
            # is how a team covers nights, even when the hour alone is MEDIUM
            # (a first on-call page): it shows the team's rota, and fills this
            # week's place on it. Their night is the one before this login,
            # from the core of their day: with few logins, a band holding 90%
            # of them stretches to take in a first page or two.
            hour = clock.local.hour
            counts = baseline.login_hour_of_week
            by_hour = [sum(counts[h::24]) for h in range(24)]
            by_hour[hour] = max(0, by_hour[hour] - 1)
            band = usual_band(by_hour, _CORE_OF_DAY)
            nights = self._nights(ctx)
            nights.observe(event.user_id, group, self._week(clock, kind=_SEEN), clock.ts, False)
            # Or a login this detector judged to be in the user's night (the
            # prior's hours too): a 10:00 starter's first page at 00:41 is
            # MEDIUM, and is the rota's, though their own night begins at 01:00.
            night = getattr(self, "night_login_", None) == event.event_id or (
                band is not None and hour in self._night_before(band[0])
            )
            if night:
                nights.observe(event.user_id, group, _NIGHT, clock.ts, False)
                nights.observe(event.user_id, group, self._week(clock), clock.ts, False)
            if night or self.name in ctx.found_by:
                # Up at an hour unusual for them (a night, an evening, a
                # weekend day): the week's on-call member often shows so
                # before a night.
                nights.observe(event.user_id, group, self._week(clock, kind=_OFF), clock.ts, False)

    def _nights(self, ctx: DetectionContext) -> PeerActivity:
        return PeerActivity(ctx.shared, "night", max_keys=int(self.max_values))

    @staticmethod
    def _week(clock: EventClock, back: int = 0, kind: str = _WEEK) -> str:
        """The peer value of a night login (with `_OFF`, of one at an
        unusual hour; with `_SEEN`, of any login) in the local week (from
        Monday) `back` weeks before this event's."""
        monday = clock.day_key - clock.local.weekday() - 7 * back
        return f"{kind}{monday}"

    def night_cover(self, user_id: str, group: str, ctx: DetectionContext) -> NightCover:
        nights, clock = self._nights(ctx), ctx.clock
        week = self._week(clock)
        covered: list[int] = []  # members up at night, per past week that had any
        known = 0  # past weeks the group was seen in
        for back in range(1, _ROTA_WEEKS + 1):
            if n := nights.users(group, self._week(clock, back), clock.ts):
                covered.append(n)
            known += bool(nights.users(group, self._week(clock, back, kind=_SEEN), clock.ts))
        covered.sort()
        return NightCover(
            group,
            nights.usage(user_id, group, _NIGHT, clock.ts).peers,
            nights.usage(user_id, group, self._week(clock, kind=_OFF), clock.ts).peers,
            nights.used_by(user_id, group, week, clock.ts),
            # The usual week, not the busiest: one attacker's victims in one
            # week do not make a rota of several.
            covered[len(covered) // 2] if covered else 0,
            len(covered),
            known,
        )

    def _day_under_way(self, baseline: UserBaseline, clock: EventClock, prior: list[float]) -> bool:
        """The user logged in less than `day_hours` ago, earlier this local
        day, at an hour usual for them (that login's own count aside)."""
        last = baseline.last_login
        if (
            last is None
            or not baseline.day.logins
            or baseline.day.key != clock.day_key
            or not 0.0 <= clock.ts - last.ts < self.day_hours * 3600.0
        ):
            return False
        index = EventClock.of(last.occurred_at, clock.zone_name).hour_of_week
        counts = list(baseline.login_hour_of_week)
        counts[index] = max(0, counts[index] - 1)
        total = max(0, baseline.login_count - 1)
        return self.probability(index, counts, total, prior) >= self.min_probability

    def probability(self, index: int, counts: list[int], total: int, prior: list[float]) -> float:
        """Probability of a login in hour of the week `index`."""
        strength = self.prior_strength
        prior_p = (1 - _FLOOR_MIX) * _smoothed(prior, index) + _FLOOR_MIX / HOURS_PER_WEEK
        own = 0.5 * _smoothed(counts, index) + 0.5 * _day_kind_share(counts, index)
        return (own + strength * prior_p) / (total + strength)

    def night(self, counts: list[int], prior: list[float]) -> list[int] | None:
        """The local hours of the user's night, the `night_hours` hours that
        end an hour before their usual day begins (their logins and the
        prior's pseudo-logins on all days); None when they log in at any
        hour."""
        strength = self.prior_strength
        by_hour = [
            sum(counts[d * 24 + h] + strength * prior[d * 24 + h] for d in range(7))
            for h in range(24)
        ]
        band = usual_band(by_hour, self.usual_hours_coverage)
        return None if band is None else self._night_before(band[0])

    def _night_before(self, day_start: int) -> list[int]:
        """The `night_hours` local hours that end an hour before a day that
        begins at `day_start`."""
        return [(day_start - 1 - self.night_hours + i) % 24 for i in range(self.night_hours)]

    def score_one(self, event: ActivityEvent, ctx: DetectionContext) -> list[Finding]:
        baseline = ctx.baseline
        clock = ctx.clock
        index = clock.hour_of_week
        counts = baseline.login_hour_of_week
        total = baseline.login_count
        prior = ctx.prior.hour_of_week_share if ctx.prior is not None else _UNIFORM_WEEK
        p = self.probability(index, counts, total, prior)
        if p >= self.min_probability or self._day_under_way(baseline, clock, prior):
            return []
        mature = baseline.mature_for("logins")
        # The user's logins within two hours of this time of day, on any day.
        near = sum(
            baseline.login_hour_of_day[(clock.local.hour + d) % 24] for d in (-2, -1, 0, 1, 2)
        )
        # Very rare, or never near this time for a mature user: the prior's
        # pseudo-logins must not dilute the user's own evidence (peers who
        # did log in then vouch below).
        severity = (
            Severity.MEDIUM
            if mature and (p < self.min_probability / 10 or near == 0)
            else Severity.LOW
        )
        peer_note = ""
        if severity >= Severity.MEDIUM:
            night = self.night(counts, prior)
            if night is None:
                severity = Severity.LOW
                peer_note = "; lowered: the user logs in at any hour of the day"
            elif clock.local.hour not in night:
                severity = Severity.LOW
                peer_note = f"; lowered: not in the user's {_night_label(night)}"
            else:
                peer_note = f"; in the user's {_night_label(night)}"
        if severity >= Severity.MEDIUM:
            # A rare day at a usual time of day (a weekday worker on a Sunday
            # afternoon, an evening shift on call) is not what MEDIUM is for.
            if near >= self.near_share * total:
                severity = Severity.LOW
                peer_note = f"; lowered: {near} earlier logins within two hours of this time of day"
        if severity >= Severity.MEDIUM:
            self.night_login_ = event.event_id  # for learn_one: a night, whatever peers say
            group = baseline.effective_peer_group or event.peer_group
            activity = PeerActivity(ctx.shared, "hour", max_keys=int(self.max_values))
            # Peers' logins at this time of day, give or take an hour, on
            # days of the same kind.
            nearby = 0
            kind_base = 5 * 24 if index // 24 >= 5 else 0
            for cell in (index - 1, index, index + 1):
                usage = activity.usage(
                    event.user_id, group, self._hour_kind(kind_base + cell % 24), clock.ts
                )
                nearby += usage.peers if group else usage.population
            size = usage.group_size if group else usage.population_size
            # Peers who work then: a share of the team, not the odd page of
            # its rota (which night_cover judges).
            common = max(self.min_peers, self.peer_share * size)
            # A team on call covers nights one member (or a few) at a time:
            # when this week's are covered by others already, this login is
            # not the rota's, whatever peers did at this hour before.
            cover = self.night_cover(event.user_id, group, ctx) if group else None
            if cover is not None and cover.taken:
                peer_note += f"; not lowered by peers: {cover.describe()}"
            elif cover is not None and cover.mine:
                # A second night of the week, from where the first came: the
                # first (MEDIUM) told the story; the rest is the same week on call.
                severity = Severity.LOW
                peer_note = (
                    "; lowered: the user was up in their night earlier this week too, on their "
                    f"own device or network (on call?): {cover.describe()}"
                )
            elif nearby >= common:
                severity = Severity.LOW
                peer_note = (
                    f"; lowered: {'peers in ' + group if group else 'other users'} logged in at "
                    f"this time of day {nearby} times (user-hours) in the last 30 days, of "
                    f"{size} active"
                )
            elif cover is not None and cover.members >= self.min_peers and cover.rota:
                severity = Severity.LOW
                peer_note = f"; lowered: the team covers nights: {cover.describe()}"
            elif cover is not None:
                peer_note += f"; no rota seen: {cover.describe()}"
        local = clock.local
        weekend = index // 24 >= 5
        kind = "weekend" if weekend else "weekday"
        days = _WEEKEND if weekend else _WEEKDAYS
        # The usual hours of this kind of day, unsmoothed: smoothing is for judging.
        strength = self.prior_strength
        by_hour = [
            sum(counts[d * 24 + h] + strength * prior[d * 24 + h] for d in days) for h in range(24)
        ]
        expected = f"{kind}s {usual_hours(by_hour, self.usual_hours_coverage)}"
        observed = local.strftime("%a %H:%M")
        same_kind = sum(counts[d * 24 + local.hour] for d in days)
        kind_total = sum(sum(counts[d * 24 : (d + 1) * 24]) for d in days)
        basis = (
            ""
            if mature
            else (
                f" (user baseline not mature: {baseline.maturity_note()}; judged mostly against "
                f"{ctx.prior_label if ctx.prior is not None else 'a uniform week, no prior yet'})"
            )
        )
        reason = (
            f"login {observed} {clock.zone_name}; usual {expected}; {same_kind} of {kind_total} "
            f"earlier {kind} logins at this hour, {counts[index]} on this day of the "
            f"week{basis}{peer_note}"
        )
        return [
            Finding(
                score=-math.log(p),
                severity=severity,
                reason=reason,
                observed=observed,
                expected=expected,
                features=(
                    Feature("login_hour", local.hour + local.minute / 60, 1.0),
                    Feature("hour_of_week_probability", p, 0.0),
                    Feature("hour_of_week_logins", float(counts[index]), 0.0),
                    Feature("weekend", 1.0 if weekend else 0.0, 0.0),
                ),
                baseline_observations=total,
                baseline_mature=mature,
            )
        ]
