"""A population with routines, and attacks on it, sent through the gRPC API."""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from datetime import timedelta

from uba.api.converters import event_to_pb
from uba.domain.events import ActivityEvent, ActivityType
from uba.testing.synthetic import ENDPOINTS, Persona, day_after_history
from uba.v1 import service_pb2

ZONES = (
    ("Europe/Berlin", "DE", "Berlin", 52.52, 13.405),
    ("America/New_York", "US", "New York", 40.71, -74.01),
    ("Asia/Tokyo", "JP", "Tokyo", 35.68, 139.69),
)
LOGIN, FAILURE = ActivityType.LOGIN_SUCCESS, ActivityType.LOGIN_FAILURE
PARIS = dict(country_code="FR", city="Paris", latitude=48.86, longitude=2.35)


def personas(count: int, seed: int = 11) -> list[Persona]:
    """Office workers in three time zones with their own hours and places."""
    rng = random.Random(seed)
    run = uuid.uuid4().hex[:6]
    people = []
    for i in range(count):
        zone, country, city, lat, lon = ZONES[i % len(ZONES)]
        people.append(
            Persona(
                user_id=f"p{run}-{i:03d}",
                timezone=zone,
                country_code=country,
                city=city,
                latitude=lat,
                longitude=lon,
                source_ip=f"198.51.{100 + i // 250}.{i % 250 + 1}",
                device_id=f"laptop-{run}-{i:03d}",
                peer_group=("engineering", "finance")[i % 2],
                work_start=rng.choice((7, 8, 9)),
                work_end=rng.choice((16, 17, 18)),
            )
        )
    return people


def send(stub, events: list[ActivityEvent], batch: int = 1000) -> None:
    events = sorted(events, key=lambda e: e.occurred_at)
    for start in range(0, len(events), batch):
        request = service_pb2.RecordActivitiesRequest()
        for e in events[start : start + batch]:
            event_to_pb(e, request.events.add())
        reply = stub.RecordActivities(request)
        assert reply.invalid_count == 0, [r.violations for r in reply.results if r.violations][:3]


def attacks(
    victims: list[Persona], rng: random.Random
) -> dict[str, tuple[str, list[ActivityEvent]]]:
    """One attack per detector, each on its own victim: detector -> (user, events)."""
    day = day_after_history()
    out: dict[str, tuple[str, list[ActivityEvent]]] = {}
    it = iter(victims)

    def take(detector: str, build) -> None:
        p = next(it)
        out[detector] = (p.user_id, build(p))

    take("login_time", lambda p: [p.event(LOGIN, p.local(day, 3, 12))])
    take(
        "new_country",
        lambda p: [
            p.event(
                LOGIN,
                p.local(day, 10, 0),
                country_code="BR",
                city="Sao Paulo",
                latitude=-23.55,
                longitude=-46.63,
                source_ip="203.0.113.80",
            )
        ],
    )
    take(
        "new_device",
        lambda p: [p.event(LOGIN, p.local(day, 10, 5), device_id="unknown-android-7731")],
    )
    take(
        "failed_login_burst",
        lambda p: [
            p.event(FAILURE, p.local(day, 9, 0) + timedelta(seconds=8 * i), source_ip="203.0.113.9")
            for i in range(15)
        ],
    )
    take(
        "impossible_travel",
        lambda p: [
            p.event(LOGIN, p.local(day, 9, 0)),
            p.event(
                LOGIN,
                p.local(day, 9, 20),
                country_code="AU",
                city="Sydney",
                latitude=-33.87,
                longitude=151.21,
                source_ip="203.0.113.81",
            ),
        ],
    )
    take(
        "data_volume",
        lambda p: (
            [p.event(LOGIN, p.local(day, 10, 0))]
            + [
                p.api_call(
                    p.local(day, 10, 1) + timedelta(minutes=i), rng, bytes_transferred=500_000_000
                )
                for i in range(10)
            ]
        ),
    )
    take(
        "api_rate",
        lambda p: (
            [p.event(LOGIN, p.local(day, 10, 0))]
            + [
                p.api_call(p.local(day, 10, 0) + timedelta(seconds=1 + i * 1.5), rng)
                for i in range(2000)
            ]
        ),
    )
    take("session_duration", lambda p: p.session(p.local(day, 10, 0), rng, 3, 16 * 60))
    take(
        "api_new_endpoint",
        lambda p: [
            p.api_call(p.local(day, 11, 0), rng, api_method="DELETE", api_path="/admin/users/77")
        ],
    )
    # Password spraying: one address tries many accounts of the population.
    sprayer = "203.0.113.99"
    start = victims[0].local(day, 12, 0)
    spray = [
        p.event(FAILURE, start + timedelta(seconds=5 * i), source_ip=sprayer)
        for i, p in enumerate(victims[:15])
    ]
    # The detector speaks up when the tenth account fails from the address.
    out["password_spraying"] = (victims[9].user_id, spray)
    return out


def peer_scenario(
    worker_of: Callable[[str], int], seed: int = 3, days: int = 14
) -> tuple[dict[str, Persona], list[list[ActivityEvent]]]:
    """Users on two workers (`worker_of(user_id)`: 0 or 1) where the peers
    on the other worker matter (tests/test_event_log_equivalence.py): a
    sales team of three in France on worker 0 that calls an administrative
    endpoint daily, their two colleagues in Berlin on worker 1, six
    engineers on both. Returns the personas by name and the events in
    phases: the history, then the later events, each phase to be judged
    after the ones before: a laptop refresh (three engineers, then a
    fourth, on new devices of a new kind), a Berlin colleague from France,
    the other calling the team's endpoint, a privileged endpoint and a
    country nobody uses, a login at 3 am, a failed-login burst, impossible
    travel, a password spray over every account, one failure a phase, and
    a newcomer to engineering judged by the peer group's prior."""
    rng = random.Random(seed)
    people: dict[str, Persona] = {}

    def hire(name: str, prefix: str, worker: int, **habits) -> Persona:
        i = 0
        while worker_of(f"{prefix}-{i:03d}") != worker:
            i += 1
        n = len(people) + 1
        people[name] = Persona(
            user_id=f"{prefix}-{i:03d}",
            source_ip=f"198.51.100.{n}",
            device_id=f"laptop-{prefix}-{i:03d}",
            work_start=rng.choice((7, 8, 9)),
            work_end=rng.choice((16, 17, 18)),
            **habits,
        )
        return people[name]

    admin_reports = ENDPOINTS + (("GET", "/admin/reports"),)
    for k in range(3):
        hire(
            f"sales-fr-{k}",
            f"sales-fr{k}",
            0,
            timezone="Europe/Paris",
            peer_group="sales",
            endpoints=admin_reports,
            **PARIS,
        )
    for k in range(2):
        hire(f"sales-de-{k}", f"sales-de{k}", 1, peer_group="sales")
    for k in range(6):
        hire(f"eng-{k}", f"eng{k}", k % 2, peer_group="engineering")
    history = sorted(
        (e for p in people.values() for e in p.history(rng, days=days)),
        key=lambda e: e.occurred_at,
    )
    day = day_after_history(days=days)
    phases: list[list[ActivityEvent]] = [history]
    fleet = dict(user_agent="Fleetbook/2 (managed)")
    for k in range(4):  # the refresh; the fourth is judged after the three
        p = people[f"eng-{k}"]
        phases.append(
            [p.event(LOGIN, p.local(day, 9, 10 + k), device_id=f"fleet-{p.user_id}", **fleet)]
        )
    p = people["sales-de-0"]  # from France, half an hour after Berlin: no plausible travel
    phases.append(
        [
            p.event(LOGIN, p.local(day, 9, 0)),
            p.event(LOGIN, p.local(day, 9, 30), source_ip="203.0.113.70", **PARIS),
        ]
    )
    p = people["sales-de-1"]
    phases.append(
        [p.api_call(p.local(day, 10, 5), rng, api_method="GET", api_path="/admin/reports")]
    )
    p = people["eng-4"]
    phases.append(
        [p.api_call(p.local(day, 11, 0), rng, api_method="DELETE", api_path="/admin/users/77")]
    )
    p = people["eng-5"]
    phases.append([p.event(LOGIN, p.local(day, 3, 12))])
    phases.append(
        [
            p.event(
                LOGIN,
                p.local(day, 10, 0),
                country_code="BR",
                city="Sao Paulo",
                latitude=-23.55,
                longitude=-46.63,
                source_ip="203.0.113.80",
                device_id="unknown-android-7731",
            )
        ]
    )
    p = people["eng-1"]
    phases.append(
        [
            p.event(
                FAILURE, p.local(day, 14, 0) + timedelta(seconds=8 * i), source_ip="203.0.113.9"
            )
            for i in range(15)
        ]
    )
    p = people["sales-fr-0"]
    phases.append(
        [
            p.event(LOGIN, p.local(day, 9, 0)),
            p.event(
                LOGIN,
                p.local(day, 9, 20),
                country_code="AU",
                city="Sydney",
                latitude=-33.87,
                longitude=151.21,
                source_ip="203.0.113.81",
            ),
        ]
    )
    # A password spray from one address over every account, alternating
    # between the workers: the population detectors (on the population
    # partitions, re-keyed by address) and each victim's new network.
    sides = [[v for v in people.values() if worker_of(v.user_id) == w] for w in (0, 1)]
    victims = [v for k in range(len(people)) for side in sides for v in side[k : k + 1]]
    start = victims[0].local(day, 15, 0)
    for i, v in enumerate(victims):
        phases.append([v.event(FAILURE, start + timedelta(seconds=5 * i), source_ip="192.0.2.99")])
    # A newcomer to engineering, no history, logs in at 3 am: judged by the
    # peer group's prior, pooled from the six engineers of both workers (a
    # group is used from five users on; each worker alone has three).
    p = hire("eng-new", "engnew", 1, peer_group="engineering")
    phases.append([p.event(LOGIN, p.local(day, 3, 40))])
    return people, phases
