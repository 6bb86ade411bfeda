"""Access control: API keys, scopes, per-key limits, audit entries.

Plain Python: no gRPC, no SQLAlchemy. The interceptor (uba.api.auth) asks
this module who a bearer token belongs to and whether that key may call a
method; storage (uba.storage.security) keeps the keys and the audit trail.

Tokens are `uba_` + 32 random bytes (urlsafe base64). Only their SHA-256
digest is stored: for high-entropy random tokens a fast hash is enough (no
password-style stretching needed: there is nothing to brute-force), and it
lets the server find a key by its digest with one indexed lookup.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from uba.domain import paging
from uba.domain.errors import InvalidArgument, PermissionDenied, ResourceExhausted, Unauthenticated

UTC = UTC
TOKEN_PREFIX = "uba_"
MAX_TOKEN_LENGTH = 256  # longer bearer values are refused without a lookup

INGEST, READ, ADMIN = "ingest", "read", "admin"
SCOPES = (INGEST, READ, ADMIN)

# The scope each RPC of uba.v1.BehaviorAnalyticsService needs. A method that
# is not listed needs admin: a new RPC is closed until someone decides.
METHOD_SCOPES: dict[str, str] = {
    "RecordActivity": INGEST,
    "RecordActivities": INGEST,
    "GetDashboard": READ,
    "ListLogs": READ,
    "ListAnomalies": READ,
    "ListAlerts": READ,
    "StreamAlerts": READ,
    "GetUserBaseline": READ,
    "GetCapabilities": READ,
    "ListIncidents": READ,
    "GetIncident": READ,
    "AcknowledgeAlert": ADMIN,
    "ResolveAlert": ADMIN,
    "ExportLogs": ADMIN,
    "Backfill": ADMIN,
    "TrainModel": ADMIN,
    "ListAuditEvents": ADMIN,
    "AcknowledgeIncident": ADMIN,
    "ResolveIncident": ADMIN,
    "ForgetUser": ADMIN,
    "ListNotifications": ADMIN,
    "RetryNotifications": ADMIN,
    "SendTestNotification": ADMIN,
}
# Services anyone may call: load balancers and tooling must not need a key.
OPEN_SERVICES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)
# Calls whose every outcome goes into the audit trail (ingest does not: it
# is the hot path, and its data is the event log itself).
AUDITED_METHODS = frozenset(
    {
        "AcknowledgeAlert",
        "ResolveAlert",
        "ExportLogs",
        "Backfill",
        "TrainModel",
        "AcknowledgeIncident",
        "ResolveIncident",
        "RetryNotifications",
        "SendTestNotification",
    }
)


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def new_key_id() -> str:
    return "key_" + secrets.token_hex(4)


def required_scope(method: str) -> str | None:
    """The scope a full method name (/pkg.Service/Method) needs; None when
    the method is open to everyone."""
    if method.startswith(OPEN_SERVICES):
        return None
    return METHOD_SCOPES.get(method.rsplit("/", 1)[-1], ADMIN)


def parse_scopes(values: list[str] | tuple[str, ...]) -> frozenset[str]:
    scopes = frozenset(s.strip().lower() for v in values for s in v.replace(",", " ").split())
    unknown = scopes - set(SCOPES)
    if unknown or not scopes:
        raise InvalidArgument.single(
            "scopes",
            f"choose from {', '.join(SCOPES)}"
            + (f"; unknown: {', '.join(sorted(unknown))}" if unknown else ""),
        )
    return scopes


@dataclass(frozen=True, slots=True)
class ApiKey:
    key_id: str
    name: str
    scopes: frozenset[str]
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None

    def state(self, now: datetime) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """Who did what, when, from where, and how it ended. Never a secret."""

    action: str
    outcome: str
    actor: str = ""
    key_id: str = ""
    target: str = ""
    peer: str = ""
    detail: str = ""
    occurred_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    seq: int = 0


def bearer_token(value: str | None) -> str:
    """The token of an `authorization: Bearer TOKEN` value; '' when absent."""
    if not value:
        return ""
    scheme, _, token = value.strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


_MISS = object()


class Authenticator:
    """Finds the key of a bearer token, caching answers (hits and misses) for
    `ttl` seconds so that a call does not cost a database read. A revoked key
    therefore keeps working for at most `ttl` seconds in a running server.
    Expiry is checked on every call, cached or not."""

    def __init__(
        self,
        lookup: Callable[[str], tuple[ApiKey, str] | None],
        ttl: float = 10.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        max_entries: int = 10_000,
    ):
        self._lookup = lookup  # digest -> (key, stored digest) or None
        self._ttl = ttl
        self._clock = clock
        self._max_entries = max_entries
        self._cache: dict[str, tuple[float, ApiKey | None]] = {}
        self._lock = threading.Lock()
        self._active: frozenset[str] = frozenset()

    def cached(self, token: str) -> object:
        """The verified key, or raises; returns MISS when a lookup is needed
        (cheap: for the event loop)."""
        if not token:
            raise Unauthenticated("missing API key: send 'authorization: Bearer <key>'")
        if not token.startswith(TOKEN_PREFIX) or len(token) > MAX_TOKEN_LENGTH:
            raise Unauthenticated("invalid API key")
        with self._lock:
            entry = self._cache.get(digest(token))
        if entry is None or entry[0] < time.monotonic():
            return _MISS
        return self._check(entry[1])

    def verify(self, token: str) -> ApiKey:
        """As `cached`, looking the key up when needed (blocking)."""
        found = self.cached(token)
        if found is not _MISS:
            return found  # type: ignore[return-value]
        wanted = digest(token)
        row = self._lookup(wanted)
        key = row[0] if row is not None and hmac.compare_digest(row[1], wanted) else None
        with self._lock:
            if len(self._cache) >= self._max_entries:
                self._cache.clear()  # bounded memory under a flood of made-up keys
            self._cache[wanted] = (time.monotonic() + self._ttl, key)
        return self._check(key)

    def remember_active(self, digests: set[str]) -> None:
        """The digests of every active key, refreshed now and then: a valid
        key is recognised without a lookup even while its client address is
        over its failed-authentication budget."""
        self._active = frozenset(digests)

    def is_active(self, token: str) -> bool:
        """Whether `token` was an active key at the last refresh (cheap)."""
        return digest(token) in self._active

    def _check(self, key: ApiKey | None) -> ApiKey:
        if key is None:
            raise Unauthenticated("invalid API key")
        state = key.state(self._clock())
        if state != "active":
            raise Unauthenticated(f"API key {state}")
        return key

    @staticmethod
    def authorize(key: ApiKey, scope: str) -> None:
        if scope not in key.scopes:
            raise PermissionDenied(f"API key {key.name!r} lacks the {scope!r} scope")


MISS = _MISS


class TokenBuckets:
    """A token bucket per name: `rate` tokens per second, up to `burst`.
    Used from the event loop only (no lock). At most `max_names` buckets are
    kept; past that, full ones (idle names) are forgotten."""

    def __init__(
        self,
        rate: float,
        burst: float,
        clock: Callable[[], float] = time.monotonic,
        max_names: int = 100_000,
    ):
        self.rate = rate
        self.burst = max(burst, 1.0)
        self._clock = clock
        self._max_names = max_names
        self._buckets: dict[str, tuple[float, float]] = {}  # name -> (tokens, at)

    def wait(self, name: str) -> float:
        """Seconds until `name` has a whole token (0: it has one now)."""
        if self.rate <= 0:
            return 0.0
        tokens = self._tokens(name, self._clock())
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate

    def take(self, name: str) -> None:
        """Spends a token of `name` (the bucket may run dry, never below 0)."""
        if self.rate <= 0:
            return
        now = self._clock()
        if len(self._buckets) >= self._max_names and name not in self._buckets:
            self._forget_full(now)
        self._buckets[name] = (max(0.0, self._tokens(name, now) - 1.0), now)

    def _tokens(self, name: str, now: float) -> float:
        tokens, at = self._buckets.get(name, (self.burst, now))
        return min(self.burst, tokens + (now - at) * self.rate)

    def _forget_full(self, now: float) -> None:
        full = [n for n in self._buckets if self._tokens(n, now) >= self.burst]
        for n in full or list(self._buckets):  # all of them, if no bucket is full
            del self._buckets[n]


class RateLimiter:
    """Requests per API key: `rate` per second on average, bursts up to
    `burst`; past that, RESOURCE_EXHAUSTED with the wait as retry hint."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic):
        self.rate = rate
        self._buckets = TokenBuckets(rate, burst, clock)

    def acquire(self, key: str) -> None:
        wait = self._buckets.wait(key)
        if wait > 0:
            raise ResourceExhausted(
                f"rate limit of {self.rate:g} requests/s for this API key reached", retry_after=wait
            )
        self._buckets.take(key)


class FailureLimiter:
    """Failed authentications per client address: `burst` at once, then
    `rate` per second. A client past its budget is refused before its token
    is looked up or audited, so a flood of made-up keys costs neither
    database reads nor audit rows (and cannot crowd real entries out of the
    audit queue). Clients with a valid key are not affected."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic):
        self.rate = rate
        self._buckets = TokenBuckets(rate, burst, clock)

    def check(self, client: str) -> None:
        wait = self._buckets.wait(client)
        if wait > 0:
            raise ResourceExhausted(
                f"too many failed authentications from this address "
                f"(at most {self.rate:g}/s); retry later",
                retry_after=wait,
            )

    def failed(self, client: str) -> None:
        self._buckets.take(client)


class AuditThrottle:
    """Audits the first of a run of alike refusals (same subject), then at
    most one per `every` seconds, each carrying how many were left out, so a
    flood of refused calls costs a few audit rows, not one each."""

    def __init__(
        self,
        every: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        max_subjects: int = 10_000,
    ):
        self.every = every
        self._clock = clock
        self._max_subjects = max_subjects
        self._subjects: dict[
            str, tuple[float, int]
        ] = {}  # subject -> (last written, left out since)

    def admit(self, subject: str) -> int | None:
        """None: leave this one out; else write it, noting the returned
        count of entries left out before it."""
        now = self._clock()
        last, skipped = self._subjects.get(subject, (-float("inf"), 0))
        if now - last < self.every:
            self._subjects[subject] = (last, skipped + 1)
            return None
        if len(self._subjects) >= self._max_subjects and subject not in self._subjects:
            self._subjects.clear()
        self._subjects[subject] = (now, 0)
        return skipped


class StreamLimiter:
    """At most `limit` open streams per key (0: no limit)."""

    def __init__(self, limit: int):
        self.limit = limit
        self._open: dict[str, int] = {}

    def open(self, key: str) -> None:
        count = self._open.get(key, 0)
        if self.limit and count >= self.limit:
            raise ResourceExhausted(
                f"at most {self.limit} concurrent streams per API key", retry_after=5.0
            )
        self._open[key] = count + 1

    def close(self, key: str) -> None:
        count = self._open.get(key, 0) - 1
        if count > 0:
            self._open[key] = count
        else:
            self._open.pop(key, None)


# -- who is calling ----------------------------------------------------------
# A forwarded address is only as trustworthy as the hop that wrote it: each
# proxy appends the address it received the request from to
# x-forwarded-for, and a caller may start the header with anything. So the
# header counts only when the request came from a trusted proxy (the bundled
# gateway, which proves itself with a per-process secret header, or an
# address in --trusted-proxies), and then the client is the right-most hop
# that is not itself a trusted proxy.

MAX_FORWARDED_HOPS = 32  # hops kept of a longer header (the right-most: the trustworthy ones)
MAX_PEER_TEXT = 1000  # what the audit keeps of the peer and the forwarded chain

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(text: str, what: str = "trusted_proxies") -> tuple[Network, ...]:
    """CIDR blocks (or single addresses) separated by commas or spaces."""
    networks = []
    for item in text.replace(",", " ").split():
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise InvalidArgument.single(
                what, f"not an IP address or CIDR block: {item!r}"
            ) from None
    return tuple(networks)


def is_loopback_host(host: str) -> bool:
    """True for an address on 127.0.0.0/8, ::1, or the name localhost."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def peer_host(peer: str) -> str:
    """The address of a gRPC peer string ("ipv4:1.2.3.4:5", "ipv6:[::1]:5")."""
    kind, _, rest = peer.partition(":")
    if kind in ("ipv4", "ipv6"):
        host = rest.rsplit(":", 1)[0]
        return host.strip("[]")
    return peer


def _in(address: str, networks: tuple[Network, ...]) -> bool:
    if not networks:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in n for n in networks)


@dataclass(frozen=True, slots=True)
class CallOrigin:
    """Where a call came from, decided once when it is admitted."""

    peer: str  # the transport peer, as gRPC names it
    client: str  # the address charged for failed authentications
    forwarded: tuple[str, ...] = ()  # x-forwarded-for hops as received (right-most kept)
    via_proxy: bool = False  # the forwarded hops came through a trusted proxy

    @classmethod
    def of(
        cls,
        peer: str,
        forwarded_for: str = "",
        trusted_peer: bool = False,
        trusted: tuple[Network, ...] = (),
    ) -> CallOrigin:
        hops = tuple(h.strip() for h in forwarded_for.split(",") if h.strip())[-MAX_FORWARDED_HOPS:]
        host = peer_host(peer)
        if not hops or not (trusted_peer or _in(host, trusted)):
            return cls(peer, host, hops, False)
        client = hops[0]
        for hop in reversed(hops):
            if not _in(hop, trusted):
                client = hop
                break
        return cls(peer, client[:64], hops, True)

    def describe(self) -> str:
        """The audit's peer: transport peer, the client when a proxy named
        it, and the whole forwarded chain (a caller's claims included,
        marked as such when no trusted proxy vouched for them)."""
        text = self.peer
        if self.via_proxy:
            text += f" client={self.client}"
        if self.forwarded:
            label = "xff" if self.via_proxy else "xff(untrusted)"
            chain = ", ".join(self.forwarded)
            room = MAX_PEER_TEXT - len(text) - len(label) - 2
            if len(chain) > room:  # keep the right-most hops: the ones a trusted proxy wrote
                chain = "..." + chain[-max(room - 3, 0) :]
            text += f" {label}={chain}"
        return text[:MAX_PEER_TEXT]


def expiry(now: datetime, expires_in: timedelta | None) -> datetime | None:
    return now + expires_in if expires_in else None


class AuditReader(Protocol):
    """What the audit trail needs from storage."""

    def page_audit(
        self, actor: str, action: str, limit: int, before_seq: int | None
    ) -> list[AuditEvent]:
        """Up to `limit` entries, newest first, below `before_seq` if given,
        with the given actor and action ('' for any)."""
        ...


class AuditTrail:
    """Reading the audit trail: filtered pages, newest first."""

    def __init__(self, reader: AuditReader):
        self._reader = reader

    def page(
        self, actor: str, action: str, requested_size: int, token: str
    ) -> tuple[list[AuditEvent], str]:
        """A page of entries and the next page's token (AIP-158)."""
        size = paging.page_size(requested_size)
        key = {"actor": actor, "action": action}
        after = paging.decode(token, key, 1)
        rows = self._reader.page_audit(actor, action, size + 1, after[0] if after else None)
        next_token = paging.encode([rows[size - 1].seq], key) if len(rows) > size else ""
        return rows[:size], next_token
