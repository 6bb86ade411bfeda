"""A realistic, seeded population for demos and end-to-end tests: office
workers in several time zones with their working routines (sessions of API
use ending in logouts with session_duration), occasional business trips,
and on request labelled attacks of every kind the built-in detectors know.

Builds on uba.detectors.synthetic (Persona and its workday); returns domain
events, which `uba demo` converts and sends, and which tests can also feed
to the detection engine directly.

    sim = simulate(users=20, days=21, seed=7, attacks=True)
    sim.events    # ActivityEvent list, oldest first, none after `end`
    sim.attacks   # AttackLabel per attack: kind, detectors, victims, event ids
"""

from __future__ import annotations

import hashlib
import random
import zlib
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone

from uba.detectors.synthetic import ENDPOINTS, Persona
from uba.detectors.travel import haversine_km
from uba.domain.events import ActivityEvent, ActivityType

UTC = timezone.utc
LOGIN, FAILURE = ActivityType.LOGIN_SUCCESS, ActivityType.LOGIN_FAILURE


@dataclass(frozen=True)
class Office:
    timezone: str
    country_code: str
    city: str
    latitude: float
    longitude: float


OFFICES = (
    Office("Europe/Berlin", "DE", "Berlin", 52.52, 13.405),
    Office("America/New_York", "US", "New York", 40.71, -74.01),
    Office("Asia/Tokyo", "JP", "Tokyo", 35.68, 139.69),
    Office("Europe/London", "GB", "London", 51.51, -0.13),
    Office("America/Los_Angeles", "US", "San Francisco", 37.77, -122.42),
    Office("Asia/Kolkata", "IN", "Bengaluru", 12.97, 77.59),
)
# Far-away places attackers (and travellers) appear from.
ELSEWHERE = (
    Office("America/Sao_Paulo", "BR", "São Paulo", -23.55, -46.63),
    Office("Australia/Sydney", "AU", "Sydney", -33.87, 151.21),
    Office("Africa/Lagos", "NG", "Lagos", 6.52, 3.38),
    Office("Asia/Singapore", "SG", "Singapore", 1.35, 103.82),
)
FIRST_NAMES = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "ken", "lena",
               "mallory", "nina", "oscar", "peggy", "quinn", "rupert", "sybil", "trent", "uma", "victor", "wendy",
               "xavier", "yara", "zoe")
PEER_GROUPS = {
    "engineering": ENDPOINTS,
    "finance": (("GET", "/v1/invoices"), ("GET", "/v1/invoices/{n}"), ("POST", "/v1/payments"),
                ("GET", "/v1/reports/daily"), ("GET", "/v1/customers/{n}")),
    "sales": (("GET", "/v1/customers"), ("GET", "/v1/customers/{n}"), ("PUT", "/v1/customers/{n}"),
              ("GET", "/v1/orders"), ("POST", "/v1/quotes")),
    "support": (("GET", "/v1/tickets"), ("GET", "/v1/tickets/{n}"), ("POST", "/v1/tickets/{n}/replies"),
                ("GET", "/v1/customers/{n}")),
}
# The attacks `simulate(attacks=True)` stages, and the detectors each should wake.
ATTACK_KINDS = {
    "off_hours_login": ("login_time",),
    "brute_force": ("failed_login_burst",),
    "password_spraying": ("password_spraying",),
    "new_country_and_device": ("new_country", "new_device", "new_ip"),
    "impossible_travel": ("impossible_travel",),
    "api_rate_spike": ("api_rate",),
    "data_exfiltration": ("data_volume",),
    "error_rate_spike": ("api_error_rate",),
}


@dataclass(frozen=True)
class AttackLabel:
    """Ground truth of one staged attack."""

    kind: str
    detectors: tuple[str, ...]
    users: tuple[str, ...]
    started_at: datetime
    description: str
    event_ids: tuple[str, ...]


@dataclass(frozen=True)
class TripLabel:
    """A legitimate business trip (may still look new to the detectors)."""

    user_id: str
    city: str
    country_code: str
    start: datetime
    days: int


@dataclass
class Simulation:
    start: datetime
    end: datetime
    personas: list[Persona]
    events: list[ActivityEvent] = field(default_factory=list)
    attacks: list[AttackLabel] = field(default_factory=list)
    trips: list[TripLabel] = field(default_factory=list)


def people(rng: random.Random, users: int) -> list[Persona]:
    """Workers spread over the offices and peer groups, each with own hours."""
    personas = []
    groups = list(PEER_GROUPS)
    for i in range(users):
        office = OFFICES[i % len(OFFICES)]
        group = groups[(i // len(OFFICES)) % len(groups)]
        personas.append(Persona(
            user_id=FIRST_NAMES[i % len(FIRST_NAMES)] + (str(i // len(FIRST_NAMES)) if i >= len(FIRST_NAMES) else ""),
            timezone=office.timezone, country_code=office.country_code, city=office.city,
            latitude=office.latitude, longitude=office.longitude,
            source_ip=f"10.{OFFICES.index(office) + 1}.{i // 250}.{i % 250 + 1}",
            device_id=f"laptop-{i:04d}", peer_group=group,
            work_start=rng.choice((7, 8, 9)), work_end=rng.choice((16, 17, 18)),
            endpoints=PEER_GROUPS[group],
        ))
    return personas


def simulate(users: int = 20, days: int = 21, seed: int = 7, attacks: bool = False, end: datetime | None = None,
             trips: bool = True) -> Simulation:
    """`days` of activity ending at `end` (default: now), and the attacks
    in its last hours. Same arguments, same events and ids."""
    if users < 1 or days < 1:
        raise ValueError("users and days must be at least 1")
    end = (end or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    start = end - timedelta(days=days)
    rng = random.Random(seed)
    sim = Simulation(start, end, people(rng, users))
    id_prefix = "demo-" + hashlib.sha256(f"{seed}|{end.isoformat()}".encode()).hexdigest()[:10]

    # The attack window: the last hours before `end`; normal work goes on.
    attack_from = end - timedelta(hours=12)
    travellers = rng.sample(sim.personas, k=max(0, users // 10)) if trips and days >= 7 else []
    trip_days: dict[str, tuple[int, int, Office]] = {}
    for p in travellers:
        first = rng.randint(2, max(2, days - 5))
        length = rng.randint(2, 4)
        place = rng.choice([o for o in OFFICES + ELSEWHERE if o.country_code != p.country_code])
        trip_days[p.user_id] = (first, first + length, place)

    for p in sim.personas:
        home = (p.timezone, p.country_code, p.city, p.latitude, p.longitude, p.source_ip)
        for offset in range(days + 2):
            day = (start + timedelta(days=offset)).replace(hour=0, minute=0, second=0, tzinfo=None)
            trip = trip_days.get(p.user_id)
            away = trip is not None and trip[0] <= offset < trip[1]
            if away:
                place = trip[2]
                # Working from the hotel: another city, a hotel address, same laptop and own time zone.
                p.country_code, p.city, p.latitude, p.longitude = (place.country_code, place.city,
                                                                  place.latitude, place.longitude)
                p.source_ip = f"192.0.2.{zlib.crc32(f'{p.user_id}|{place.city}'.encode()) % 250 + 1}"
            sim.events.extend(e for e in p.workday(day, rng) if start <= e.occurred_at <= end)
            p.timezone, p.country_code, p.city, p.latitude, p.longitude, p.source_ip = home
        if p.user_id in trip_days:
            first, last, place = trip_days[p.user_id]
            sim.trips.append(TripLabel(p.user_id, place.city, place.country_code, start + timedelta(days=first),
                                       last - first))

    if attacks:
        _stage_attacks(sim, rng, attack_from)
    for e in sim.events:
        e.event_id = f"{id_prefix}-{e.event_id}"
    sim.events = [e for e in sim.events if e.occurred_at <= end]
    sim.events.sort(key=lambda e: (e.occurred_at, e.event_id))
    sim.attacks = [replace(a, event_ids=tuple(f"{id_prefix}-{i}" for i in a.event_ids)) for a in sim.attacks]
    return sim


def _last_local(p: Persona, hour: int, minute: int, not_after: datetime, not_before: datetime) -> datetime | None:
    """The latest local hh:mm of the persona within the window."""
    day = not_after.replace(tzinfo=None, hour=0, minute=0, second=0)
    for back in range(-1, 3):
        at = p.local(day - timedelta(days=back), hour, minute)
        if not_before <= at <= not_after:
            return at
    return None


def _far_from(p: Persona) -> Office:
    return max(ELSEWHERE, key=lambda o: haversine_km(p.latitude, p.longitude, o.latitude, o.longitude))


def _stage_attacks(sim: Simulation, rng: random.Random, window_start: datetime) -> None:
    end = sim.end
    travelling = {t.user_id for t in sim.trips}
    victims = [p for p in sim.personas if p.user_id not in travelling] or list(sim.personas)
    rng.shuffle(victims)
    pick = iter(victims * 8)  # with few users a victim suffers several attacks
    span = (end - window_start).total_seconds()

    def at(slot: int) -> datetime:
        # Eight slots over the window, the last well before `end`.
        return window_start + timedelta(seconds=span * (slot + 0.3) / 9 + rng.uniform(0, 300))

    def label(kind: str, users: list[str], started: datetime, text: str, events: list[ActivityEvent]) -> None:
        sim.events.extend(events)
        sim.attacks.append(AttackLabel(kind, ATTACK_KINDS[kind], tuple(users), started, text,
                                       tuple(e.event_id for e in events)))

    def attacker(victim: Persona, place: Office, ip: str, start: datetime, kind: ActivityType, **extra) -> ActivityEvent:
        values = dict(source_ip=ip, country_code=place.country_code, city=place.city, latitude=place.latitude,
                      longitude=place.longitude, device_id="", user_agent="python-requests/2.31", session_id="")
        return victim.event(kind, start, **{**values, **extra})

    # Off-hours login: the victim's own laptop and address, at 03:1x local.
    v = next(pick)
    when = _last_local(v, 3, rng.randint(5, 25), end - timedelta(minutes=30), window_start - timedelta(hours=24))
    if when is not None:
        label("off_hours_login", [v.user_id], when, f"{v.user_id} logs in at 03:xx {v.timezone}",
              [v.event(LOGIN, when)] + v.session(when + timedelta(seconds=5), rng, 3, 20)[1:])

    # Brute force: 25 failures in about 3 minutes from one address, then a success.
    v, start, place = next(pick), at(1), ELSEWHERE[2]
    ip = "203.0.113.66"
    events = [attacker(v, place, ip, start + timedelta(seconds=7 * i), FAILURE) for i in range(25)]
    events.append(attacker(v, place, ip, start + timedelta(seconds=7 * 25 + 3), LOGIN))
    label("brute_force", [v.user_id], start, f"25 failed logins for {v.user_id} from {ip}, then a success", events)

    # Password spraying: one address, one try each against many accounts.
    start, ip = at(2), "203.0.113.77"
    targets = [p for p in sim.personas][:15]
    spray = [attacker(t, ELSEWHERE[0], ip, start + timedelta(seconds=11 * i), FAILURE)
             for i, t in enumerate(targets)]
    # Too few real accounts: the sprayer also guesses common names.
    for i, name in enumerate(("admin", "test", "backup", "oracle", "deploy", "support", "guest", "ftp", "git",
                              "jenkins", "postgres", "ubuntu")[: max(0, 12 - len(targets))]):
        spray.append(attacker(Persona(user_id=name, peer_group=""), ELSEWHERE[0], ip,
                              start + timedelta(seconds=11 * (len(targets) + i)), FAILURE, event_id=f"spray-{name}"))
    label("password_spraying", [e.user_id for e in spray], start,
          f"{ip} tries one password against {len(spray)} accounts in {11 * len(spray) // 60} minutes", spray)

    # New country and device: a login from abroad on an unknown phone.
    v, start = next(pick), at(3)
    place = next(o for o in ELSEWHERE if o.country_code != v.country_code)
    label("new_country_and_device", [v.user_id], start,
          f"{v.user_id} logs in from {place.city} on an unknown device",
          [attacker(v, place, "203.0.113.80", start, LOGIN, device_id="android-7731")])

    # Impossible travel: at home, then 20 minutes later on another continent.
    v, start = next(pick), at(4)
    place = _far_from(v)
    label("impossible_travel", [v.user_id], start,
          f"{v.user_id} logs in at home, then 20 minutes later from {place.city}",
          [v.event(LOGIN, start), attacker(v, place, "203.0.113.90", start + timedelta(minutes=20), LOGIN)])

    # API rate spike: a script pulls 1,200 records in half an hour.
    v, start = next(pick), at(5)
    calls = [v.event(LOGIN, start)] + [v.api_call(start + timedelta(seconds=1 + 1.5 * i), rng, status_code=200)
                                      for i in range(1200)]
    label("api_rate_spike", [v.user_id], start, f"{v.user_id} makes 1,200 API calls in 30 minutes", calls)

    # Data exfiltration: 20 downloads of 250 MB.
    v, start = next(pick), at(6)
    dump = [v.event(LOGIN, start)] + [
        v.api_call(start + timedelta(minutes=1 + 2 * i), rng, api_method="GET", api_path="/v1/reports/export",
                   status_code=200, bytes_transferred=250_000_000) for i in range(20)]
    label("data_exfiltration", [v.user_id], start, f"{v.user_id} downloads 5 GB in 40 minutes", dump)

    # Error-rate spike: probing endpoints without permission.
    v, start = next(pick), at(7)
    probes = [v.event(LOGIN, start)] + [
        v.api_call(start + timedelta(seconds=20 + 25 * i), rng, status_code=403) for i in range(40)]
    label("error_rate_spike", [v.user_id], start, f"{v.user_id} gets 40 refusals (403) in 17 minutes", probes)

