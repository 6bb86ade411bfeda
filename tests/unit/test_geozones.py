from datetime import UTC, datetime

from uba.domain.events import ActivityType
from uba.domain.geozones import zone_at, zones_by_country
from uba.domain.user_baseline import UserBaseline
from uba.testing.synthetic import Persona

LOGIN = ActivityType.LOGIN_SUCCESS


def test_a_place_has_the_zone_of_its_country_or_the_nearest_of_its_zones():
    assert len(zones_by_country()) > 200  # the tz database's table was read
    assert zone_at("IN", None, None) == "Asia/Kolkata"  # one zone
    assert zone_at("jp", 35.7, 139.7) == "Asia/Tokyo"
    assert zone_at("US", 40.71, -74.01) == "America/New_York"
    assert zone_at("US", 37.77, -122.42) == "America/Los_Angeles"
    assert zone_at("BR", -23.55, -46.63) == "America/Sao_Paulo"
    assert zone_at("AU", -33.87, 151.21) == "Australia/Sydney"
    assert zone_at("US", None, None) == ""  # several zones, no coordinates
    assert zone_at("", 52.5, 13.4) == "" and zone_at("ZZ", 1.0, 1.0) == ""


def test_events_without_a_zone_are_judged_in_the_zone_of_their_place():
    """Imported logs say where a login came from, not the user's zone: 03:12
    in Berlin is 03:12, not 02:12 UTC; an event with no place keeps the zone
    learned from the others."""
    alice = Persona()
    b = UserBaseline("alice")
    at = datetime(2026, 3, 3, 2, 12, tzinfo=UTC)
    login = alice.event(LOGIN, at, timezone="", latitude=52.52, longitude=13.40)
    assert b.clock(login).zone_name == "Europe/Berlin" and b.clock(login).local.hour == 3
    b.learn(login)
    assert b.timezone == "Europe/Berlin" and b.timezone_from_place
    nowhere = alice.event(
        LOGIN, at, timezone="", country_code="", city="", latitude=None, longitude=None
    )
    assert b.clock(nowhere).zone_name == "Europe/Berlin"
    restored = UserBaseline.from_dict(b.to_dict())
    assert restored == b and restored.timezone_from_place


def test_a_zone_the_events_carry_is_not_replaced_by_their_place():
    """A user whose events say their zone keeps it when one comes from
    elsewhere without a zone (a VPN exit abroad, an import)."""
    alice = Persona()
    b = UserBaseline("alice")
    at = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)
    b.learn(alice.event(LOGIN, at))
    assert b.timezone == "Europe/Berlin" and not b.timezone_from_place
    tokyo = alice.event(
        LOGIN, at, timezone="", country_code="JP", city="Tokyo", latitude=35.7, longitude=139.7
    )
    assert b.clock(tokyo).zone_name == "Europe/Berlin"
    b.learn(tokyo)
    assert b.timezone == "Europe/Berlin" and not b.timezone_from_place
