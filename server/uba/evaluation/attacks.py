"""Labelled attacks staged in a scenario (see uba.evaluation.scenario).

Realistic classes, each aimed at what compromised accounts look like when
the attacker is careful:
- account_takeover: own country, a new network and device, normal hours,
  endpoints the user never used;
- takeover_campaign: one attacker (one network, one browser, one
  playbook of endpoints) takes over accounts of one team, one after the
  other within a day or two; each instance is one more victim, and each
  must be caught as surely as the first;
- session_hijack: a live session continued from another country, device
  and user agent;
- dormant_account_reuse: an account silent for about three weeks logs in
  from a new device and calls admin endpoints;
- privilege_misuse: a user calls /admin/* endpoints outside their peer
  group's, at normal hours, from the usual device;
- weekend_night_login: a user who never works weekends, at night;
- low_and_slow_exfiltration: about three times the user's daily volume,
  spread evenly over working hours, five days running;
- credential_stuffing: 150 addresses, 1-2 failures each, against 80
  accounts over three hours, a few successes;
- password_spraying_slow: one password against 60 accounts from three
  addresses over two hours;
- mfa_fatigue: push bombing, denied and ignored prompts, then an approval.

`AttackShapes` says how: the scenario's shapes above, or (`OTHER_SHAPES`,
`uba evaluate --attack-shapes other`) other shapes of the same classes,
so detection is not fitted to one way of staging them.

Blatant classes (the attacks `uba demo` has always staged, each aimed at
one detector): off_hours_login, brute_force, password_spraying,
new_country_and_device, impossible_travel, api_rate_spike,
data_exfiltration, error_rate_spike.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from uba.domain.events import ActivityEvent, ActivityType
from uba.evaluation.scenario import (
    DOMESTIC,
    FOREIGN,
    GROUPS,
    LAPTOPS,
    UTC,
    Context,
    Emitter,
    Place,
    Plan,
    Scenario,
    Session,
    User,
    local_time,
)
from uba.evaluation.score import ATTACK, BENIGN, Label

T = ActivityType


@dataclass(frozen=True, slots=True)
class AttackShapes:
    """How the realistic attacks are staged (the defaults: the scenario's)."""

    takeover_calls: int = 25
    # Half the takeover's calls to endpoints the user's own team uses (and
    # the user never did), not only other teams'.
    takeover_team_endpoints: bool = False
    hijack_abroad: bool = True  # else from a home network in the user's country
    dormant_days: int = 21  # silence before the dormant account's reuse
    dormant_calls: int = 15
    misuse_groups: tuple[str, ...] = ("sales",)  # whose user calls /admin/*
    misuse_calls: int = 10
    # The weekend night login's local time: Saturday 00:00 plus this many
    # hours plus a uniform offset within the range (the night to Sunday).
    weekend_night_hour: float = 24.0
    weekend_night_offset: tuple[float, float] = (1.5, 3.5)
    exfiltration_extra: float = 2.0  # times the daily volume, on top of the routine
    stuffing_sources: int = 150
    stuffing_accounts: int = 80
    stuffing_real_accounts: int = 64  # of stuffing_accounts; the rest: former staff
    stuffing_successes: int = 3
    spray_accounts: int = 60
    spray_sources: int = 3
    spray_seconds_apart: int = 120
    mfa_prompts: int = 17
    mfa_local_hour: float = 20.0
    mfa_abroad: bool = True  # else from the user's own office city

    @property
    def spray_hours(self) -> float:
        return self.spray_accounts * self.spray_seconds_apart / 3600


OTHER_SHAPES = AttackShapes(
    takeover_calls=8,
    takeover_team_endpoints=True,
    hijack_abroad=False,
    dormant_days=14,
    dormant_calls=5,
    misuse_groups=("finance", "support"),
    misuse_calls=4,
    weekend_night_hour=23.0,
    weekend_night_offset=(0.0, 1.5),
    exfiltration_extra=1.5,
    stuffing_sources=60,
    stuffing_accounts=40,
    stuffing_real_accounts=32,
    stuffing_successes=1,
    spray_accounts=30,
    spray_sources=2,
    spray_seconds_apart=360,
    mfa_prompts=8,
    mfa_local_hour=14.0,
    mfa_abroad=False,
)
SHAPES = {"usual": AttackShapes(), "other": OTHER_SHAPES}

REALISTIC = (
    "account_takeover",
    "takeover_campaign",
    "session_hijack",
    "dormant_account_reuse",
    "privilege_misuse",
    "weekend_night_login",
    "low_and_slow_exfiltration",
    "credential_stuffing",
    "password_spraying_slow",
    "mfa_fatigue",
)
# The blatant kinds and the detectors each is staged to wake.
BLATANT = {
    "off_hours_login": ("login_time",),
    "brute_force": ("failed_login_burst",),
    "password_spraying": ("password_spraying",),
    "new_country_and_device": ("new_country", "new_device", "new_ip"),
    "impossible_travel": ("impossible_travel",),
    "api_rate_spike": ("api_rate",),
    "data_exfiltration": ("data_volume",),
    "error_rate_spike": ("api_error_rate",),
}
ADMIN = (
    ("GET", "/admin/users"),
    ("GET", "/admin/users/{n}"),
    ("PUT", "/admin/users/{n}/roles"),
    ("GET", "/admin/audit"),
    ("POST", "/admin/api-keys"),
    ("GET", "/admin/settings"),
)
# Residential address prefixes per country: a new network at home.
RESIDENTIAL = {
    "DE": "84.154",
    "US": "73.162",
    "JP": "126.33",
    "GB": "86.142",
    "IN": "49.36",
    "AU": "120.148",
    "BR": "177.92",
}
TOOLS = ("python-requests/2.31.0", "curl/8.5.0", "Go-http-client/1.1")
FORMER_STAFF = (
    "j.smith",
    "m.garcia",
    "a.khan",
    "l.chen",
    "s.novak",
    "r.patel",
    "t.nguyen",
    "k.muller",
    "d.rossi",
    "e.kowalski",
    "p.silva",
    "h.tanaka",
    "admin",
    "test",
    "backup",
    "svc-build",
)


def _ip(prefix: str, rng: random.Random) -> str:
    return f"{prefix}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"


class Stager:
    def __init__(
        self,
        scenario: Scenario,
        rng: random.Random,
        emit: Emitter,
        instances: int = 1,
        shapes: AttackShapes = AttackShapes(),
    ):
        self.sc = scenario
        self.shapes = shapes
        self.rng = rng
        self.emit = emit
        self.instances = instances  # of each realistic class
        self.used: set[str] = set()
        self.dormant: list[tuple[str, date]] = []  # (user, day of the attack), in staging order
        self.dormant_users: set[str] = set()
        self.lo = scenario.train_at + timedelta(days=1)
        self.hi = scenario.end - timedelta(hours=6)
        self.campaign: _Campaign | None = None

    # -- planning ------------------------------------------------------------

    def plan_dormant(self) -> dict[str, date]:
        """Picks the dormant account before the routine is generated: it
        goes silent `dormant_days` (about three weeks; at most half the
        window) before the attack."""
        sc = self.sc
        silent = {}
        for _ in range(self.instances):
            candidates = [u for u in sc.people if u.group != "admins" and u.user_id not in silent]
            if len(candidates) < 2 or self.hi <= self.lo:
                break
            u = self.rng.choice(candidates)
            attack_day = (self.lo + (self.hi - self.lo) * self.rng.uniform(0.2, 0.8)).date()
            # The silence, leaving at least a week of history.
            silence = timedelta(
                days=min(self.shapes.dormant_days, max(5, (attack_day - sc.start.date()).days - 7))
            )
            self.dormant.append((u.user_id, attack_day))
            self.used.add(u.user_id)
            silent[u.user_id] = attack_day - silence
        self.dormant_users = set(silent)
        return silent

    def free(self, user_id: str, lo: datetime, hi: datetime) -> bool:
        """Not attacked already, and nothing benign of the user's nearby."""
        if user_id in self.used:
            return False
        for lb in self.sc.labels:
            # Changes to everyone (the VPN, the clocks) cannot be avoided.
            if (
                lb.category == BENIGN
                and lb.kind not in ("dst_change", "vpn_change")
                and user_id in lb.users
            ):
                if lb.start <= hi + timedelta(days=1) and lb.end >= lo - timedelta(days=1):
                    return False
        return True

    def pick_session(
        self, test=lambda u, s: True, window: tuple[datetime, datetime] | None = None
    ) -> Session | None:
        lo, hi = window or (self.lo, self.hi)
        lo, hi = max(lo, self.lo), min(hi, self.hi)
        sessions = [s for s in self.sc.sessions if lo <= s.start and s.end <= hi]
        self.rng.shuffle(sessions)
        for s in sessions:
            u = self.sc.user(s.user_id)
            if s.context.device_id.startswith("PH-") or s.end - s.start < timedelta(hours=1):
                continue
            if self.free(u.user_id, s.start, s.end) and test(u, s):
                return s
        return None

    def pick_user(self, test=lambda u: True) -> User | None:
        people = list(self.sc.people)
        self.rng.shuffle(people)
        return next((u for u in people if u.user_id not in self.used and test(u)), None)

    def label(
        self,
        kind: str,
        events: list[ActivityEvent],
        description: str,
        users=(),
        sources=(),
        start: datetime | None = None,
        victims=None,
    ) -> None:
        if not events:
            return
        events.sort(key=lambda e: e.occurred_at)
        self.sc.events += events
        users = tuple(dict.fromkeys(users or (e.user_id for e in events)))
        # A population attack's accounts may still be picked for another attack.
        self.used.update(users if victims is None else victims)
        self.sc.labels.append(
            Label(
                kind,
                start or events[0].occurred_at,
                events[-1].occurred_at,
                ATTACK,
                users,
                tuple(dict.fromkeys(sources)),
                tuple(e.event_id for e in events),
                description,
                BLATANT.get(kind, ()),
            )
        )

    def ev(
        self, u: User | str, kind: ActivityType, at: datetime, ctx: Context, **values
    ) -> ActivityEvent:
        if isinstance(u, User):
            return self.emit.event(u.user_id, kind, at, ctx, u.group, u.timezone, **values)
        return self.emit.event(u, kind, at, ctx, **values)

    def call(
        self,
        u: User,
        at: datetime,
        ctx: Context,
        sid: str,
        endpoint: tuple[str, str],
        status: int = 200,
        size: int | None = None,
    ) -> ActivityEvent:
        method, path = endpoint
        path = path.replace("{n}", str(self.rng.randint(1, 99_999)))
        size = size if size is not None else int(u.bytes_scale * math.exp(self.rng.gauss(0, 0.5)))
        return self.ev(
            u,
            T.API_CALL,
            at,
            ctx,
            session_id=sid,
            api_method=method,
            api_path=path,
            status_code=status,
            bytes_transferred=size,
        )

    def foreign(self, u: User) -> Place:
        return self.rng.choice([p for p in FOREIGN if p.country_code != u.office.country_code])

    def slots(self, count: int) -> list[datetime]:
        """`count` times spread over the attack period, shuffled."""
        span = (self.hi - self.lo).total_seconds()
        times = [
            self.lo + timedelta(seconds=span * (k + self.rng.uniform(0.1, 0.9)) / count)
            for k in range(count)
        ]
        self.rng.shuffle(times)
        return times

    # -- running -------------------------------------------------------------

    def run(
        self,
        plan: Plan,
        realistic: bool = True,
        blatant_window: tuple[datetime, datetime] | None = None,
    ) -> None:
        if self.hi <= self.lo and blatant_window is None:
            return
        self.daily_bytes = defaultdict(list)
        by_day: dict[tuple[str, date], int] = defaultdict(int)
        for e in self.sc.events:
            if e.type is T.API_CALL and e.occurred_at < self.sc.train_at:
                by_day[e.user_id, e.occurred_at.date()] += e.bytes_transferred
        for (user, _), total in by_day.items():
            self.daily_bytes[user].append(total)
        if realistic and self.hi > self.lo:
            slots = iter(self.slots(len(REALISTIC) * self.instances))
            for _ in range(self.instances):
                for kind in REALISTIC:
                    getattr(self, kind)(next(slots))
        window = blatant_window or (self.lo, self.hi)
        span = (window[1] - window[0]).total_seconds()
        for k, kind in enumerate(BLATANT):
            at = window[0] + timedelta(
                seconds=span * (k + 0.3) / (len(BLATANT) + 1) + self.rng.uniform(0, 300)
            )
            getattr(self, kind)(at, window)

    # -- realistic -------------------------------------------------------------

    def account_takeover(self, near: datetime) -> None:
        s = (
            self.pick_session(window=(near - timedelta(days=2), near + timedelta(days=2)))
            or self.pick_session()
        )
        if s is None:
            return
        u = self.sc.user(s.user_id)
        others = [
            ep
            for g, (_, eps) in GROUPS.items()
            if g not in (u.group, "admins")
            for ep in eps
            if ep not in u.endpoints
        ]
        place = self.rng.choice((u.office,) + DOMESTIC.get(u.office.country_code, ()))
        if place.timezone != u.office.timezone:
            place = u.office
        ctx = Context(
            place,
            _ip(RESIDENTIAL.get(u.office.country_code, "81.2"), self.rng),
            "LT-" + format(self.rng.getrandbits(32), "08X"),
            self.rng.choice([a for a in LAPTOPS if a != u.user_agent]),
        )
        at = s.start + (s.end - s.start) * 0.5
        sid = self.emit.session_id()
        events = [self.ev(u, T.LOGIN_SUCCESS, at, ctx, session_id=sid)]
        t = at
        team = [ep for ep in GROUPS[u.group][1] if ep not in u.endpoints] or others
        for k in range(self.shapes.takeover_calls):
            t += timedelta(seconds=self.rng.uniform(40, 140))
            pool = team if self.shapes.takeover_team_endpoints and k % 2 else others
            events.append(self.call(u, t, ctx, sid, self.rng.choice(pool)))
        events.append(
            self.ev(
                u,
                T.LOGOUT,
                t + timedelta(seconds=30),
                ctx,
                session_id=sid,
                session_duration=t + timedelta(seconds=30) - at,
            )
        )
        self.label(
            "account_takeover",
            events,
            f"{u.user_id}'s password used from {ctx.source_ip} "
            f"({place.city}) on a new device, calling endpoints the user never used",
        )

    def takeover_campaign(self, near: datetime) -> None:
        """One more victim of the campaign (the first call starts it)."""
        c = self.campaign
        if c is None:
            s = self.pick_session(
                lambda u, s: u.group != "admins",
                window=(near - timedelta(days=2), near + timedelta(days=2)),
            ) or self.pick_session(lambda u, s: u.group != "admins")
            if s is None:
                return
        else:
            window = (c.start, c.start + timedelta(days=2))
            s = self.pick_session(
                lambda u, s: u.group == c.group and u.office.country_code == c.place.country_code,
                window=window,
            ) or self.pick_session(lambda u, s: u.group == c.group, window=window)
            if s is None:
                return
        u = self.sc.user(s.user_id)
        if c is None:
            playbook = [
                ep for g, (_, eps) in GROUPS.items() if g not in (u.group, "admins") for ep in eps
            ]
            c = self.campaign = _Campaign(
                group=u.group,
                place=u.office,
                network=f"185.{self.rng.randint(100, 250)}.{self.rng.randint(0, 255)}",
                agent=self.rng.choice(LAPTOPS),
                playbook=self.rng.sample(playbook, min(6, len(playbook))),
                start=s.start,
            )
        endpoints = [ep for ep in c.playbook if ep not in u.endpoints] or c.playbook
        ctx = Context(
            c.place,
            f"{c.network}.{self.rng.randint(1, 254)}",
            "LT-" + format(self.rng.getrandbits(32), "08X"),
            c.agent,
        )
        at = s.start + (s.end - s.start) * 0.5
        sid = self.emit.session_id()
        events = [self.ev(u, T.LOGIN_SUCCESS, at, ctx, session_id=sid)]
        t = at
        for _ in range(self.rng.randint(15, 25)):
            t += timedelta(seconds=self.rng.uniform(40, 140))
            events.append(self.call(u, t, ctx, sid, self.rng.choice(endpoints)))
        c.victims += 1
        self.label(
            "takeover_campaign",
            events,
            f"{u.user_id} is victim {c.victims} of one attacker in {c.group}: "
            f"{c.network}.0/24 ({c.place.city}), one browser, the same endpoints",
        )

    def session_hijack(self, near: datetime) -> None:
        s = (
            self.pick_session(window=(near - timedelta(days=2), near + timedelta(days=2)))
            or self.pick_session()
        )
        if s is None:
            return
        u = self.sc.user(s.user_id)
        abroad = self.shapes.hijack_abroad
        place = self.foreign(u) if abroad else u.office
        device = "DESKTOP-" + hashlib.sha1(s.session_id.encode()).hexdigest()[:7].upper()
        ctx = Context(
            place,
            f"185.220.101.{self.rng.randint(1, 254)}"
            if abroad
            else _ip(RESIDENTIAL.get(u.office.country_code, "81.2"), self.rng),
            device,
            self.rng.choice([a for a in LAPTOPS if a != u.user_agent]),
        )
        t = s.start + (s.end - s.start) * 0.4
        first = t
        events = []
        for _ in range(20):
            t += timedelta(seconds=self.rng.uniform(30, 120))
            events.append(self.call(u, t, ctx, s.session_id, self.rng.choice(u.endpoints)))
        self.label(
            "session_hijack",
            events,
            f"{u.user_id}'s session {s.session_id} continued from {place.city} on another device",
            start=first,
        )

    def dormant_account_reuse(self, near: datetime) -> None:
        if not self.dormant:
            return
        user_id, day = self.dormant.pop(0)
        u = self.sc.user(user_id)
        at = local_time(day, u.work_start + 1.5 + self.rng.uniform(0, 3), u.timezone)
        ctx = Context(
            u.office,
            _ip(RESIDENTIAL.get(u.office.country_code, "81.2"), self.rng),
            "LT-" + format(self.rng.getrandbits(32), "08X"),
            self.rng.choice(LAPTOPS),
        )
        sid = self.emit.session_id()
        events = [self.ev(u, T.LOGIN_SUCCESS, at, ctx, session_id=sid)]
        t = at
        for _ in range(self.shapes.dormant_calls):
            t += timedelta(seconds=self.rng.uniform(20, 90))
            events.append(self.call(u, t, ctx, sid, self.rng.choice(ADMIN)))
        self.used.discard(u.user_id)
        self.label(
            "dormant_account_reuse",
            events,
            f"{u.user_id}, silent for weeks, logs in from a new device and calls admin endpoints",
        )

    def privilege_misuse(self, near: datetime) -> None:
        groups = {u.group for u in self.sc.people}
        group = next((g for g in self.shapes.misuse_groups if g in groups), None)
        test = (lambda u, s: u.group == group) if group else (lambda u, s: u.group != "admins")
        s = self.pick_session(
            test, (near - timedelta(days=3), near + timedelta(days=3))
        ) or self.pick_session(test)
        if s is None:
            return
        u = self.sc.user(s.user_id)
        t = s.start + (s.end - s.start) * 0.3
        events = []
        for _ in range(self.shapes.misuse_calls):
            t += timedelta(seconds=self.rng.uniform(60, 180))
            events.append(self.call(u, t, s.context, s.session_id, self.rng.choice(ADMIN)))
        self.label(
            "privilege_misuse",
            events,
            f"{u.user_id} ({u.group}) calls admin endpoints from the usual device in working hours",
        )

    def weekend_night_login(self, near: datetime) -> None:
        day = near.date()
        while day.weekday() != 5:
            day += timedelta(days=1)
        if datetime.combine(day, datetime.min.time(), UTC) > self.hi - timedelta(days=1):
            day -= timedelta(days=7)
        on_call = {lb.users[0] for lb in self.sc.labels if lb.kind == "on_call"}
        hour = self.shapes.weekend_night_hour + self.rng.uniform(*self.shapes.weekend_night_offset)
        u = self.pick_user(
            lambda u: (
                not u.weekend_worker
                and u.user_id not in on_call
                and self.free(
                    u.user_id,
                    local_time(day, hour, u.timezone),
                    local_time(day, hour + 1, u.timezone),
                )
            )
        )
        if u is None:
            return
        at = local_time(day, hour, u.timezone)
        device = (
            u.device_id.replace("LT-", "LT2-")
            if u.user_id in _refreshed(self.sc, at)
            else u.device_id
        )
        ctx = Context(
            u.office,
            f"172.{16 if at < _vpn_change(self.sc) else 22}.{u.site + 1}.{u.vpn_host}",
            device,
            u.user_agent,
        )
        sid = self.emit.session_id()
        events = [self.ev(u, T.LOGIN_SUCCESS, at, ctx, session_id=sid)]
        t = at
        for _ in range(12):
            t += timedelta(seconds=self.rng.uniform(30, 150))
            events.append(self.call(u, t, ctx, sid, self.rng.choice(u.endpoints)))
        self.label(
            "weekend_night_login",
            events,
            f"{u.user_id}, who never works weekends, logs in at "
            f"{at.astimezone(_tz(u)):%a %H:%M} local",
        )

    def low_and_slow_exfiltration(self, near: datetime) -> None:
        by_user: dict[str, dict[date, list[Session]]] = defaultdict(lambda: defaultdict(list))
        for s in self.sc.sessions:
            if (
                self.lo <= s.start
                and s.end <= self.hi
                and not s.context.device_id.startswith("PH-")
            ):
                by_user[s.user_id][s.day].append(s)
        users = sorted(by_user)
        self.rng.shuffle(users)
        strict = True
        for user_id in users + [None] + users:
            if user_id is None:  # nobody free of confounders: anyone not attacked yet
                strict = False
                continue
            days = sorted(by_user[user_id])
            for k in range(len(days) - 4):
                run = days[k : k + 5]
                if (run[-1] - run[0]).days > 7 or len(self.daily_bytes.get(user_id, ())) < 5:
                    continue
                first, last = by_user[user_id][run[0]][0], by_user[user_id][run[-1]][-1]
                if user_id in self.used or (
                    strict and not self.free(user_id, first.start, last.end)
                ):
                    continue
                u = self.sc.user(user_id)
                daily = sorted(self.daily_bytes[user_id])[len(self.daily_bytes[user_id]) // 2]
                events = []
                # exfiltration_extra times the daily volume on top of the routine, in ten
                # equal pulls spread evenly over the day's sessions.
                per_call = int(self.shapes.exfiltration_extra * daily / 10)
                for day in run:
                    sessions = by_user[user_id][day]
                    total = sum((s.end - s.start for s in sessions), timedelta())
                    for j in range(10):
                        offset = total * (j + 0.5) / 10
                        for s in sessions:
                            if offset < s.end - s.start:
                                break
                            offset -= s.end - s.start
                        events.append(
                            self.call(
                                u,
                                s.start + offset,
                                s.context,
                                s.session_id,
                                u.bulk_endpoint(),
                                size=per_call,
                            )
                        )
                self.label(
                    "low_and_slow_exfiltration",
                    events,
                    f"{user_id} pulls about {1 + self.shapes.exfiltration_extra:g} times the "
                    f"daily volume on five working days, {run[0]} to {run[-1]}",
                )
                return

    def credential_stuffing(self, near: datetime) -> None:
        rng = self.rng
        real = [
            u
            for u in self.sc.people
            if self.free(u.user_id, near - timedelta(days=1), near + timedelta(hours=4))
        ]
        shapes = self.shapes
        accounts = [
            u.user_id for u in rng.sample(real, k=min(len(real), shapes.stuffing_real_accounts))
        ]
        fake = [n for n in FORMER_STAFF if n not in accounts]
        accounts += [
            f"{fake[i % len(fake)]}{'' if i < len(fake) else i // len(fake)}"
            for i in range(shapes.stuffing_accounts - len(accounts))
        ]
        sources = []
        prefixes = (
            "45.134.26",
            "91.241.19",
            "103.77.192",
            "194.26.29",
            "185.100.87",
            "5.188.62",
            "193.32.162",
            "141.98.11",
        )
        n = sum(
            1 for lb in self.sc.labels if lb.kind == "credential_stuffing"
        )  # another botnet each time
        for i in range(shapes.stuffing_sources):
            sources.append(
                f"{prefixes[(i + 3 * n) % len(prefixes)]}.{(i * 37 + 101 * n) % 250 + 3}"
            )
        t0 = near.replace(minute=0, second=0)
        events = []
        lucky = [a for a in accounts if a in {u.user_id for u in self.sc.people}][
            : shapes.stuffing_successes
        ]
        order = rng.sample(accounts, k=len(accounts))  # every account is tried at least once
        attempt = 0
        for i, ip in enumerate(sources):
            place = FOREIGN[i % len(FOREIGN)]
            ctx = Context(place, ip, "", rng.choice(LAPTOPS + TOOLS))
            for _ in range(rng.choice((1, 1, 2))):
                at = t0 + timedelta(seconds=rng.uniform(0, 3 * 3600))
                account = order[attempt % len(order)]
                attempt += 1
                owner = next((u for u in self.sc.people if u.user_id == account), None)
                events.append(self.ev(owner or account, T.LOGIN_FAILURE, at, ctx))
        for k, account in enumerate(lucky):
            u = self.sc.user(account)
            ip = sources[(k * 53) % len(sources)]
            ctx = Context(FOREIGN[k % len(FOREIGN)], ip, "", rng.choice(TOOLS))
            at = t0 + timedelta(seconds=rng.uniform(3600, 3 * 3600))
            sid = self.emit.session_id()
            events.append(self.ev(u, T.LOGIN_SUCCESS, at, ctx, session_id=sid))
            events.append(self.call(u, at + timedelta(seconds=4), ctx, sid, u.endpoints[0]))
        self.label(
            "credential_stuffing",
            events,
            f"{len(sources)} addresses try leaked passwords against "
            f"{len(accounts)} accounts over 3 hours; {len(lucky)} succeed",
            users=accounts,
            sources=sources,
            start=t0,
            victims=lucky,
        )

    def password_spraying_slow(self, near: datetime) -> None:
        rng = self.rng
        real = [
            u
            for u in self.sc.people
            if self.free(u.user_id, near - timedelta(days=1), near + timedelta(hours=3))
        ]
        shapes = self.shapes
        accounts = [u.user_id for u in rng.sample(real, k=min(len(real), shapes.spray_accounts))]
        fake = [n for n in FORMER_STAFF if n not in accounts]
        accounts += fake[: max(0, shapes.spray_accounts - len(accounts))]
        n = sum(1 for lb in self.sc.labels if lb.kind == "password_spraying_slow")
        sources = [f"91.219.{236 + n}.{host}" for host in (17, 41, 88)][: shapes.spray_sources]
        place = FOREIGN[4]
        t0 = near.replace(second=0)
        events = []
        for i, account in enumerate(accounts):
            ctx = Context(
                place,
                sources[i % len(sources)],
                "",
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/120.0",
            )
            owner = next((u for u in self.sc.people if u.user_id == account), None)
            events.append(
                self.ev(
                    owner or account,
                    T.LOGIN_FAILURE,
                    t0 + timedelta(seconds=shapes.spray_seconds_apart * i + rng.uniform(0, 60)),
                    ctx,
                )
            )
        self.label(
            "password_spraying_slow",
            events,
            f"one password against {len(accounts)} accounts from {len(sources)} addresses "
            f"over {shapes.spray_hours:g} hours",
            users=accounts,
            sources=sources,
            start=t0,
            victims=(),
        )

    def mfa_fatigue(self, near: datetime) -> None:
        u = self.pick_user(
            lambda u: self.free(u.user_id, near - timedelta(hours=2), near + timedelta(hours=6))
        ) or self.pick_user(lambda u: u.user_id not in self.dormant_users)
        if u is None:
            return
        day = near.astimezone(_tz(u)).date()
        at = local_time(day, self.shapes.mfa_local_hour + self.rng.uniform(0, 1), u.timezone)
        place = self.foreign(u) if self.shapes.mfa_abroad else u.office
        ctx = Context(
            place,
            f"196.245.{self.rng.randint(0, 255)}.{self.rng.randint(1, 254)}",
            "",
            self.rng.choice(LAPTOPS),
        )
        events = [self.ev(u, T.LOGIN_FAILURE, at - timedelta(minutes=3), ctx)]
        t = at
        for k in range(self.shapes.mfa_prompts - 1):
            events.append(self.ev(u, T.MFA_CHALLENGE, t, ctx))
            if k % 3 == 1:
                events.append(
                    self.ev(u, T.MFA_DENIED, t + timedelta(seconds=self.rng.uniform(5, 30)), ctx)
                )
            t += timedelta(seconds=self.rng.uniform(60, 150))
        events.append(self.ev(u, T.MFA_CHALLENGE, t, ctx))
        events.append(self.ev(u, T.MFA_APPROVED, t + timedelta(seconds=20), ctx))
        sid = self.emit.session_id()
        t += timedelta(seconds=25)
        events.append(self.ev(u, T.LOGIN_SUCCESS, t, ctx, session_id=sid))
        for _ in range(8):
            t += timedelta(seconds=self.rng.uniform(20, 90))
            events.append(self.call(u, t, ctx, sid, self.rng.choice(u.endpoints)))
        self.label(
            "mfa_fatigue",
            events,
            f"{u.user_id} gets {self.shapes.mfa_prompts} push prompts in "
            f"{(t - at).total_seconds() / 60:.0f} minutes from "
            f"{place.city}, denies some, ignores most, approves the last",
        )

    # -- blatant -------------------------------------------------------------

    def _victim(self, lo: datetime, hi: datetime) -> User:
        # With few users, a victim may suffer several attacks.
        dormant = self.dormant_users
        return (
            self.pick_user(lambda u: self.free(u.user_id, lo, hi) and u.user_id not in dormant)
            or self.pick_user(lambda u: u.user_id not in dormant)
            or self.rng.choice(
                [u for u in self.sc.people if u.user_id not in dormant] or self.sc.people
            )
        )

    def _attacker(
        self, u: User | str, place: Place, ip: str, at: datetime, kind: ActivityType, **values
    ):
        ctx = Context(place, ip, values.pop("device_id", ""), "python-requests/2.31")
        return self.ev(u, kind, at, ctx, **values)

    def _home(self, u: User, at: datetime) -> Context:
        device = (
            u.device_id.replace("LT-", "LT2-")
            if u.user_id in _refreshed(self.sc, at)
            else u.device_id
        )
        return Context(u.office, u.office_ip, device, u.user_agent)

    def off_hours_login(self, at: datetime, window) -> None:
        on_call = {lb.users[0] for lb in self.sc.labels if lb.kind == "on_call"}
        u = self.pick_user(
            lambda u: u.user_id not in on_call and self.free(u.user_id, window[0], window[1])
        ) or self._victim(*window)
        local = at.astimezone(_tz(u))
        when = None
        for shift in (0, 1, -1, 2, -2):
            t = local_time(
                local.date() + timedelta(days=shift), 3 + self.rng.uniform(0.1, 0.4), u.timezone
            )
            if window[0] <= t <= window[1] - timedelta(minutes=30):
                when = t
                break
        if when is None:
            return
        ctx = self._home(u, when)
        sid = self.emit.session_id()
        events = [self.ev(u, T.LOGIN_SUCCESS, when, ctx, session_id=sid)]
        events += [
            self.call(
                u, when + timedelta(minutes=2 + 5 * k), ctx, sid, self.rng.choice(u.endpoints)
            )
            for k in range(3)
        ]
        self.label("off_hours_login", events, f"{u.user_id} logs in at 03:xx {u.timezone}")

    def brute_force(self, at: datetime, window) -> None:
        u = self._victim(at, at + timedelta(minutes=10))
        ip, place = "203.0.113.66", FOREIGN[0]
        events = [
            self._attacker(u, place, ip, at + timedelta(seconds=7 * i), T.LOGIN_FAILURE)
            for i in range(25)
        ]
        events.append(self._attacker(u, place, ip, at + timedelta(seconds=178), T.LOGIN_SUCCESS))
        self.label(
            "brute_force",
            events,
            f"25 failed logins for {u.user_id} from {ip}, then a success",
            sources=(ip,),
        )

    def password_spraying(self, at: datetime, window) -> None:
        ip = "203.0.113.77"
        targets: list[User | str] = list(self.sc.people[:15])
        targets += list(FORMER_STAFF[: max(0, 12 - len(targets))])
        events = [
            self._attacker(t, FOREIGN[5], ip, at + timedelta(seconds=11 * i), T.LOGIN_FAILURE)
            for i, t in enumerate(targets)
        ]
        self.label(
            "password_spraying",
            events,
            f"{ip} tries one password against {len(events)} accounts in "
            f"{11 * len(events) // 60} minutes",
            users=[e.user_id for e in events],
            sources=(ip,),
            victims=(),
        )

    def new_country_and_device(self, at: datetime, window) -> None:
        u = self._victim(at, at + timedelta(minutes=10))
        place = self.foreign(u)
        self.label(
            "new_country_and_device",
            [
                self._attacker(
                    u, place, "203.0.113.80", at, T.LOGIN_SUCCESS, device_id="android-7731"
                )
            ],
            f"{u.user_id} logs in from {place.city} on an unknown device",
            sources=("203.0.113.80",),
        )

    def impossible_travel(self, at: datetime, window) -> None:
        u = self._victim(at, at + timedelta(minutes=30))
        from uba.detectors.travel import haversine_km

        place = max(
            FOREIGN,
            key=lambda o: haversine_km(
                u.office.latitude, u.office.longitude, o.latitude, o.longitude
            ),
        )
        events = [
            self.ev(u, T.LOGIN_SUCCESS, at, self._home(u, at)),
            self._attacker(u, place, "203.0.113.90", at + timedelta(minutes=20), T.LOGIN_SUCCESS),
        ]
        self.label(
            "impossible_travel",
            events,
            f"{u.user_id} logs in at the office, then 20 minutes later from {place.city}",
        )

    def api_rate_spike(self, at: datetime, window) -> None:
        u = self._victim(at, at + timedelta(minutes=40))
        ctx = self._home(u, at)
        sid = self.emit.session_id()
        events = [self.ev(u, T.LOGIN_SUCCESS, at, ctx, session_id=sid)]
        events += [
            self.call(
                u, at + timedelta(seconds=1 + 1.5 * i), ctx, sid, self.rng.choice(u.endpoints)
            )
            for i in range(1200)
        ]
        self.label("api_rate_spike", events, f"{u.user_id} makes 1,200 API calls in 30 minutes")

    def data_exfiltration(self, at: datetime, window) -> None:
        u = self._victim(at, at + timedelta(hours=1))
        ctx = self._home(u, at)
        sid = self.emit.session_id()
        events = [self.ev(u, T.LOGIN_SUCCESS, at, ctx, session_id=sid)]
        events += [
            self.call(
                u,
                at + timedelta(minutes=1 + 2 * i),
                ctx,
                sid,
                ("GET", "/v1/reports/export"),
                size=250_000_000,
            )
            for i in range(20)
        ]
        self.label("data_exfiltration", events, f"{u.user_id} downloads 5 GB in 40 minutes")

    def error_rate_spike(self, at: datetime, window) -> None:
        u = self._victim(at, at + timedelta(minutes=30))
        ctx = self._home(u, at)
        sid = self.emit.session_id()
        events = [self.ev(u, T.LOGIN_SUCCESS, at, ctx, session_id=sid)]
        events += [
            self.call(
                u,
                at + timedelta(seconds=20 + 25 * i),
                ctx,
                sid,
                self.rng.choice(u.endpoints),
                status=403,
            )
            for i in range(40)
        ]
        self.label("error_rate_spike", events, f"{u.user_id} gets 40 refusals (403) in 17 minutes")


@dataclass
class _Campaign:
    """What one attacker reuses from one victim to the next."""

    group: str
    place: Place
    network: str  # a /24: "185.120.7"
    agent: str
    playbook: list[tuple[str, str]]
    start: datetime
    victims: int = 0


def _tz(u: User):
    from uba.evaluation.scenario import zone

    return zone(u.timezone)


def _refreshed(sc: Scenario, at: datetime) -> set[str]:
    lb = next((lb for lb in sc.labels if lb.kind == "laptop_refresh"), None)
    return set(lb.users) if lb is not None and at >= lb.start else set()


def _vpn_change(sc: Scenario) -> datetime:
    lb = next((lb for lb in sc.labels if lb.kind == "vpn_change"), None)
    return lb.start + timedelta(hours=14) if lb is not None else sc.end


__all__ = ["BLATANT", "REALISTIC", "Stager"]
