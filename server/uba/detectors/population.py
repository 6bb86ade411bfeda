"""Password attacks spread across the population: credential stuffing and
distributed spraying, where many addresses each try one or two passwords
against many accounts, so no address and no account crosses a threshold of
its own (ATT&CK T1110.003, T1110.004).

The organisation is the unit: its failed logins in a sliding window
(`window_seconds`) against what it usually sees at that time of the week.
The usual rate is learned per `bucket_seconds` bucket of failures (each
account's counted up to `max_failures_per_account`: a brute force against
one account is not the organisation's usual), by UTC
hour of the week (a Monday-morning wave across time zones is routine), with
the hour of the day and then all hours as fallbacks while the weekly slots
fill; buckets during an open wave are not learned. Failures also follow
logins: the window's successful logins times the organisation's usual
failure-to-success ratio is the other expectation, so a busy morning or
a VPN change (everyone logs in at once) does not look like an attack.

A wave is flagged when, within the window,
- the failures reach `rate_ratio` times the expected count and the
  expected count plus `z` standard deviations, and at least `min_failures`;
- they hit at least `min_accounts` accounts, at most
  `max_failures_per_account` each on average (one account's brute force
  is failed_login_burst's);
- they come from at least `min_sources` addresses (default 1: a few
  addresses each under password_spraying's limit are an attack too), when
  most of them carry an address (without addresses the rest still works).
MEDIUM, HIGH from twice the limit; the finding names the busiest sources
and accounts. The wave stays open `wave_memory_seconds` after it was last
over the limit. While it is open, a successful login to an account that
the wave targeted, from an address it does not know or one that failed
against other accounts, is its own HIGH finding for that user (not the
user's own typos: on a device they had, from the address every failure
on the account came from, which tried no other account); LOW when
the address failed nowhere and its network is the organisation's (at
least `min_network_users` other users logged in from it in
`network_memory_seconds` outside waves: the company VPN a user moved to
the day before, not an attacker's proxy). Apart from waves, one account
failing from `min_sources_per_account` addresses within
`wave_memory_seconds` is LOW (MEDIUM, HIGH at each doubling).

State: windows of the shared detector state (bounded) and one record
(see detectors.records) with the learned rates; O(1) per event.
"""

from __future__ import annotations

import math
from collections import Counter

from uba.detectors.base import (
    POPULATION_SCOPE,
    DetectionContext,
    Detector,
    Finding,
    escalation_level,
    fmt_window,
    require_positive,
    require_severity,
)
from uba.detectors.records import RecordStore, records
from uba.domain.anomalies import Feature, Severity
from uba.domain.event_keys import network_of
from uba.domain.events import ActivityEvent, ActivityType
from uba.domain.shared_state import CACHED_USERS

_FAILURE = ActivityType.LOGIN_FAILURE
_SUCCESS = ActivityType.LOGIN_SUCCESS
_WEEK_HOURS = 168
_ORG = "org"
# The record: [bucket index, failures, successes, bucket tainted (0/1),
#   wave level, wave last over the limit (ts), wave started (ts),
#   weekly slots [[n, mean, m2] x 168], daily slots [[n, mean, m2] x 24],
#   all hours [n, mean, m2], failures learned, successes learned,
#   the bucket's failures per account {account: n}]
(
    _BUCKET,
    _FAILS,
    _SUCCS,
    _TAINT,
    _LEVEL,
    _LAST,
    _START,
    _WEEK,
    _DAY,
    _ALL,
    _F_TOTAL,
    _S_TOTAL,
    _PER_ACCOUNT,
) = range(13)
# Accounts whose failures in one bucket are counted apart (beyond, each
# failure counts); far more than fail in ten ordinary minutes.
_MAX_ACCOUNTS_PER_BUCKET = 10_000
# Zero buckets learned at most after a silence (a week of 10-minute buckets).
_MAX_GAP_BUCKETS = 1008


def _new_record(bucket: int) -> list:
    return [
        bucket,
        0,
        0,
        0,
        0,
        0.0,
        0.0,
        [[0, 0.0, 0.0] for _ in range(_WEEK_HOURS)],
        [[0, 0.0, 0.0] for _ in range(24)],
        [0, 0.0, 0.0],
        0,
        0,
        {},
    ]


def _learn(stats: list, x: float, min_weight: float) -> None:
    """Exponentially weighted mean and variance (Welford while young)."""
    n = stats[0] + 1
    weight = max(1.0 / n, min_weight)
    delta = x - stats[1]
    stats[1] += weight * delta
    stats[2] = (1 - weight) * (stats[2] + weight * delta * delta)
    stats[0] = n


def _known_before(values, value: str, ts: float) -> bool:
    entry = values.entries.get(value)
    return entry is not None and entry[1] < ts


NO_HISTORY = "no history yet"


class CredentialStuffingDetector(Detector):
    name = "credential_stuffing"
    version = "1.4"
    description = (
        "Failed logins across the organisation, against its usual rate for the time of week: many "
        "addresses and accounts with a try or two each (credential stuffing, distributed "
        "spraying), and a successful login to an account the wave targeted."
    )
    title = "Distributed password attack"
    event_types = frozenset({_FAILURE, _SUCCESS})
    # ATT&CK (read where the detector interface has the attribute): stuffing
    # and spraying alike, so both techniques.
    attack = ("T1110.004", "T1110.003")
    # The organisation is its unit: one key for every event it reads.
    scope = POPULATION_SCOPE

    def __init__(
        self,
        window_seconds: float = 900.0,
        bucket_seconds: float = 600.0,
        min_failures: int = 12,
        min_accounts: int = 8,
        min_sources: int = 1,
        max_failures_per_account: float = 3.0,
        rate_ratio: float = 3.0,
        z: float = 4.0,
        min_slot_buckets: int = 4,
        wave_memory_seconds: float = 3600.0,
        max_events: int = 50_000,
        severity: str = "medium",
        success_severity: str = "high",
        min_sources_per_account: int = 5,
        account_severity: str = "low",
        min_network_users: int = 5,
        network_memory_seconds: float = 7 * 86400.0,
        max_users: int = CACHED_USERS,
        max_sources: int = CACHED_USERS,
    ):
        self.window_seconds = window_seconds
        self.bucket_seconds = bucket_seconds
        self.min_failures = min_failures
        self.min_accounts = min_accounts
        self.min_sources = min_sources
        self.max_failures_per_account = max_failures_per_account
        self.rate_ratio = rate_ratio
        self.z = z
        # Buckets a weekly (then daily) slot needs before it is trusted.
        self.min_slot_buckets = min_slot_buckets
        self.wave_memory_seconds = wave_memory_seconds
        # Bound on events in the organisation's window.
        self.max_events = max_events
        self.severity = severity
        self.success_severity = success_severity
        # One account failing from this many addresses within
        # wave_memory_seconds: LOW, raised at each doubling (a roaming phone
        # with a stale password moves between a few addresses, not many).
        self.min_sources_per_account = min_sources_per_account
        self.account_severity = account_severity
        # Other users whose logins make a network the organisation's.
        self.min_network_users = min_network_users
        self.network_memory_seconds = network_memory_seconds
        # Accounts and addresses whose failures are remembered (targeted).
        self.max_users = max_users
        self.max_sources = max_sources

    def check_params(self) -> None:
        require_positive(
            self,
            "window_seconds",
            "bucket_seconds",
            "min_failures",
            "min_accounts",
            "min_sources",
            "max_failures_per_account",
            "rate_ratio",
            "z",
            "min_slot_buckets",
            "wave_memory_seconds",
            "max_events",
            "min_sources_per_account",
            "min_network_users",
            "network_memory_seconds",
            "max_users",
            "max_sources",
        )
        require_severity(self, "severity", "success_severity", "account_severity")

    def population_key(self, event: ActivityEvent) -> str | None:
        return "" if event.type in self.event_types else None

    # -- state -----------------------------------------------------------------------

    def _window(self, ctx: DetectionContext):
        # keys: "accounts" (value: account), "sources" (value: address), "successes"
        return ctx.shared.windows(f"{self.name}.window", self.window_seconds, 8, self.max_events)

    def _targeted(self, ctx: DetectionContext):
        # account -> addresses that failed against it; address -> accounts it failed against
        return ctx.shared.windows(
            f"{self.name}.targeted",
            self.wave_memory_seconds,
            int(self.max_users + self.max_sources),
            64,
        )

    def _networks(self, ctx: DetectionContext):
        # network -> users who logged in from it outside waves (the latest few)
        return ctx.shared.windows(
            f"{self.name}.networks", self.network_memory_seconds, int(self.max_sources), 32
        )

    def _record(self, ctx: DetectionContext) -> list:
        cached = getattr(self, "store_", None)  # the store of the last SharedState seen
        if cached is None or cached[0] is not ctx.shared:
            cached = self.store_ = (ctx.shared, records(ctx.shared, f"{self.name}.rates", 1))
        store: RecordStore = cached[1]
        record = store.get(_ORG)
        if record is None:
            record = store.put(_ORG, _new_record(int(ctx.clock.ts // self.bucket_seconds)))
        elif len(record) == _PER_ACCOUNT:  # saved by version 1.1
            record.append({})
        return record

    def _wave_open(self, record: list, ts: float) -> bool:
        return record[_LEVEL] > 0 and ts - record[_LAST] <= self.wave_memory_seconds

    # -- expectation --------------------------------------------------------------------

    def _expected(self, record: list, ts: float, successes: int) -> tuple[float, float, str]:
        """(expected failures in the window, its standard deviation, what from)."""
        scale = self.window_seconds / self.bucket_seconds
        hour = int(ts // 3600)
        # 1970-01-01 was a Thursday: hour 0 of the week is Monday 00:00 UTC.
        slots = (
            (record[_WEEK][(hour + 72) % _WEEK_HOURS], "this hour of the week"),
            (record[_DAY][hour % 24], "this hour of the day"),
            (record[_ALL], "all hours"),
        )
        mean = sd = 0.0
        label = NO_HISTORY
        for stats, name in slots:
            if stats[0] >= self.min_slot_buckets:
                mean, sd, label = stats[1] * scale, math.sqrt(max(stats[2], 0.0) * scale), name
                break
        learned_f, learned_s = record[_F_TOTAL], record[_S_TOTAL]
        if learned_s >= 50:
            # Failures follow logins: the usual ratio times this window's logins.
            by_logins = successes * (learned_f + 1) / learned_s
            if by_logins > mean:
                mean, sd, label = (
                    by_logins,
                    math.sqrt(by_logins),
                    f"{successes} logins in the window",
                )
        return mean, sd, label

    def _wave(
        self, failures: int, accounts: int, sources: int, with_source: int, limit: float
    ) -> bool:
        """The window's test. Addresses count only when most failures carry
        one: a source that sends none must not be judged by the few that do."""
        if failures < limit or accounts < self.min_accounts:
            return False
        if failures > self.max_failures_per_account * accounts:
            return False
        return 2 * with_source < failures or sources >= self.min_sources

    def _limit(self, expected: float, sd: float) -> float:
        spread = max(sd, math.sqrt(max(expected, 1.0)))
        return max(float(self.min_failures), self.rate_ratio * expected, expected + self.z * spread)

    # -- scoring -------------------------------------------------------------------------

    def score_one(self, event: ActivityEvent, ctx: DetectionContext) -> list[Finding]:
        record = self._record(ctx)
        ts = ctx.clock.ts
        if event.type is _SUCCESS:
            return self._success(event, ctx, record, ts)
        return self._many_sources(event, ctx, ts) + self._wave_finding(event, ctx, record, ts)

    def _many_sources(
        self, event: ActivityEvent, ctx: DetectionContext, ts: float
    ) -> list[Finding]:
        """One account failing from many addresses (a distributed attack on it)."""
        ip = event.source_ip
        if not ip:
            return []
        targeted, account = self._targeted(ctx), event.user_id
        before = targeted.distinct(account, ts) - targeted.has_value(account, "", ts)
        after = before + (not targeted.has_value(account, ip, ts))
        level = escalation_level(after, self.min_sources_per_account)
        if level <= escalation_level(before, self.min_sources_per_account):
            return []
        span = fmt_window(self.wave_memory_seconds)
        return [
            Finding(
                score=after / self.min_sources_per_account,
                severity=Severity.parse(self.account_severity).raised_by(level - 1, Severity.HIGH),
                reason=(
                    f"failed logins to this account from {after} addresses within {span} "
                    f"(limit {self.min_sources_per_account}); latest from {ip}: a distributed "
                    "attack on one account (ATT&CK T1110)"
                ),
                observed=f"{after} addresses in {span}",
                expected=f"fewer than {self.min_sources_per_account} addresses in {span}",
                features=(Feature("failing_addresses_for_account", float(after), 1.0),),
            )
        ]

    def _wave_finding(
        self, event: ActivityEvent, ctx: DetectionContext, record: list, ts: float
    ) -> list[Finding]:
        window = self._window(ctx)
        failures = window.count("accounts", ts) + 1
        if failures < self.min_failures:
            return []
        account = event.user_id
        accounts = window.distinct("accounts", ts) + (not window.has_value("accounts", account, ts))
        source = event.source_ip
        sources = window.distinct("sources", ts) + (
            bool(source) and not window.has_value("sources", source, ts)
        )
        with_source = window.count("sources", ts) + bool(source)
        expected, sd, basis = self._expected(record, ts, window.count("successes", ts))
        limit = self._limit(expected, sd)
        if not self._wave(failures, accounts, sources, with_source, limit):
            return []
        level = escalation_level(failures, limit)
        if self._wave_open(record, ts) and level <= record[_LEVEL]:
            return []
        span = fmt_window(self.window_seconds)
        top_sources, top_accounts = self._top(window, ts, source, account)
        # With no learned rate at all (a new deployment, a first import) a
        # wave is judged against fixed limits only: reported, but never so
        # high that it quarantines what may be an ordinary morning.
        cap = Severity.HIGH if basis != NO_HISTORY else Severity.MEDIUM
        return [
            Finding(
                score=failures / max(expected, 1.0),
                severity=Severity.parse(self.severity).raised_by(level - 1, cap),
                reason=(
                    f"{failures} failed logins across {accounts} accounts from "
                    f"{sources if sources else 'unknown'} addresses within {span}, "
                    f"{failures / accounts:.1f} per account; usual for {basis}: about "
                    f"{expected:.1f} (limit {limit:.0f}): credential stuffing or password spraying "
                    f"(ATT&CK T1110). Sources: {top_sources}. Accounts: {top_accounts}"
                ),
                observed=f"{failures} failures, {accounts} accounts, {sources} addresses in {span}",
                expected=f"about {expected:.1f} failures in {span} ({basis}); limit {limit:.0f}",
                features=(
                    Feature("failures_in_window", float(failures), 1.0),
                    Feature("accounts_in_window", float(accounts), 0.5),
                    Feature("sources_in_window", float(sources), 0.5),
                    Feature("expected_failures", float(expected), 0.0),
                ),
                baseline_observations=record[_ALL][0],
                baseline_mature=record[_WEEK][(int(ts // 3600) + 72) % _WEEK_HOURS][0]
                >= self.min_slot_buckets,
            )
        ]

    @staticmethod
    def _top(window, ts: float, source: str, account: str, n: int = 10) -> tuple[str, str]:
        """The busiest addresses and accounts of the window (at report time only)."""

        def top(key: str, extra: str) -> str:
            current = window._current(key, ts)  # noqa: SLF001 (KeyedWindows offers counts only)
            counts = Counter(v for _, v in current.events) if current is not None else Counter()
            if extra:
                counts[extra] += 1
            names = [name for name, _ in counts.most_common(n)]
            more = len(counts) - len(names)
            return (
                ", ".join(names) + (f" and {more} more" if more > 0 else "")
                if names
                else "none recorded"
            )

        return top("sources", source), top("accounts", account)

    def _success(
        self, event: ActivityEvent, ctx: DetectionContext, record: list, ts: float
    ) -> list[Finding]:
        if not self._wave_open(record, ts):
            return []
        targeted = self._targeted(ctx)
        account = event.user_id
        tries = targeted.count(account, ts)
        if not tries:
            return []
        baseline = ctx.baseline
        ip, device = event.source_ip, event.device_id
        # Known from before the wave: the baseline also learns the attack's failures.
        since = record[_START] - self.window_seconds
        known = (
            _known_before(baseline.source_ips, ip, since)
            if ip
            else _known_before(baseline.devices, device, since)
            if device
            else False
        )
        ip_key = "ip:" + ip
        others = (
            ip and (targeted.distinct(ip_key, ts) - targeted.has_value(ip_key, account, ts)) or 0
        )
        if not others and (
            known
            # On a device the user had before the wave, every failed try on
            # it from this address, which tried no other account: the user
            # mistyped, then logged in (a phone on a carrier's new address).
            or (
                ip
                and device
                and _known_before(baseline.devices, device, since)
                and targeted.distinct(account, ts) == 1
                and targeted.has_value(account, ip, ts)
            )
        ):
            return []  # the user, after a typo
        severity = Severity.parse(self.success_severity)
        how = []
        if others:
            how.append(
                f"the address also failed against {others} other account{'s' if others > 1 else ''}"
            )
        if not known:
            how.append("the address is new for this user" if ip else "no known address or device")
        if ip and not known and not others:
            network = network_of(ip)
            networks = self._networks(ctx)
            users = networks.distinct(network, ts) - networks.has_value(network, account, ts)
            if users >= self.min_network_users:
                # An attacker's proxy is no network the organisation logs in from.
                severity = Severity.LOW
                how.append(
                    f"lowered: it failed against no other account, and {users} other users "
                    f"logged in from its network {network} in "
                    f"{fmt_window(self.network_memory_seconds)} (the organisation's)"
                )
        wave = fmt_window(ts - record[_START])
        return [
            Finding(
                score=float(tries + others + (not known)),
                severity=severity,
                reason=(
                    f"successful login from {ip or device or 'unknown source'} to an account "
                    f"targeted by the password attack under way for {wave} ({tries} failed tries "
                    f"on it from {targeted.distinct(account, ts)} addresses); {'; '.join(how)} "
                    "(ATT&CK T1110, T1078)"
                ),
                observed=f"success after {tries} failures in an attack wave",
                expected="no login from an unfamiliar address to an account under attack",
                features=(
                    Feature("failures_on_account", float(tries), 1.0),
                    Feature("other_accounts_from_address", float(others), 1.0),
                    Feature("known_address", float(known), 0.0),
                ),
            )
        ]

    # -- learning ------------------------------------------------------------------------

    def learn_one(self, event: ActivityEvent, ctx: DetectionContext) -> None:
        ts = ctx.clock.ts
        record = self._record(ctx)
        self._advance(record, ts)
        window = self._window(ctx)
        if event.type is _SUCCESS:
            record[_SUCCS] += 1
            window.add("successes", ts)
            if event.source_ip and not self._wave_open(record, ts):
                # Logins during a wave might be its successes.
                self._networks(ctx).add(network_of(event.source_ip), ts, event.user_id)
            return
        account, source = event.user_id, event.source_ip
        # The usual rate is of accounts failing: one account's burst (a
        # brute force, failed_login_burst's to judge) counts as at most
        # `max_failures_per_account`, or it would raise this hour of the
        # week's expectation enough to hide next week's wave.
        per_account = record[_PER_ACCOUNT]
        tried = per_account.get(account, 0)
        if tried < self.max_failures_per_account:
            record[_FAILS] += 1
            if tried or len(per_account) < _MAX_ACCOUNTS_PER_BUCKET:
                per_account[account] = tried + 1
        # Level of the window with this failure (the same test as score_one).
        window.add("accounts", ts, account)
        if source:
            window.add("sources", ts, source)
        targeted = self._targeted(ctx)
        targeted.add(account, ts, source)
        if source:
            targeted.add("ip:" + source, ts, account)
        level = self._level(window, record, ts)
        if level:
            if not self._wave_open(record, ts):
                record[_START] = ts
                record[_LEVEL] = 0
            record[_LEVEL] = max(record[_LEVEL], level)
            record[_LAST] = ts
            record[_TAINT] = 1
        elif record[_LEVEL] and not self._wave_open(record, ts):
            record[_LEVEL] = 0

    def _level(self, window, record: list, ts: float) -> int:
        failures = window.count("accounts", ts)
        if failures < self.min_failures:
            return 0
        accounts = window.distinct("accounts", ts)
        sources = window.distinct("sources", ts)
        expected, sd, _ = self._expected(record, ts, window.count("successes", ts))
        limit = self._limit(expected, sd)
        if not self._wave(failures, accounts, sources, window.count("sources", ts), limit):
            return 0
        return escalation_level(failures, limit)

    def _advance(self, record: list, ts: float) -> None:
        """Closes the current bucket (and learns the silent ones after it)
        when `ts` falls in a later one. Late events count in the open one."""
        bucket = int(ts // self.bucket_seconds)
        current = record[_BUCKET]
        if bucket <= current:
            return
        if not record[_TAINT]:
            self._learn_bucket(record, current, record[_FAILS])
            record[_F_TOTAL] += record[_FAILS]
            record[_S_TOTAL] += record[_SUCCS]
        for silent in range(max(current + 1, bucket - _MAX_GAP_BUCKETS), bucket):
            self._learn_bucket(record, silent, 0)
        record[_BUCKET], record[_FAILS], record[_SUCCS] = bucket, 0, 0
        record[_PER_ACCOUNT] = {}
        record[_TAINT] = int(self._wave_open(record, ts))

    def _learn_bucket(self, record: list, bucket: int, failures: int) -> None:
        hour = int(bucket * self.bucket_seconds // 3600)
        per_hour = max(1.0, 3600 / self.bucket_seconds)
        # A weekly slot sees a bucket every week: its weight is kept higher
        # so it follows a changing organisation within a few weeks.
        _learn(record[_WEEK][(hour + 72) % _WEEK_HOURS], failures, 1 / (8 * per_hour))
        _learn(record[_DAY][hour % 24], failures, 1 / (14 * per_hour))
        _learn(record[_ALL], failures, 1 / (14 * 24 * per_hour))
