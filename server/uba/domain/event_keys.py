"""Keys derived from an event, shared by baselines, peers, sessions and
detectors: the normalised API endpoint and its area, the network of an
address, the device a user agent names, the part of the day, whether an
endpoint is privileged, and the peer group learned from a user's
endpoints."""

from __future__ import annotations

import functools
import ipaddress
import zlib

from uba.domain.clock import EventClock
from uba.domain.stats import KnownValues


@functools.lru_cache(maxsize=8192)  # learning and scoring ask for every API call; paths repeat
def normalize_endpoint(method: str, path: str) -> str:
    """ "METHOD path" with ids in the path replaced by {id}, so that
    /v1/customers/42 and /v1/customers/43 are one endpoint."""
    path = path.split("?", 1)[0]
    if path:
        segments = path.split("/")
        for i, segment in enumerate(segments):
            if segment and _looks_like_id(segment):
                segments[i] = "{id}"
        path = "/".join(segments)
    return f"{method.upper()} {path}" if method else path


def _looks_like_id(segment: str) -> bool:
    if segment.isdigit():
        return True
    if len(segment) >= 16:
        # UUIDs, hashes, long hex or base64-ish tokens
        stripped = segment.replace("-", "")
        if all(c in "0123456789abcdefABCDEF" for c in stripped):
            return True
        digits = sum(c.isdigit() for c in segment)
        return digits >= 4 and digits * 4 >= len(segment)
    return False


@functools.lru_cache(
    maxsize=16384
)  # asked on every event that carries an address; addresses repeat
def network_of(address: str) -> str:
    """The network an address belongs to, at the granularity novelty is
    judged at: the /24 of an IPv4 address, the /48 of an IPv6 one. A new
    address in a known network (DHCP, a mobile carrier's pool) is not new."""
    if not address:
        return ""
    if ":" not in address:
        head, sep, _ = address.rpartition(".")
        return f"{head}.0/24" if sep and head.count(".") == 2 else address
    try:
        net = ipaddress.IPv6Network(f"{address.split('%', 1)[0]}/48", strict=False)
    except ValueError:
        return address
    mapped = ipaddress.IPv6Address(address.split("%", 1)[0]).ipv4_mapped
    return network_of(str(mapped)) if mapped is not None else str(net)


def wide_network_of(address: str) -> str:
    """The /16 of an IPv4 address (the /32 of an IPv6 one): changes within it
    are a provider moving a client between its pools, not a new place."""
    if not address:
        return ""
    if ":" not in address:
        parts = address.split(".")
        return f"{parts[0]}.{parts[1]}.0.0/16" if len(parts) == 4 else address
    try:
        return str(ipaddress.IPv6Network(f"{address.split('%', 1)[0]}/32", strict=False))
    except ValueError:
        return address


# Device ids made from user agents start so (see agent_device).
AGENT_DEVICE = "agent:"


@functools.lru_cache(maxsize=4096)  # agents repeat
def agent_kind(user_agent: str, length: int = 80) -> str:
    """The first `length` characters of a user agent without their version
    numbers: the kind of device a fleet refresh hands out."""
    return "".join(c for c in user_agent[:length] if not c.isdigit())


def agent_device(user_agent: str) -> str:
    """The device of an event that carries no device id, for a user whose
    events never do (cloud trails, most identity providers): the browser
    and system its whole user agent names (Edge and Chrome differ only at
    its end), without version numbers, which a browser update changes; ""
    without one."""
    return AGENT_DEVICE + agent_kind(user_agent, 512) if user_agent else ""


# Parts of the local day sessions are grouped by: night 00-06, morning 06-12,
# afternoon 12-18, evening 18-24.
DAY_PARTS = ("night", "morning", "afternoon", "evening")


def day_part(hour: int) -> int:
    return hour // 6


# Endpoints whose first use matters more: administration and privileges.
PRIVILEGED_MARKERS = (
    "/admin",
    "/internal",
    "/sudo",
    "/root",
    "/iam",
    "/permissions",
    "/roles",
    "/users/{id}/roles",
    "/keys",
    "/secrets",
    "/billing/admin",
)


@functools.lru_cache(maxsize=8192)
def is_privileged(endpoint: str) -> bool:
    """Whether a normalised endpoint is administrative (/admin/..., roles,
    keys, secrets)."""
    path = endpoint.partition(" ")[2] if " " in endpoint else endpoint
    path = path.lower()
    return any(
        path.startswith(m) or f"{m}/" in path or path.endswith(m) for m in PRIVILEGED_MARKERS
    )


def endpoint_area(endpoint: str) -> str:
    """The area of a normalised endpoint, for grouping users by what they
    use: the method-less path up to its second segment (/v1/orders)."""
    path = endpoint.partition(" ")[2] if " " in endpoint else endpoint
    segments = [p for p in path.split("/") if p and p != "{id}"]
    return "/" + "/".join(segments[:2])


def learned_group_of(endpoints: KnownValues, min_share: float = 0.1) -> str:
    """A peer group learned from behaviour, for users whose events carry none:
    users are clustered by their normalised endpoint sets, reduced to the
    API areas (see `endpoint_area`) that carry at least `min_share` of their
    calls. Users with the same set of main areas share a group (named by a
    checksum of the set); rarely used corners do not split a team. Empty
    without endpoints."""
    weights: dict[str, int] = {}
    total = 0
    for endpoint, entry in endpoints.entries.items():
        area = endpoint_area(endpoint)
        weights[area] = weights.get(area, 0) + entry[0]
        total += entry[0]
    if not total:
        return ""
    main = sorted(a for a, w in weights.items() if w >= min_share * total)
    return f"learned-{zlib.crc32(chr(31).join(main).encode()):08x}"


def session_start_part(clock: EventClock, seconds: float) -> int:
    """The part of the local day a session ending at `clock` began in."""
    start = clock.local.hour * 3600 + clock.local.minute * 60 - seconds
    return day_part(int(start // 3600) % 24)
