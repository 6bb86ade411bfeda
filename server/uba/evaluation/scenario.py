"""A seeded, realistic population of office workers, and the benign
changes ("confounders") that make such a population look new now and then.

Users work in offices in eight IANA time zones (five with daylight-saving
changes on different dates: the EU's last Sunday of March and October, the
US's second Sunday of March and first of November, Australia's first
Sundays of April and October). Each has a peer group with its own
endpoints, a laptop (device id and user agent), an office /24 and a home
address reached through the company VPN, a phone for a look at lunch,
working hours in local time with jitter, days off, and a session habit:
one login a day resumed after lunch, or several logins a day. Some work at
weekends, most never do; a typo now and then fails a login.

Labelled benign confounders (they should raise no MEDIUM+ finding):
on-call weeks (night pages, weekend work), business trips (another office,
feasible flights, own laptop), a company VPN change (everyone's VPN range
on one day), a laptop refresh (one team over three days), a feature
rollout (one team adopts a new endpoint within a day), the DST changes in
the window, and lunch-time phone sessions from a mobile network in the
user's own country.

Attacks are staged by uba.evaluation.attacks. Everything follows from
(users, days, seed, end): the same arguments give the same events and ids.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from zoneinfo import ZoneInfo

from uba.domain.events import ActivityEvent, ActivityType
from uba.evaluation.score import BENIGN, Label

T = ActivityType
# A six-week window ending here spans the EU's (25 October 2026) and the
# US's (1 November 2026) DST changes, a week apart. In the past, so the
# server's 5-minute limit on future events never bites and runs repeat.
DEFAULT_END = datetime(2026, 11, 16, tzinfo=UTC)
# Training the Isolation Forest after this share of the window (as an
# operator would after importing history); attacks come after it.
TRAIN_SHARE = 0.6


@dataclass(frozen=True)
class Place:
    city: str
    country_code: str
    timezone: str
    latitude: float
    longitude: float


OFFICES = (
    Place("Berlin", "DE", "Europe/Berlin", 52.52, 13.405),
    Place("New York", "US", "America/New_York", 40.71, -74.01),
    Place("Tokyo", "JP", "Asia/Tokyo", 35.68, 139.69),
    Place("London", "GB", "Europe/London", 51.51, -0.13),
    Place("San Francisco", "US", "America/Los_Angeles", 37.77, -122.42),
    Place("Bengaluru", "IN", "Asia/Kolkata", 12.97, 77.59),
    Place("Sydney", "AU", "Australia/Sydney", -33.87, 151.21),
    Place("São Paulo", "BR", "America/Sao_Paulo", -23.55, -46.63),
)
OFFICE_WEIGHTS = (5, 5, 2, 3, 4, 3, 2, 2)
# Other cities of each office's country: mobile networks, attackers nearby.
DOMESTIC = {
    "DE": (
        Place("Munich", "DE", "Europe/Berlin", 48.14, 11.58),
        Place("Hamburg", "DE", "Europe/Berlin", 53.55, 9.99),
    ),
    "US": (
        Place("Chicago", "US", "America/Chicago", 41.88, -87.63),
        Place("Dallas", "US", "America/Chicago", 32.78, -96.80),
    ),
    "JP": (Place("Osaka", "JP", "Asia/Tokyo", 34.69, 135.50),),
    "GB": (Place("Manchester", "GB", "Europe/London", 53.48, -2.24),),
    "IN": (Place("Mumbai", "IN", "Asia/Kolkata", 19.08, 72.88),),
    "AU": (Place("Melbourne", "AU", "Australia/Melbourne", -37.81, 144.96),),
    "BR": (Place("Rio de Janeiro", "BR", "America/Sao_Paulo", -22.91, -43.17),),
}
# Where attackers connect from when they are not at home with the victim.
FOREIGN = (
    Place("Lagos", "NG", "Africa/Lagos", 6.52, 3.38),
    Place("Bucharest", "RO", "Europe/Bucharest", 44.43, 26.10),
    Place("Jakarta", "ID", "Asia/Jakarta", -6.21, 106.85),
    Place("Hanoi", "VN", "Asia/Bangkok", 21.03, 105.85),
    Place("Kyiv", "UA", "Europe/Kyiv", 50.45, 30.52),
    Place("Amsterdam", "NL", "Europe/Amsterdam", 52.37, 4.90),
)

# Peer groups: share of the population and the endpoints they use.
GROUPS = {
    "engineering": (
        30,
        (
            ("GET", "/v1/builds"),
            ("GET", "/v1/builds/{n}"),
            ("POST", "/v1/deployments"),
            ("GET", "/v1/repos/{n}"),
            ("GET", "/v1/logs/search"),
            ("GET", "/v1/metrics"),
            ("GET", "/v1/orders/{n}"),
            ("PUT", "/v1/repos/{n}/settings"),
        ),
    ),
    "sales": (
        20,
        (
            ("GET", "/v1/customers"),
            ("GET", "/v1/customers/{n}"),
            ("PUT", "/v1/customers/{n}"),
            ("GET", "/v1/orders"),
            ("POST", "/v1/quotes"),
            ("GET", "/v1/reports/pipeline"),
        ),
    ),
    "support": (
        18,
        (
            ("GET", "/v1/tickets"),
            ("GET", "/v1/tickets/{n}"),
            ("POST", "/v1/tickets/{n}/replies"),
            ("GET", "/v1/customers/{n}"),
            ("GET", "/v1/orders/{n}"),
            ("GET", "/v1/kb/articles"),
        ),
    ),
    "finance": (
        12,
        (
            ("GET", "/v1/invoices"),
            ("GET", "/v1/invoices/{n}"),
            ("POST", "/v1/payments"),
            ("GET", "/v1/reports/daily"),
            ("GET", "/v1/ledger/{n}"),
            ("GET", "/v1/customers/{n}"),
        ),
    ),
    "hr": (
        10,
        (
            ("GET", "/v1/employees"),
            ("GET", "/v1/employees/{n}"),
            ("PUT", "/v1/employees/{n}"),
            ("GET", "/v1/payroll/runs"),
            ("GET", "/v1/leave/requests"),
            ("POST", "/v1/leave/requests/{n}/approve"),
        ),
    ),
    "admins": (
        6,
        (
            ("GET", "/admin/users"),
            ("GET", "/admin/users/{n}"),
            ("PUT", "/admin/users/{n}/roles"),
            ("GET", "/admin/audit"),
            ("GET", "/admin/settings"),
            ("GET", "/v1/metrics"),
        ),
    ),
}
# The endpoint a feature rollout brings to each team.
NEW_FEATURE = {
    "engineering": ("GET", "/v2/pipelines/{n}"),
    "sales": ("GET", "/v2/forecast"),
    "support": ("POST", "/v2/tickets/{n}/macros"),
    "finance": ("GET", "/v2/cashflow"),
    "hr": ("GET", "/v2/reviews/{n}"),
    "admins": ("GET", "/v2/access-reviews"),
}
ON_CALL_GROUPS = ("engineering", "support", "admins")
NAMES = (
    "alice",
    "bob",
    "carol",
    "dave",
    "erin",
    "frank",
    "grace",
    "heidi",
    "ivan",
    "judy",
    "ken",
    "lena",
    "mallory",
    "nina",
    "oscar",
    "peggy",
    "quinn",
    "rupert",
    "sybil",
    "trent",
    "uma",
    "victor",
    "wendy",
    "xavier",
    "yara",
    "zoe",
)
LAPTOPS = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/129.0 Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:131.0) Gecko/20100101 Firefox/131.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:131.0) Gecko/20100101 Firefox/131.0",
)
NEW_LAPTOP = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 15_1) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.1 Safari/605.1.15"
)
PHONES = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 Chrome/129.0 Mobile Safari/537.36",
)
# Company VPN ranges before and after the VPN change.
VPN_BEFORE, VPN_AFTER = "172.16.{site}.{host}", "172.22.{site}.{host}"


@cache
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def local_time(day: date, hours: float, tz: str) -> datetime:
    """Local wall time `hours` after midnight of `day` in `tz`, as aware UTC.
    Hours past 24 run into the next day."""
    whole = timedelta(hours=hours)
    wall = datetime.combine(day, time(), tzinfo=zone(tz)) + whole
    return wall.astimezone(UTC)


@dataclass(frozen=True)
class Context:
    """Where and on what an event happens."""

    place: Place
    source_ip: str
    device_id: str
    user_agent: str


@dataclass
class User:
    user_id: str
    index: int
    group: str
    office: Place
    site: int
    office_ip: str
    home_ip: str  # the address at home, seen only through the VPN host number
    vpn_host: int
    device_id: str
    user_agent: str
    phone_id: str
    phone_agent: str
    work_start: float  # local hour of the first login
    work_hours: float
    single_session: bool  # one login a day, resumed after lunch
    remote_weekdays: frozenset[int]
    weekend_worker: bool
    calls_per_hour: float
    bytes_scale: float  # median bytes of a call
    endpoints: tuple[tuple[str, str], ...]
    weights: tuple[float, ...]
    extra_endpoints: list[tuple[str, str]] = field(default_factory=list)

    @property
    def timezone(self) -> str:
        return self.office.timezone

    def bulk_endpoint(self) -> tuple[str, str]:
        """The user's own endpoint that returns the most (a list or report)."""
        for method, path in self.endpoints:
            if method == "GET" and "{n}" not in path:
                return method, path
        return self.endpoints[0]


@dataclass
class Session:
    user_id: str
    session_id: str
    start: datetime
    end: datetime
    context: Context
    day: date  # the local working day


@dataclass
class Scenario:
    users: int
    days: int
    seed: int
    start: datetime
    end: datetime
    train_at: datetime  # when an operator would train the model on the history so far
    people: list[User]
    events: list[ActivityEvent] = field(default_factory=list)
    labels: list[Label] = field(default_factory=list)
    sessions: list[Session] = field(default_factory=list)

    @property
    def attacks(self) -> list[Label]:
        return [lb for lb in self.labels if lb.is_attack]

    @property
    def confounders(self) -> list[Label]:
        return [lb for lb in self.labels if not lb.is_attack]

    def user(self, user_id: str) -> User:
        return next(u for u in self.people if u.user_id == user_id)


class Emitter:
    """Makes events with deterministic ids: prefix and a running number."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        self.count = 0
        self.sessions = 0

    def session_id(self) -> str:
        self.sessions += 1
        return f"{self.prefix}-s{self.sessions:07d}"

    def event(
        self,
        user_id: str,
        kind: ActivityType,
        at: datetime,
        ctx: Context,
        group: str = "",
        timezone: str = "",
        **values,
    ) -> ActivityEvent:
        self.count += 1
        return ActivityEvent(
            event_id=f"{self.prefix}-{self.count:08d}",
            user_id=user_id,
            type=kind,
            occurred_at=at,
            source_ip=ctx.source_ip,
            user_agent=ctx.user_agent,
            device_id=ctx.device_id,
            country_code=ctx.place.country_code,
            city=ctx.place.city,
            latitude=ctx.place.latitude,
            longitude=ctx.place.longitude,
            timezone=timezone or ctx.place.timezone,
            peer_group=group,
            source="scenario",
            **values,
        )


def _people(rng: random.Random, count: int) -> list[User]:
    groups = list(GROUPS)
    group_weights = [GROUPS[g][0] for g in groups]
    users = []
    for i in range(count):
        site = rng.choices(range(len(OFFICES)), OFFICE_WEIGHTS)[0]
        group = rng.choices(groups, group_weights)[0]
        endpoints = list(GROUPS[group][1])
        rng.shuffle(endpoints)
        used = endpoints[: rng.randint(4, len(endpoints))]
        weights = tuple(1 / (k + 1) ** 1.1 for k in range(len(used)))  # a few favourites
        name = NAMES[i % len(NAMES)] + (f".{i // len(NAMES)}" if i >= len(NAMES) else "")
        users.append(
            User(
                user_id=name,
                index=i,
                group=group,
                office=OFFICES[site],
                site=site,
                office_ip=f"10.{site + 1}.{groups.index(group) * 8 + i % 8}.{20 + i % 200}",
                home_ip="",
                vpn_host=10 + i % 240,
                device_id=f"LT-{hashlib.sha1(f'{i}|laptop'.encode()).hexdigest()[:8].upper()}",
                user_agent=rng.choice(LAPTOPS),
                phone_id=f"PH-{hashlib.sha1(f'{i}|phone'.encode()).hexdigest()[:8].upper()}"
                if rng.random() < 0.6
                else "",
                phone_agent=rng.choice(PHONES),
                work_start=rng.choice((7.0, 7.5, 8.0, 8.0, 8.5, 9.0, 9.0, 9.5, 10.0))
                + rng.uniform(-0.2, 0.2),
                work_hours=rng.uniform(7.5, 9.5),
                single_session=rng.random() < 0.5,
                remote_weekdays=frozenset(rng.sample(range(5), rng.choice((0, 1, 2, 2, 3)))),
                weekend_worker=rng.random() < 0.12,
                calls_per_hour=math.exp(rng.gauss(math.log(5), 0.4)),
                bytes_scale=math.exp(rng.gauss(math.log(30_000), 0.5)),
                endpoints=tuple(used),
                weights=weights,
            )
        )
    return users


def _vpn_ip(u: User, after_change: bool) -> str:
    return (VPN_AFTER if after_change else VPN_BEFORE).format(site=u.site + 1, host=u.vpn_host)


def _mobile_ip(rng: random.Random, u: User) -> str:
    # Carrier-grade NAT addresses: a new one almost every time.
    return f"100.{64 + u.site * 7 + rng.randint(0, 6)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"


@dataclass
class Plan:
    """The benign changes decided before the routine is generated."""

    vpn_change: date
    refresh_group: str
    refresh_days: dict[str, date]  # user -> day of the new laptop
    rollout_group: str
    rollout_day: date
    on_call: dict[tuple[str, date], str]  # (group, Monday) -> user
    trips: dict[str, tuple[date, date, Place]]  # user -> (first away day, last away day, office)
    silent: dict[str, date]  # user -> first silent day (dormant accounts, see attacks)


def _mondays(first: date, last: date) -> list[date]:
    monday = first - timedelta(days=first.weekday())
    out = []
    while monday <= last:
        out.append(monday)
        monday += timedelta(days=7)
    return out


def _plan(
    rng: random.Random,
    people: list[User],
    first: date,
    last: date,
    train_day: date,
    silent: dict[str, date],
) -> Plan:
    days = (last - first).days + 1

    def day_at(share: float) -> date:
        return first + timedelta(days=int(days * share))

    vpn_change = day_at(rng.uniform(0.45, 0.55))
    while vpn_change.weekday() != 0:  # changes go live on a Monday
        vpn_change += timedelta(days=1)
    groups = sorted({u.group for u in people}, key=list(GROUPS).index)
    refresh_group = rng.choice(groups)
    refresh_start = day_at(rng.uniform(0.7, 0.78))
    refresh_days = {
        u.user_id: refresh_start + timedelta(days=rng.randint(0, 2))
        for u in people
        if u.group == refresh_group
    }
    rollout_group = rng.choice([g for g in groups if g != refresh_group] or groups)
    rollout_day = day_at(rng.uniform(0.8, 0.9))
    while rollout_day.weekday() >= 4:
        rollout_day += timedelta(days=1)
    on_call = {}
    for g in ON_CALL_GROUPS:
        members = [u.user_id for u in people if u.group == g and u.user_id not in silent]
        if len(members) >= 3:
            for k, monday in enumerate(_mondays(first, last)):
                on_call[g, monday] = members[(k + rng.randint(0, 1)) % len(members)]
    trips = {}
    candidates = [u for u in people if u.user_id not in silent]
    for u in rng.sample(candidates, k=min(len(candidates), max(1, len(people) // 15))):
        begin = first + timedelta(days=rng.randint(3, max(3, days - 9)))
        while begin.weekday() > 2:  # away from Monday, Tuesday or Wednesday, back by Friday
            begin += timedelta(days=1)
        away = rng.randint(2, min(4, 5 - begin.weekday()))
        place = rng.choice([o for o in OFFICES if o != u.office])
        trips[u.user_id] = (begin, begin + timedelta(days=away - 1), place)
    return Plan(
        vpn_change, refresh_group, refresh_days, rollout_group, rollout_day, on_call, trips, silent
    )


class Routine:
    """Generates each user's days."""

    def __init__(
        self, rng: random.Random, emit: Emitter, plan: Plan, start: datetime, end: datetime
    ):
        self.rng = rng
        self.emit = emit
        self.plan = plan
        self.start = start
        self.end = end
        self.events: list[ActivityEvent] = []
        self.sessions: list[Session] = []
        self.labels: list[Label] = []

    # -- one user's contexts ---------------------------------------------------

    def laptop(self, u: User, day: date) -> tuple[str, str]:
        refreshed = self.plan.refresh_days.get(u.user_id)
        if refreshed is not None and day >= refreshed:
            return u.device_id.replace("LT-", "LT2-"), NEW_LAPTOP
        return u.device_id, u.user_agent

    def context(self, u: User, day: date, remote: bool) -> Context:
        device, agent = self.laptop(u, day)
        trip = self.plan.trips.get(u.user_id)
        if trip and trip[0] <= day <= trip[1]:
            place = trip[2]
            # At another office: its network, own laptop.
            ip = f"10.{OFFICES.index(place) + 1}.250.{u.vpn_host}"
            return Context(place, ip, device, agent)
        if remote:
            return Context(u.office, _vpn_ip(u, day >= self.plan.vpn_change), device, agent)
        return Context(u.office, u.office_ip, device, agent)

    # -- building blocks -------------------------------------------------------

    def api_call(
        self,
        u: User,
        at: datetime,
        ctx: Context,
        session_id: str,
        endpoint=None,
        bytes_transferred: int | None = None,
        status_code: int | None = None,
    ) -> ActivityEvent:
        rng = self.rng
        if endpoint is None:
            pool = list(u.endpoints) + u.extra_endpoints
            weights = list(u.weights) + [sum(u.weights) / 2] * len(u.extra_endpoints)
            endpoint = rng.choices(pool, weights)[0]
        method, path = endpoint
        path = path.replace("{n}", str(rng.randint(1, 99_999)))
        if status_code is None:
            roll = rng.random()
            status_code = (
                500
                if roll < 0.004
                else 404
                if roll < 0.015
                else 403
                if roll < 0.018
                else 201
                if method == "POST"
                else 200
            )
        if bytes_transferred is None:
            factor = 4.0 if (method == "GET" and "{n}" not in endpoint[1]) else 1.0
            bytes_transferred = int(u.bytes_scale * factor * math.exp(rng.gauss(0, 0.6)))
        return self.emit.event(
            u.user_id,
            T.API_CALL,
            at,
            ctx,
            u.group,
            session_id=session_id,
            api_method=method,
            api_path=path,
            status_code=status_code,
            bytes_transferred=bytes_transferred,
        )

    def calls(
        self,
        u: User,
        lo: datetime,
        hi: datetime,
        ctx: Context,
        session_id: str,
        per_hour: float | None = None,
    ) -> list[ActivityEvent]:
        out = []
        rate = (per_hour or u.calls_per_hour) / 3600
        t = lo + timedelta(seconds=self.rng.expovariate(rate))
        while t < hi:
            out.append(self.api_call(u, t, ctx, session_id))
            t += timedelta(seconds=max(2.0, self.rng.expovariate(rate)))
        return out

    def login(
        self, u: User, at: datetime, ctx: Context, session_id: str, mfa: bool
    ) -> list[ActivityEvent]:
        rng, out = self.rng, []
        if rng.random() < 0.04:  # a typo, sometimes two
            for k in range(rng.choice((1, 1, 1, 2))):
                out.append(
                    self.emit.event(
                        u.user_id,
                        T.LOGIN_FAILURE,
                        at - timedelta(seconds=25 * (k + 1)),
                        ctx,
                        u.group,
                    )
                )
        if mfa:
            out.append(
                self.emit.event(
                    u.user_id, T.MFA_CHALLENGE, at - timedelta(seconds=12), ctx, u.group
                )
            )
            out.append(
                self.emit.event(
                    u.user_id,
                    T.MFA_APPROVED,
                    at - timedelta(seconds=rng.randint(2, 9)),
                    ctx,
                    u.group,
                )
            )
        out.append(
            self.emit.event(u.user_id, T.LOGIN_SUCCESS, at, ctx, u.group, session_id=session_id)
        )
        return out

    def session(
        self,
        u: User,
        day: date,
        lo: datetime,
        hi: datetime,
        ctx: Context,
        mfa: bool,
        breaks: tuple[tuple[datetime, datetime], ...] = (),
        per_hour: float | None = None,
    ) -> list[ActivityEvent]:
        """A login, API calls (none during breaks), and a logout."""
        sid = self.emit.session_id()
        out = self.login(u, lo, ctx, sid, mfa)
        t = lo
        for b_lo, b_hi in breaks:
            if lo < b_lo < hi:
                out += self.calls(u, t, b_lo, ctx, sid, per_hour)
                t = min(b_hi, hi)
                # Back from the break: the session resumes (same session id).
                out.append(
                    self.emit.event(u.user_id, T.SESSION_START, t, ctx, u.group, session_id=sid)
                )
        out += self.calls(u, t, hi, ctx, sid, per_hour)
        out.append(
            self.emit.event(
                u.user_id, T.LOGOUT, hi, ctx, u.group, session_id=sid, session_duration=hi - lo
            )
        )
        self.sessions.append(Session(u.user_id, sid, lo, hi, ctx, day))
        return out

    # -- days ----------------------------------------------------------------

    def workday(self, u: User, day: date, ctx: Context) -> list[ActivityEvent]:
        rng, tz = self.rng, ctx.place.timezone
        begin = u.work_start + rng.gauss(0, 0.25)
        finish = begin + u.work_hours + rng.gauss(0, 0.3)
        lunch = 12.0 + rng.uniform(-0.25, 0.75)
        lunch_end = lunch + rng.uniform(0.5, 1.0)
        at = lambda h: local_time(day, h, tz)  # noqa: E731
        out: list[ActivityEvent] = []
        if u.single_session:
            # One login; after lunch the same session resumes.
            out += self.session(
                u, day, at(begin), at(finish), ctx, True, ((at(lunch), at(lunch_end)),)
            )
        else:
            count = rng.randint(2, 4)
            slot = (finish - begin) / count
            for k in range(count):
                lo = begin + k * slot + rng.uniform(0, slot * 0.2)
                hi = lo + slot * rng.uniform(0.55, 0.8)
                if lo < lunch < hi:
                    hi = lunch
                if hi - lo < 0.2:
                    continue
                out += self.session(u, day, at(lo), at(hi), ctx, k == 0)
        if u.phone_id and rng.random() < 0.025:
            out += self.phone(u, day, at(lunch + 0.2))
        return out

    def phone(self, u: User, day: date, at: datetime) -> list[ActivityEvent]:
        place = self.rng.choice((u.office,) + DOMESTIC.get(u.office.country_code, ()))
        if place.timezone != u.office.timezone:
            place = u.office
        ctx = Context(place, _mobile_ip(self.rng, u), u.phone_id, u.phone_agent)
        minutes = self.rng.uniform(3, 12)
        out = self.session(u, day, at, at + timedelta(minutes=minutes), ctx, True, per_hour=30)
        self.labels.append(
            Label(
                "mobile_network",
                at,
                at + timedelta(minutes=minutes),
                BENIGN,
                (u.user_id,),
                event_ids=tuple(e.event_id for e in out),
                description=f"{u.user_id} on the phone from mobile network {ctx.source_ip}",
            )
        )
        return out

    def weekend(self, u: User, day: date, ctx: Context) -> list[ActivityEvent]:
        if self.rng.random() > 0.45:
            return []
        lo = self.rng.uniform(10, 16)
        hi = lo + self.rng.uniform(0.5, 2.5)
        return self.session(
            u, day, local_time(day, lo, u.timezone), local_time(day, hi, u.timezone), ctx, True
        )

    def on_call_week(self, u: User, monday: date) -> list[ActivityEvent]:
        """Pages at night and a look at the weekend for the week's on-call person."""
        rng, out = self.rng, []
        for offset in sorted(rng.sample(range(7), rng.randint(1, 3))):
            day = monday + timedelta(days=offset)
            ctx = self.context(u, day, remote=True)
            lo = rng.uniform(0.5, 4.5) if rng.random() < 0.6 else rng.uniform(19.5, 23.0)
            hi = lo + rng.uniform(0.3, 1.5)
            out += self.session(
                u,
                day,
                local_time(day, lo, u.timezone),
                local_time(day, hi, u.timezone),
                ctx,
                True,
                per_hour=u.calls_per_hour * 2,
            )
        for day in (monday + timedelta(days=5), monday + timedelta(days=6)):
            if rng.random() < 0.5:
                ctx = self.context(u, day, remote=True)
                lo = rng.uniform(10, 18)
                out += self.session(
                    u,
                    day,
                    local_time(day, lo, u.timezone),
                    local_time(day, lo + rng.uniform(0.3, 1.2), u.timezone),
                    ctx,
                    True,
                )
        return out

    def user_days(self, u: User, first: date, last: date) -> None:
        rng, plan = self.rng, self.plan
        off = {
            first + timedelta(days=k) for k in range((last - first).days + 1) if rng.random() < 0.05
        }
        trip = plan.trips.get(u.user_id)
        silent_from = plan.silent.get(u.user_id)
        day = first
        while day <= last:
            if silent_from is not None and day >= silent_from:
                break
            if u.group == plan.rollout_group and day == plan.rollout_day:
                feature = NEW_FEATURE[u.group]
                if feature not in u.extra_endpoints:
                    u.extra_endpoints.append(feature)
            travelling = trip and day in (trip[0] - timedelta(days=1), trip[1] + timedelta(days=1))
            if travelling or (day in off and not (trip and trip[0] <= day <= trip[1])):
                day += timedelta(days=1)
                continue
            ctx = self.context(u, day, remote=day.weekday() in u.remote_weekdays)
            if day.weekday() < 5:
                events = self.workday(u, day, ctx)
            elif u.weekend_worker:
                events = self.weekend(u, day, ctx)
            else:
                events = []
            self.events += events
            day += timedelta(days=1)
        for (group, monday), who in plan.on_call.items():
            if who == u.user_id and first <= monday <= last:
                events = [
                    e
                    for e in self.on_call_week(u, monday)
                    if self.start <= e.occurred_at <= self.end
                ]
                if events:
                    self.events += events
                    self.labels.append(
                        Label(
                            "on_call",
                            min(e.occurred_at for e in events),
                            max(e.occurred_at for e in events),
                            BENIGN,
                            (u.user_id,),
                            event_ids=tuple(e.event_id for e in events),
                            description=(
                                f"{u.user_id} is on call for {group} in the week of {monday}"
                            ),
                        )
                    )


def _dst_labels(people: list[User], start: datetime, end: datetime) -> list[Label]:
    labels = []
    for tz in sorted({u.timezone for u in people}):
        t = start
        while t < end:
            nxt = t + timedelta(hours=1)
            if t.astimezone(zone(tz)).utcoffset() != nxt.astimezone(zone(tz)).utcoffset():
                users = tuple(u.user_id for u in people if u.timezone == tz)
                labels.append(
                    Label(
                        "dst_change",
                        nxt,
                        nxt + timedelta(days=2),
                        BENIGN,
                        users,
                        description=f"daylight saving time changes in {tz} on {nxt:%Y-%m-%d}",
                    )
                )
            t = nxt
    return labels


def generate(
    users: int = 200,
    days: int = 42,
    seed: int = 7,
    end: datetime | None = None,
    attacks: bool = True,
    blatant_window: tuple[datetime, datetime] | None = None,
    realistic: bool = True,
    instances: int = 1,
    attack_shapes: str = "usual",
) -> Scenario:
    """The scenario: `days` of routine for `users` people ending at `end`
    (default DEFAULT_END), with its confounders and, with `attacks`, the
    labelled attacks of uba.evaluation.attacks after the training point.
    `blatant_window` puts the blatant attacks there instead (the demo puts
    them in its last hours); `realistic=False` stages only the blatant ones;
    `instances` is how many of each realistic attack (on other victims);
    `attack_shapes` how they are staged (uba.evaluation.attacks.SHAPES:
    "usual", the scenario's, or "other")."""
    from uba.evaluation import attacks as staged

    if users < 1 or days < 1:
        raise ValueError("users and days must be at least 1")
    end = (end or DEFAULT_END).astimezone(UTC).replace(microsecond=0)
    start = end - timedelta(days=days)
    rng = random.Random(seed)
    people = _people(rng, users)
    prefix = (
        "ev-" + hashlib.sha256(f"{users}|{days}|{seed}|{end.isoformat()}".encode()).hexdigest()[:8]
    )
    emit = Emitter(prefix)
    train_at = start + timedelta(days=round(days * TRAIN_SHARE))
    scenario = Scenario(users, days, seed, start, end, train_at, people)

    first, last = (start - timedelta(days=1)).date(), end.date()
    if attack_shapes not in staged.SHAPES:
        raise ValueError(f"attack_shapes must be one of {', '.join(staged.SHAPES)}")
    stage = (
        staged.Stager(
            scenario, random.Random(seed + 1), emit, instances, staged.SHAPES[attack_shapes]
        )
        if attacks
        else None
    )
    silent = stage.plan_dormant() if stage and realistic else {}
    plan = _plan(rng, people, first, last, train_at.date(), silent)
    routine = Routine(rng, emit, plan, start, end)
    for u in people:
        routine.user_days(u, first, last)
    scenario.events = [e for e in routine.events if start <= e.occurred_at <= end]
    scenario.sessions = [s for s in routine.sessions if start <= s.start and s.end <= end]
    scenario.labels = (
        routine.labels + _plan_labels(plan, people, start, end) + _dst_labels(people, start, end)
    )
    if stage is not None:
        stage.run(plan, realistic=realistic, blatant_window=blatant_window)
    scenario.events = [e for e in scenario.events if start <= e.occurred_at <= end]
    kept = {e.event_id for e in scenario.events}
    scenario.labels = [
        lb
        for lb in scenario.labels
        if lb.start <= end
        and lb.end >= start
        and (not lb.event_ids or kept.intersection(lb.event_ids))
    ]
    scenario.events.sort(key=lambda e: (e.occurred_at, e.event_id))
    return scenario


def _plan_labels(plan: Plan, people: list[User], start: datetime, end: datetime) -> list[Label]:
    def midnight(d: date) -> datetime:
        return datetime.combine(d, time(), tzinfo=UTC)

    everyone = tuple(u.user_id for u in people)
    labels = [
        Label(
            "vpn_change",
            midnight(plan.vpn_change) - timedelta(hours=14),
            midnight(plan.vpn_change) + timedelta(days=3),
            BENIGN,
            everyone,
            description=f"the company VPN moves to a new address range on {plan.vpn_change}",
        )
    ]
    if plan.refresh_days:
        team = tuple(sorted(plan.refresh_days))
        lo, hi = min(plan.refresh_days.values()), max(plan.refresh_days.values())
        labels.append(
            Label(
                "laptop_refresh",
                midnight(lo) - timedelta(hours=14),
                midnight(hi) + timedelta(days=2),
                BENIGN,
                team,
                description=f"{plan.refresh_group} get new laptops, {lo} to {hi}",
            )
        )
    team = tuple(u.user_id for u in people if u.group == plan.rollout_group)
    if team:
        labels.append(
            Label(
                "feature_rollout",
                midnight(plan.rollout_day) - timedelta(hours=14),
                midnight(plan.rollout_day) + timedelta(days=2),
                BENIGN,
                team,
                description=f"{plan.rollout_group} adopt "
                f"{' '.join(NEW_FEATURE[plan.rollout_group])} on {plan.rollout_day}",
            )
        )
    for who, (lo, hi, place) in plan.trips.items():
        labels.append(
            Label(
                "business_trip",
                midnight(lo) - timedelta(hours=14),
                midnight(hi) + timedelta(days=1, hours=14),
                BENIGN,
                (who,),
                description=f"{who} works at the {place.city} office, {lo} to {hi}",
            )
        )
    return labels


def sessions_by_user(scenario: Scenario) -> dict[str, list[Session]]:
    out: dict[str, list[Session]] = defaultdict(list)
    for s in scenario.sessions:
        out[s.user_id].append(s)
    return out
