"""Weak signals of one session taken together, and dormant accounts.

`session_risk` (account takeover): each novelty alone is a LOW signal: a new
network, a new device, a new country, an endpoint the user never called.
Together, in one burst of activity, they are a takeover pattern (ATT&CK
T1078 Valid Accounts). Failed logins and MFA prompts sent or denied bring
no signal (anyone can fail as anyone, from anywhere). The rule, documented
in docs/user-signals.md:

    new network (/24, /48)                      1 point
    new device                                  1
    new country                                 1  (one its peers work from: 0.5)
    first use of endpoints nobody among the
      user's peers used in 30 days              1  (privileged, e.g. /admin: 2)
    first use of endpoints the peers use        0.5
    return after a dormant silence              1.5

    MEDIUM from 3 points, HIGH from 4.5.

A "session" is the user's burst of activity: signals less than
`idle_seconds` apart (with or without session ids, which callers send on
logins only as often as not). Each signal counts once per burst; the
detector reports when the level rises. Values many users adopted within a
week (a VPN change, a laptop refresh, a rollout) earn no points, and the
reason says so; a new device or network only when the other is familiar
(a change brings one new thing at a time). Immature baselines are judged
only on what they already know enough about (places after five active
days, endpoints after 50 calls).

`dormant_account`: activity after a silence far beyond the user's usual
gaps between active days (at least `min_gap_days`, and `gap_factor` times
the longest gap seen): LOW alone, MEDIUM with a new device or a first
privileged endpoint in the returning burst, HIGH with both.
"""

from __future__ import annotations

from uba.detectors.base import DetectionContext, Detector, Finding, require_positive
from uba.domain.anomalies import Feature, Severity
from uba.domain.event_keys import is_privileged, network_of, normalize_endpoint
from uba.domain.events import UNPROVEN_TYPES, ActivityEvent, ActivityType
from uba.domain.peers import PeerActivity
from uba.domain.shared_state import CACHED_USERS
from uba.domain.user_baseline import UserBaseline

_API_CALL = ActivityType.API_CALL
_DAY = 86400.0
# Share of a group that adopting a value within a week makes it an
# organisation-wide change, and the least number of adopters.
ORG_CHANGE_SHARE = 0.2
ORG_CHANGE_ADOPTERS = 3

# Signals, in the order they are listed in reasons.
(
    NETWORK,
    DEVICE,
    COUNTRY,
    ENDPOINT_PEERS,
    ENDPOINT_NEW,
    ENDPOINT_PRIVILEGED,
    DORMANT,
    COUNTRY_PEERS,
) = range(8)
POINTS = (1.0, 1.0, 1.0, 0.5, 1.0, 2.0, 1.5, 0.5)
NAMES = (
    "new network",
    "new device",
    "new country",
    "first use of endpoints its peers use",
    "first use of endpoints no peer used in 30 days",
    "first use of privileged endpoints no peer used",
    "return after a dormant silence",
    "new country its peers work from",
)
# Peers working from a country (in 30 days) that make a new one half a
# point, as new_country lowers it: a trip to another office.
COUNTRY_PEERS_MIN = 2


def dormant_gap(
    baseline: UserBaseline, day_key: int, min_gap_days: float, gap_factor: float
) -> int:
    """Days since the user's last active day when that silence is far beyond
    their usual gaps (0 when it is not, or nothing is known yet)."""
    last = baseline.last_learned_day
    if last is None or day_key <= last or baseline.days_covered < baseline.maturity.min_days:
        return 0
    gap = day_key - last
    usual = baseline.active_day_gaps.max or 1
    return gap if gap >= max(min_gap_days, gap_factor * usual) else 0


class _Bursts:
    """Per-user state of the burst in progress: "bits|level|detail", in a
    named window of the shared detector state (bounded, checkpointed)."""

    @staticmethod
    def read(
        ctx: DetectionContext, name: str, idle: float, max_users: int, user_id: str
    ) -> tuple[int, int, str]:
        entry = ctx.shared.windows(name, idle, max_users, 1).latest(user_id, ctx.clock.ts)
        if entry is None:
            return 0, 0, ""
        bits, level, detail = entry[1].split("|", 2)
        return int(bits), int(level), detail

    @staticmethod
    def write(
        ctx: DetectionContext,
        name: str,
        idle: float,
        max_users: int,
        user_id: str,
        bits: int,
        level: int,
        detail: str,
    ) -> None:
        ctx.shared.windows(name, idle, max_users, 1).add(
            user_id, ctx.clock.ts, f"{bits}|{level}|{detail}"
        )


class SessionRiskDetector(Detector):
    name = "session_risk"
    version = "1.1"
    description = (
        "Several weak signals in one burst of a user's activity (new network, device, country, "
        "never-used endpoints, dormant return) combined into one account-takeover score."
    )
    title = "Account takeover pattern"
    event_types = None

    def __init__(
        self,
        medium_points: float = 3.0,
        high_points: float = 4.5,
        idle_seconds: float = 2 * 3600.0,
        min_gap_days: float = 14.0,
        gap_factor: float = 2.0,
        max_users: int = CACHED_USERS,
        max_values: int = CACHED_USERS,
    ):
        self.medium_points = medium_points
        self.high_points = high_points
        self.idle_seconds = idle_seconds
        self.min_gap_days = min_gap_days
        self.gap_factor = gap_factor
        # Users whose burst is kept, and values kept in the peer windows it reads.
        self.max_users = max_users
        self.max_values = max_values

    def check_params(self) -> None:
        require_positive(
            self,
            "medium_points",
            "high_points",
            "idle_seconds",
            "min_gap_days",
            "gap_factor",
            "max_users",
            "max_values",
        )
        if self.high_points < self.medium_points:
            raise ValueError(f"{self.name}.high_points must be at least medium_points")

    def _signals(self, event: ActivityEvent, ctx: DetectionContext) -> tuple[int, list[str]]:
        """The signals of this event (a bit per signal) and notes on values
        not counted because the organisation changed."""
        baseline = ctx.baseline
        ts = ctx.clock.ts
        bits = 0
        notes: list[str] = []
        group = baseline.effective_peer_group or event.peer_group
        if baseline.mature_for("places"):
            if event.source_ip and baseline.networks.entries:
                network = network_of(event.source_ip)
                if network not in baseline.networks:
                    usage = PeerActivity(
                        ctx.shared, "network", max_keys=int(self.max_values)
                    ).usage(event.user_id, group, network, ts)
                    if usage.org_change(
                        ORG_CHANGE_ADOPTERS, ORG_CHANGE_SHARE
                    ) and baseline.in_familiar_context(event, ts, ("devices",)):
                        notes.append(
                            f"network {network} not counted: {usage.adopters} users moved to it "
                            "this week"
                        )
                    else:
                        bits |= 1 << NETWORK
            if (
                event.device_id
                and baseline.devices.entries
                and event.device_id not in baseline.devices
            ):
                from uba.detectors.novelty import device_kind

                usage = PeerActivity(ctx.shared, "device", max_keys=int(self.max_values)).usage(
                    event.user_id, group, device_kind(event), ts
                )
                if usage.org_change(
                    ORG_CHANGE_ADOPTERS, ORG_CHANGE_SHARE
                ) and baseline.in_familiar_context(event, ts, ("networks",)):
                    notes.append(
                        f"device not counted: {usage.adopters} users got a new device like it this "
                        "week"
                    )
                else:
                    bits |= 1 << DEVICE
            if (
                event.country_code
                and baseline.countries.entries
                and event.country_code not in baseline.countries
            ):
                usage = PeerActivity(ctx.shared, "country", max_keys=int(self.max_values)).usage(
                    event.user_id, group, event.country_code, ts
                )
                bits |= 1 << (COUNTRY_PEERS if usage.peers >= COUNTRY_PEERS_MIN else COUNTRY)
        if (
            event.type is _API_CALL
            and (event.api_method or event.api_path)
            and baseline.mature_for("api")
        ):
            endpoint = normalize_endpoint(event.api_method, event.api_path)
            if endpoint not in baseline.endpoints:
                usage = PeerActivity(ctx.shared, "endpoint", max_keys=int(self.max_values)).usage(
                    event.user_id, group, endpoint, ts
                )
                if usage.org_change(ORG_CHANGE_ADOPTERS, ORG_CHANGE_SHARE):
                    notes.append(
                        f"{endpoint} not counted: rolled out to {usage.adopters} users this week"
                    )
                elif usage.peers or (not group and usage.population):
                    bits |= 1 << ENDPOINT_PEERS
                elif is_privileged(endpoint):
                    bits |= 1 << ENDPOINT_PRIVILEGED
                else:
                    bits |= 1 << ENDPOINT_NEW
        if dormant_gap(baseline, ctx.clock.day_key, self.min_gap_days, self.gap_factor):
            bits |= 1 << DORMANT
        return bits, notes

    @staticmethod
    def points(bits: int) -> float:
        # Endpoint signals: the strongest one counts.
        total = 0.0
        endpoint = 0.0
        for signal, value in enumerate(POINTS):
            if bits & (1 << signal):
                if signal in (ENDPOINT_PEERS, ENDPOINT_NEW, ENDPOINT_PRIVILEGED):
                    endpoint = max(endpoint, value)
                else:
                    total += value
        return total + endpoint

    def _level(self, points: float) -> int:
        return 2 if points >= self.high_points else 1 if points >= self.medium_points else 0

    def score_one(self, event: ActivityEvent, ctx: DetectionContext) -> list[Finding]:
        self.pending_ = None
        if event.type in UNPROVEN_TYPES:
            # A failed try (or a push prompt) from somewhere proves no one
            # was there: a spray's try from abroad plus the user's own new
            # laptop an hour later is no takeover pattern.
            return []
        new_bits, notes = self._signals(event, ctx)
        if not new_bits:
            # Nothing new: the burst (signals less than idle_seconds apart) is unchanged.
            return []
        old_bits, reported, detail = _Bursts.read(
            ctx, self.name, self.idle_seconds, int(self.max_users), event.user_id
        )
        bits = old_bits | new_bits
        what = detail
        if new_bits & ~old_bits:
            what = "; ".join(filter(None, [detail, _what(event, new_bits & ~old_bits)]))[-400:]
        self.pending_ = (event.event_id, bits, what)
        points = self.points(bits)
        level = self._level(points)
        if level <= reported:
            return []
        signals = [NAMES[s] for s in range(len(POINTS)) if bits & (1 << s)]
        note = f"; {'; '.join(notes)}" if notes else ""
        return [
            Finding(
                score=points,
                severity=Severity.HIGH if level == 2 else Severity.MEDIUM,
                reason=(
                    f"{points:g} risk points in one burst of activity: {', '.join(signals)} "
                    f"({what}); MEDIUM from {self.medium_points:g}, HIGH from "
                    f"{self.high_points:g}{note}"
                ),
                observed=", ".join(signals),
                expected=f"fewer than {self.medium_points:g} risk points in a session",
                features=tuple(
                    Feature(f"signal_{NAMES[s].split(' ')[0]}_{s}", POINTS[s], 1.0)
                    for s in range(len(POINTS))
                    if bits & (1 << s)
                ),
                baseline_mature=ctx.baseline.mature,
            )
        ]

    def learn_one(self, event: ActivityEvent, ctx: DetectionContext) -> None:
        pending = getattr(self, "pending_", None)
        if pending is None or pending[0] != event.event_id:
            return
        _, reported, _ = _Bursts.read(
            ctx, self.name, self.idle_seconds, int(self.max_users), event.user_id
        )
        _, bits, what = pending
        self.pending_ = None
        level = max(reported, self._level(self.points(bits)))
        _Bursts.write(
            ctx,
            self.name,
            self.idle_seconds,
            int(self.max_users),
            event.user_id,
            bits,
            level,
            what.replace("|", "/"),
        )


def _what(event: ActivityEvent, bits: int) -> str:
    parts = []
    if bits & (1 << NETWORK):
        parts.append(f"network {network_of(event.source_ip)}")
    if bits & (1 << DEVICE):
        parts.append(f"device {event.device_id}")
    if bits & ((1 << COUNTRY) | (1 << COUNTRY_PEERS)):
        parts.append(f"country {event.country_code}")
    if bits & ((1 << ENDPOINT_PEERS) | (1 << ENDPOINT_NEW) | (1 << ENDPOINT_PRIVILEGED)):
        parts.append(normalize_endpoint(event.api_method, event.api_path))
    return ", ".join(parts)


class DormantAccountDetector(Detector):
    name = "dormant_account"
    version = "1.1"
    description = (
        "Activity after a silence far beyond the user's usual gaps between active days; raised "
        "with a new device or first privileged endpoints in the returning burst."
    )
    title = "Dormant account active again"
    event_types = None

    def __init__(
        self,
        min_gap_days: float = 14.0,
        gap_factor: float = 2.0,
        burst_seconds: float = 8 * 3600.0,
        max_users: int = CACHED_USERS,
    ):
        self.min_gap_days = min_gap_days
        self.gap_factor = gap_factor
        self.burst_seconds = burst_seconds
        self.max_users = max_users

    def check_params(self) -> None:
        require_positive(self, "min_gap_days", "gap_factor", "burst_seconds", "max_users")

    def _state(
        self, event: ActivityEvent, ctx: DetectionContext
    ) -> tuple[int, int, int, int] | None:
        """(gap days, signal bits, level, reported level) of a returning
        burst this event belongs to, or None."""
        baseline = ctx.baseline
        gap = dormant_gap(baseline, ctx.clock.day_key, self.min_gap_days, self.gap_factor)
        if gap:
            bits, reported = 0, 0
        elif (
            baseline.last_gap_days >= self.min_gap_days
            and baseline.last_learned_day == ctx.clock.day_key
        ):
            # Later in a returning day: the burst, if it is still going.
            bits, reported, detail = _Bursts.read(
                ctx, self.name, self.burst_seconds, int(self.max_users), event.user_id
            )
            if not detail:
                return None
            gap = int(detail)
        else:
            return None
        if event.device_id and baseline.devices.entries and event.device_id not in baseline.devices:
            bits |= 1
        if event.type is _API_CALL and (event.api_method or event.api_path):
            endpoint = normalize_endpoint(event.api_method, event.api_path)
            if is_privileged(endpoint) and endpoint not in baseline.endpoints:
                bits |= 2
        level = 1 + (bits & 1) + (bits >> 1 & 1)
        return gap, bits, level, reported

    def score_one(self, event: ActivityEvent, ctx: DetectionContext) -> list[Finding]:
        # A failed try (or a push prompt) on a silent account is not the
        # account back in use: the failure detectors judge attempts.
        state = None if event.type in UNPROVEN_TYPES else self._state(event, ctx)
        self.pending_ = None if state is None else (event.event_id, state)
        if state is None or state[2] <= state[3]:
            return []
        gap, bits, level, _ = state
        baseline = ctx.baseline
        usual = baseline.active_day_gaps
        extra = [
            w
            for w, on in (
                ("a new device", bits & 1),
                ("privileged endpoints used for the first time", bits & 2),
            )
            if on
        ]
        with_what = f", with {' and '.join(extra)}" if extra else ""
        return [
            Finding(
                score=gap / max(usual.max or 1, 1) + len(extra),
                severity=(Severity.LOW, Severity.MEDIUM, Severity.HIGH)[level - 1],
                reason=(
                    f"active again after {gap} days of silence{with_what}; usual gaps between "
                    f"active days {usual.mean:.1f} days on average, at most {usual.max or 0:g} "
                    f"({baseline.days_covered} active days known)"
                ),
                observed=f"{gap} days silent" + with_what,
                expected=(
                    "gaps of at most "
                    f"{max(self.min_gap_days, self.gap_factor * (usual.max or 1)):g} days"
                ),
                features=(
                    Feature("silent_days", float(gap), 1.0),
                    Feature("usual_max_gap_days", float(usual.max or 0), 0.0),
                ),
                baseline_mature=baseline.mature,
            )
        ]

    def learn_one(self, event: ActivityEvent, ctx: DetectionContext) -> None:
        pending = getattr(self, "pending_", None)
        self.pending_ = None
        if pending is None or pending[0] != event.event_id:
            return
        gap, bits, level, reported = pending[1]
        # The returning burst lives while events keep coming within burst_seconds.
        _Bursts.write(
            ctx,
            self.name,
            self.burst_seconds,
            int(self.max_users),
            event.user_id,
            bits,
            max(level, reported),
            str(gap),
        )
