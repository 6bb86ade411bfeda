"""A place's time zone, for events that carry a country (and coordinates)
but no zone: most imported logs (identity providers, cloud trails) say
where a login came from, not the user's zone.

From the tz database's own table of zones (zone.tab: a country, the
coordinates of the zone's principal city, its name), read from the tz
files zoneinfo uses, else from the tzdata package: a country with one
zone has it; in a country with several (US, RU, BR, AU, ...) the zone
whose principal city is nearest the event's coordinates, and none without
coordinates. Nothing is downloaded, nothing guessed beyond that.
"""

from __future__ import annotations

import functools
import math
import zoneinfo
from collections.abc import Iterable
from importlib import resources
from pathlib import Path

_TABLE = "zone.tab"


def _table_lines() -> Iterable[str]:
    for directory in zoneinfo.TZPATH:
        path = Path(directory) / _TABLE
        if path.is_file():
            return path.read_text(encoding="utf-8").splitlines()
    try:
        return (
            resources.files("tzdata.zoneinfo")
            .joinpath(_TABLE)
            .read_text(encoding="utf-8")
            .splitlines()
        )
    except (ModuleNotFoundError, FileNotFoundError, OSError):
        return ()


def _degrees(text: str, whole: int) -> float:
    """ISO 6709 (±DDMM[SS] or ±DDDMM[SS]) to degrees."""
    sign = -1.0 if text[0] == "-" else 1.0
    digits = text[1:]
    value = int(digits[:whole]) + int(digits[whole : whole + 2]) / 60
    if len(digits) > whole + 2:
        value += int(digits[whole + 2 : whole + 4]) / 3600
    return sign * value


def _split(coordinates: str) -> tuple[float, float]:
    i = max(coordinates.rfind("+"), coordinates.rfind("-"))
    return _degrees(coordinates[:i], 2), _degrees(coordinates[i:], 3)


@functools.cache
def zones_by_country() -> dict[str, tuple[tuple[str, float, float], ...]]:
    """Country code -> its zones (name, latitude, longitude)."""
    table: dict[str, list[tuple[str, float, float]]] = {}
    for line in _table_lines():
        if not line or line.startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) < 3:
            continue
        try:
            lat, lon = _split(fields[1])
        except (ValueError, IndexError):
            continue
        table.setdefault(fields[0].upper(), []).append((fields[2], lat, lon))
    return {country: tuple(zones) for country, zones in table.items()}


@functools.lru_cache(maxsize=4096)
def _nearest(country: str, lat: float | None, lon: float | None) -> str:
    zones = zones_by_country().get(country, ())
    if len(zones) == 1:
        return zones[0][0]
    if not zones or lat is None or lon is None:
        return ""
    cos_lat = math.cos(math.radians(lat))

    def distance(zone: tuple[str, float, float]) -> float:
        dlon = (zone[2] - lon + 180) % 360 - 180
        return (zone[1] - lat) ** 2 + (dlon * cos_lat) ** 2

    return min(zones, key=distance)[0]


def zone_at(country_code: str, latitude: float | None, longitude: float | None) -> str:
    """The IANA zone of a place, or "" when the country is unknown, or has
    several zones and no coordinates are given."""
    if not country_code:
        return ""
    if latitude is not None and longitude is not None:
        # A tenth of a degree (about 10 km) is finer than any zone boundary
        # a principal city decides, and keeps the cache small.
        latitude, longitude = round(latitude, 1), round(longitude, 1)
    return _nearest(country_code.upper(), latitude, longitude)
