"""Sustained volume: steady elevation over days that no single hour shows
(low-and-slow exfiltration: three times the usual bytes, spread evenly
over working hours, day after day).

Per user, totals per local day (the user's own time zone) of bytes
transferred and API calls. Each closed active day is compared with the
user's usual day: the median of their last `history_days` active days,
with a spread (the larger of the standard deviation and 1.4826 x the
median absolute deviation, at least `min_relative_spread` of the median).
A one-sided cumulative sum (CUSUM, Page 1954) adds each day's excess in
spreads less an allowance `k`:

    S = max(0, S + min((day - median) / spread, max_daily_excess) - k)

so an ordinary high day fades again while days of steady excess add up;
the cap keeps one extraordinary day (a big export) from carrying the sum
for a week.
During a day the sum is judged with the day so far, so an elevation is
reported as soon as it has accumulated, not the next morning. LOW from
`low_threshold`, MEDIUM from `medium_threshold`, HIGH from
`high_threshold`, each reported once per episode (the episode ends when the
sum returns to 0). MEDIUM and HIGH need an effect as well (LOW otherwise):
the run of elevated days at `min_ratio` times the usual day or more, or,
when today is the only elevated day of its run, all the days the sum
accumulated over at `min_ratio`. A very regular user has a narrow spread,
so a few busier days (1.3x, a project, a VPN change) accumulate spreads
without being what low-and-slow exfiltration looks like; and one busy day
after busy days with ordinary ones between (2.4x, 0.9x, 1.7x, 0.8x, 2.2x)
carries the sum without being a sustained rise, while an attacker who
alternates heavy and ordinary days still shows in the whole stretch.
Days off (no activity) are skipped; after `max_gap_days` without activity
the sum starts again.

Days with quarantined events, and the days of a reported episode, are kept
out of the usual day, so an attacker cannot teach it the new level; after
`max_episode_days` reported days the level is taken as the user's new
normal (a change of role) and learned. Users need
`min_days` learned active days before they are judged. A rise that
reaches MEDIUM or HIGH while the sums of others of the user's peer group
rose to MEDIUM or more within the last 7 days, at least `min_peers_rising`
of them and `team_share` of the group's active users, is LOW: a team
taking up a new feature or tool moves together, an exfiltrating account
alone (and three accounts exfiltrating in one team of forty are three
alarms, not a team-wide change).

State: one record per user (see detectors.records), at most `max_users`,
the least recently active dropped first; O(1) per event (the usual day is
computed once per user-day, when the day closes).
"""

from __future__ import annotations

import math
from typing import Any

from uba.detectors.base import (
    DetectionContext,
    Detector,
    Finding,
    fmt_bytes,
    fmt_count,
    require_fraction,
    require_positive,
)
from uba.detectors.records import records
from uba.domain.anomalies import Feature, Severity
from uba.domain.events import ActivityEvent, ActivityType
from uba.domain.peers import PeerActivity, Usage
from uba.domain.shared_state import CACHED_USERS

_API_CALL = ActivityType.API_CALL
# The record: [day, bytes today, calls today, day tainted (0/1), cusum bytes,
#   cusum calls, level reported in this episode, usual day or None
#   ([median bytes, spread, median calls, spread, days]), closed days
#   [[day, bytes, calls, mark], ...] (marks: see _closing), bytes and calls
#   today at which the next level is reached (see _arm), days closed since
#   the usual day was computed]
_DAYK, _BYTES, _CALLS, _TAINT, _SB, _SC, _REPORTED, _REF, _HIST, _NEXT_B, _NEXT_C, _AGE = range(12)
# The usual day (median of up to 28 days) moves little from one day to the
# next: recomputed weekly once known, which halved this detector's cost.
_REFRESH_DAYS = 7
_NEVER = float("inf")
# The value a user's rise is counted under in the peer windows ("volume_rise").
_RISE = "rise"
# Closed days a run of elevated days is looked for in (and listed).
_RUN_DAYS = 6
_LEVELS = (Severity.LOW, Severity.MEDIUM, Severity.HIGH)


def _robust(values: list[float], min_relative: float, floor: float) -> tuple[float, float]:
    """The median, and a spread: the larger of the standard deviation and
    1.4826 median absolute deviations (day totals are skewed; the MAD alone
    made ordinary busy weeks look like drift), at least `min_relative` of
    the median and `floor`. Plain floats: the statistics module's exact
    arithmetic cost a millisecond per user-day."""
    ordered = sorted(values)
    n = len(ordered)
    half = n // 2
    median = ordered[half] if n % 2 else (ordered[half - 1] + ordered[half]) / 2
    deviations = sorted(abs(v - median) for v in ordered)
    mad = deviations[half] if n % 2 else (deviations[half - 1] + deviations[half]) / 2
    mean = sum(ordered) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in ordered) / n)
    return median, max(1.4826 * mad, std, min_relative * median, floor)


class SustainedVolumeDetector(Detector):
    name = "sustained_volume"
    version = "1.4"
    description = (
        "Bytes transferred and API calls per day against the user's usual day, accumulated over "
        "days (CUSUM): steady elevation that no single hour shows, such as low-and-slow "
        "exfiltration."
    )
    title = "Sustained rise in data volume"
    # Learned state: the last `_closing` result, with the record and day it is for.
    closing_: tuple[list, int, Any, tuple[float, float, int, list | None]] | None
    # Bytes may come on any event type; API calls are counted too.
    event_types = None

    def __init__(
        self,
        k: float = 0.5,
        max_daily_excess: float = 3.0,
        low_threshold: float = 4.5,
        medium_threshold: float = 7.0,
        high_threshold: float = 12.0,
        history_days: int = 28,
        min_days: int = 10,
        min_relative_spread: float = 0.25,
        min_bytes_spread: float = 100_000.0,
        min_calls_spread: float = 10.0,
        max_gap_days: int = 10,
        max_episode_days: int = 10,
        max_users: int = CACHED_USERS,
        min_peers_rising: int = 2,
        max_values: int = CACHED_USERS,
        min_ratio: float = 2.0,
        team_share: float = 0.2,
    ):
        # Allowance per day, in spreads: excess below it does not accumulate.
        self.k = k
        # Cap of one day's excess, in spreads: one extraordinary day (a big
        # export) must not carry the sum for a week; several elevated days must.
        self.max_daily_excess = max_daily_excess
        self.low_threshold = low_threshold
        self.medium_threshold = medium_threshold
        self.high_threshold = high_threshold
        self.history_days = history_days
        self.min_days = min_days
        self.min_relative_spread = min_relative_spread
        # Floors of the spread, so a very regular user is not flagged for a few extra calls.
        self.min_bytes_spread = min_bytes_spread
        self.min_calls_spread = min_calls_spread
        self.max_gap_days = max_gap_days
        # Reported days after which an elevation is taken as the new normal
        # (a change of role): the days are learned and the sum starts again.
        self.max_episode_days = max_episode_days
        self.max_users = max_users
        # Others of the peer group whose volume rose to MEDIUM+ within a week
        # that make a MEDIUM or HIGH rise a team-wide change (LOW): at least
        # that many, and that share of the group's active users.
        self.min_peers_rising = min_peers_rising
        self.team_share = team_share
        # Keys kept in the peer windows it shares with other detectors.
        self.max_values = max_values
        # The elevated days' total against as many usual days below which a
        # sum at MEDIUM or HIGH is reported as LOW.
        self.min_ratio = min_ratio

    def check_params(self) -> None:
        require_positive(
            self,
            "min_peers_rising",
            "k",
            "max_daily_excess",
            "low_threshold",
            "medium_threshold",
            "high_threshold",
            "history_days",
            "min_days",
            "min_bytes_spread",
            "min_calls_spread",
            "max_gap_days",
            "max_episode_days",
            "max_users",
            "max_values",
            "min_ratio",
        )
        require_fraction(self, "min_relative_spread", "team_share")
        if not self.low_threshold <= self.medium_threshold <= self.high_threshold:
            raise ValueError(f"{self.name}: thresholds must rise from low to medium to high")
        if self.min_days > self.history_days:
            raise ValueError(f"{self.name}.min_days must not exceed history_days")

    def _store(self, ctx: DetectionContext):
        # The store of the last SharedState seen, kept: looking it up by name
        # on every event would be a large share of this detector's cost.
        cached = getattr(self, "store_", None)
        if cached is None or cached[0] is not ctx.shared:
            cached = self.store_ = (
                ctx.shared,
                records(ctx.shared, f"{self.name}.days", self.max_users),
            )
        return cached[1]

    # -- the cumulative sums -----------------------------------------------------------

    def _closing(self, record: list, day: int) -> tuple[float, float, int, list | None]:
        """What closing the record's day before local day `day` gives, without
        changing it: (sum of bytes, sum of calls, the closed day's mark, the
        usual day after it). Marks: 0 learned into the usual day; 1 kept out
        (quarantined events); 2 kept out, part of the open episode; 3 kept
        out, part of an episode that ended."""
        sb, sc, ref = record[_SB], record[_SC], record[_REF]
        active = record[_BYTES] or record[_CALLS]
        mark = record[_TAINT]
        if ref is not None and active:
            sb = max(0.0, sb + self._excess(record[_BYTES], ref[0], ref[1]))
            sc = max(0.0, sc + self._excess(record[_CALLS], ref[2], ref[3]))
            if record[_REPORTED]:
                mark = 2
        if day - record[_DAYK] > self.max_gap_days:
            sb = sc = 0.0
        if ref is not None and record[_AGE] < _REFRESH_DAYS - 1:
            return sb, sc, mark, ref
        learned = [h for h in record[_HIST] if not h[3]]
        if active and not mark:
            learned.append([record[_DAYK], record[_BYTES], record[_CALLS], 0])
        return sb, sc, mark, self._usual(learned[-self.history_days :])

    def _usual(self, days: list) -> list | None:
        if len(days) < self.min_days:
            return None
        mb, sdb = _robust([h[1] for h in days], self.min_relative_spread, self.min_bytes_spread)
        mc, sdc = _robust([h[2] for h in days], self.min_relative_spread, self.min_calls_spread)
        return [mb, sdb, mc, sdc, len(days)]

    def _closing_once(self, record: list, day: int) -> tuple[float, float, int, list | None]:
        """`_closing`, computed once for the scoring and the learning of the
        day's first event (the usual day is the costly part)."""
        cached = getattr(self, "closing_", None)
        if (
            cached is not None
            and cached[0] is record
            and cached[1] == day
            and cached[2] == record[_DAYK]
        ):
            return cached[3]
        result = self._closing(record, day)
        self.closing_ = (record, day, record[_DAYK], result)
        return result

    def _close(self, record: list, day: int) -> None:
        """Closes the record's day (once per user-day)."""
        sb, sc, mark, ref = self._closing_once(record, day)
        self.closing_ = None
        hist = record[_HIST]
        if record[_BYTES] or record[_CALLS]:
            hist.append([record[_DAYK], record[_BYTES], record[_CALLS], mark])
        learned = [h for h in hist if not h[3]]
        for old in learned[: -self.history_days]:
            hist.remove(old)
        del hist[: -(self.history_days + 14)]  # kept-out days too are bounded
        episode = [h for h in hist if h[3] == 2]
        if len(episode) >= self.max_episode_days:
            # Elevated for this long, it is the user's new normal: learn it.
            for h in episode:
                h[3] = 0
            sb = sc = 0.0
            ref = self._usual([h for h in hist if not h[3]][-self.history_days :])
        if not (sb or sc):
            record[_REPORTED] = 0
            for h in episode:
                if h[3] == 2:
                    h[3] = 3
        record[_DAYK], record[_BYTES], record[_CALLS], record[_TAINT] = day, 0, 0, 0
        record[_AGE] = record[_AGE] + 1 if ref is record[_REF] else 0
        record[_SB], record[_SC], record[_REF] = sb, sc, ref
        self._arm(record)

    def _arm(self, record: list) -> None:
        """Sets the day's totals at which the sums reach the next level, so
        that an ordinary event costs two comparisons: sum >= T exactly when
        total >= usual + spread * (T - sum so far + k), if that is within
        the day's cap."""
        ref, reported = record[_REF], record[_REPORTED]
        if ref is None or reported >= len(_LEVELS):
            record[_NEXT_B] = record[_NEXT_C] = _NEVER
            return
        target = (self.low_threshold, self.medium_threshold, self.high_threshold)[reported]
        for index, s_index, usual, spread in (
            (_NEXT_B, _SB, ref[0], ref[1]),
            (_NEXT_C, _SC, ref[2], ref[3]),
        ):
            z = target - record[s_index] + self.k
            record[index] = usual + spread * z if z <= self.max_daily_excess else _NEVER

    def _excess(self, total: float, usual: float, spread: float) -> float:
        return min((total - usual) / spread, self.max_daily_excess) - self.k

    def _level(self, value: float) -> int:
        return (
            (value >= self.low_threshold)
            + (value >= self.medium_threshold)
            + (value >= self.high_threshold)
        )

    # -- scoring -------------------------------------------------------------------------

    def score_one(self, event: ActivityEvent, ctx: DetectionContext) -> list[Finding]:
        size = event.bytes_transferred
        is_call = event.type is _API_CALL
        if size <= 0 and not is_call:
            return []
        record = self._store(ctx).get(event.user_id)
        if record is None:
            return []
        day = ctx.clock.day_key
        closing = record[_DAYK] < day
        if closing:
            sb, sc, mark, ref = self._closing_once(record, day)
            if ref is None:
                return []
            reported = record[_REPORTED] if sb or sc else 0
            today_bytes, today_calls = max(size, 0), int(is_call)
        else:
            today_bytes, today_calls = record[_BYTES] + max(size, 0), record[_CALLS] + is_call
            if today_bytes < record[_NEXT_B] and today_calls < record[_NEXT_C]:
                return []
            ref = record[_REF]
            sb, sc, reported = record[_SB], record[_SC], record[_REPORTED]
        sum_b = sb + self._excess(today_bytes, ref[0], ref[1])
        sum_c = sc + self._excess(today_calls, ref[2], ref[3])
        level = self._level(max(sum_b, sum_c))
        if level <= reported:
            return []
        days = record[_HIST]
        if closing and (record[_BYTES] or record[_CALLS]):
            days = days + [[record[_DAYK], record[_BYTES], record[_CALLS], mark]]
        days = days[-self.max_episode_days :]
        level = self._effect_level(level, days, sum_b >= sum_c, today_bytes, today_calls, ref)
        if level <= reported:
            return []
        findings = self._finding(
            days[-_RUN_DAYS:], level, sum_b, sum_c, today_bytes, today_calls, ref
        )
        rising = self._peers_rising(event, ctx) if level >= 2 else None
        if rising is not None and rising.org_change(self.min_peers_rising, self.team_share):
            # A team whose volume rises together took up something new (a
            # rollout, a new tool), which one exfiltrating account does not.
            (finding,) = findings
            finding.severity = Severity.LOW
            finding.reason += (
                f"; lowered: the volume of {rising.adopters} of {rising.group_size} others in "
                f"peer group {rising.group} rose as much within 7 days (a team-wide change)"
            )
        return findings

    def _rise_activity(self, ctx: DetectionContext) -> PeerActivity:
        return PeerActivity(ctx.shared, "volume_rise", max_keys=int(self.max_values))

    def _peers_rising(self, event: ActivityEvent, ctx: DetectionContext) -> Usage | None:
        """Others of the user's peer group whose sums rose to MEDIUM or more
        in the last 7 days (LOW rises are everyday noise), as adopters of
        a rise, beside the group's active users; None without a group."""
        group = ctx.baseline.effective_peer_group or event.peer_group
        if not group:
            return None
        return self._rise_activity(ctx).usage(event.user_id, group, _RISE, ctx.clock.ts)

    def _elevated_run(
        self, recent: list, by_bytes: bool, today_bytes: float, today_calls: float, ref: list
    ) -> tuple[list, float, float]:
        """The run of elevated days (each above the allowance) before today,
        the run's total with today, and that total against as many usual days."""
        column, usual, spread = (1, ref[0], ref[1]) if by_bytes else (2, ref[2], ref[3])
        episode: list = []
        for h in reversed(recent):
            if (h[column] - usual) / spread <= self.k:
                break
            episode.insert(0, h)
        total = sum(h[column] for h in episode) + (today_bytes if by_bytes else today_calls)
        ratio = total / (usual * (len(episode) + 1)) if usual > 0 else math.inf
        return episode, total, ratio

    def _effect_level(
        self,
        level: int,
        days: list,
        by_bytes: bool,
        today_bytes: float,
        today_calls: float,
        ref: list,
    ) -> int:
        """MEDIUM and HIGH only with an effect of `min_ratio` or more: the
        rise against the usual day over the run of elevated days, or, when
        today is alone in its run, over all the closed `days` since the sum
        was last 0 (recomputed with today's usual day) and today."""
        if level <= 1:
            return level
        episode, _, ratio = self._elevated_run(
            days[-_RUN_DAYS:], by_bytes, today_bytes, today_calls, ref
        )
        if not episode:
            column, usual, spread = (1, ref[0], ref[1]) if by_bytes else (2, ref[2], ref[3])
            start, cusum = 0, 0.0
            for i, h in enumerate(days):
                cusum = max(0.0, cusum + self._excess(h[column], usual, spread))
                if cusum == 0.0:
                    start = i + 1
            stretch = days[start:]
            total = sum(h[column] for h in stretch) + (today_bytes if by_bytes else today_calls)
            ratio = total / (usual * (len(stretch) + 1)) if usual > 0 else math.inf
        return 1 if ratio < self.min_ratio else level

    def _finding(
        self,
        recent: list,
        level: int,
        sum_b: float,
        sum_c: float,
        today_bytes: float,
        today_calls: float,
        ref: list,
    ) -> list[Finding]:
        by_bytes = sum_b >= sum_c
        # For the explanation: the run of elevated days (each above the allowance) before today.
        episode, total, ratio = self._elevated_run(recent, by_bytes, today_bytes, today_calls, ref)
        days = len(episode) + 1
        plural = "s" if days > 1 else ""
        before = (
            f" and {len(episode)} active day{'s' if len(episode) > 1 else ''} before"
            if episode
            else ""
        )
        if by_bytes:
            usual, fmt, excess = ref[0], fmt_bytes, sum_b
            noun, spread = "transferred", fmt_bytes(ref[1])
            series = [fmt_bytes(h[1]) for h in episode] + [f"{fmt_bytes(today_bytes)} so far today"]
        else:
            usual, fmt, excess = ref[2], fmt_count, sum_c
            noun, spread = "API calls", fmt_count(ref[3])
            series = [fmt_count(h[2]) for h in episode] + [f"{fmt_count(today_calls)} so far today"]
        against = f"{ratio:.1f}x the usual" if usual > 0 else "against a usual"
        amount = fmt(total) + (" " + noun if noun == "API calls" else f" {noun}")
        return [
            Finding(
                score=max(sum_b, sum_c),
                severity=_LEVELS[level - 1],
                reason=(
                    f"{amount} over {days} day{plural} (today{before}), {against} {fmt(usual)} a "
                    f"day (median of the last {ref[4]} active days, spread {spread}): a sustained "
                    f"excess of {excess:.1f} spreads accumulated (CUSUM, allowance {self.k:g} a "
                    f"day; LOW from {self.low_threshold:g}, MEDIUM from {self.medium_threshold:g}, "
                    f"HIGH from {self.high_threshold:g}); possible low-and-slow exfiltration "
                    "(ATT&CK T1030, T1567)"
                ),
                observed=", ".join(series),
                expected=f"{fmt(usual)} a day",
                features=(
                    Feature("cusum_bytes", float(sum_b), 1.0 if by_bytes else 0.0),
                    Feature("cusum_calls", float(sum_c), 0.0 if by_bytes else 1.0),
                    Feature("bytes_today", float(today_bytes), 0.0),
                    Feature("calls_today", float(today_calls), 0.0),
                ),
                baseline_observations=int(ref[4]),
                baseline_mature=True,
            )
        ]

    # -- learning ------------------------------------------------------------------------

    def learn_one(self, event: ActivityEvent, ctx: DetectionContext) -> None:
        size = event.bytes_transferred
        is_call = event.type is _API_CALL
        if size <= 0 and not is_call:
            return
        store = self._store(ctx)
        user, day = event.user_id, ctx.clock.day_key
        record = store.get(user)
        if record is None:
            record = store.put(user, [day, 0, 0, 0, 0.0, 0.0, 0, None, [], _NEVER, _NEVER, 0])
        elif record[_DAYK] < day:
            self._close(record, day)
            store.touch(user)
        if record[_BYTES] == record[_CALLS] == 0:
            # The day's first event: the user counts among the group's active
            # users, whose share of risers makes a team-wide change.
            group = ctx.baseline.effective_peer_group or event.peer_group
            self._rise_activity(ctx).note_member(user, group, ctx.clock.ts)
        # (An event of an earlier day, arriving late, counts in the open day.)
        record[_BYTES] += max(size, 0)
        record[_CALLS] += is_call
        if ctx.quarantined:
            record[_TAINT] = 1
        if record[_BYTES] >= record[_NEXT_B] or record[_CALLS] >= record[_NEXT_C]:
            ref = record[_REF]
            sum_b = record[_SB] + self._excess(record[_BYTES], ref[0], ref[1])
            sum_c = record[_SC] + self._excess(record[_CALLS], ref[2], ref[3])
            level = self._level(max(sum_b, sum_c))
            if level > record[_REPORTED]:
                # As score_one judged it (the closed days are in the history now).
                level = self._effect_level(
                    level,
                    record[_HIST][-self.max_episode_days :],
                    sum_b >= sum_c,
                    record[_BYTES],
                    record[_CALLS],
                    ref,
                )
            if level > record[_REPORTED]:
                record[_REPORTED] = level
                self._arm(record)
                group = ctx.baseline.effective_peer_group or event.peer_group
                if level >= 2 and not ctx.quarantined and group:
                    self._rise_activity(ctx).observe(
                        event.user_id, group, _RISE, ctx.clock.ts, True
                    )
