"""MITRE ATT&CK on every finding: which tactics and techniques each
detector's anomalies stand for.

One table, by detector name. A detector class may override its row with
the class attribute `attack` (see the Detector interface): a tuple of
technique ids from TECHNIQUES, optionally followed by tactic ids; without
tactic ids, the tactics are those the technique lists in TECHNIQUES.

A detector that is neither in the table nor overrides it (a plug-in) gets
DEFAULT: T1078 Valid Accounts under Initial Access. Every detector of this
service judges an account against its own history, so "someone is using a
valid account unlike its owner" is the hypothesis any of its anomalies
supports; a plug-in that means more should say so with `attack`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

# ATT&CK enterprise tactics: id -> name.
TACTICS: Mapping[str, str] = MappingProxyType(
    {
        "TA0001": "Initial Access",
        "TA0003": "Persistence",
        "TA0004": "Privilege Escalation",
        "TA0005": "Defense Evasion",
        "TA0006": "Credential Access",
        "TA0007": "Discovery",
        "TA0009": "Collection",
        "TA0010": "Exfiltration",
    }
)

# The techniques the table uses: id -> (name, the tactics it is listed under
# by default). A detector's row picks the tactics that fit what it sees.
TECHNIQUES: Mapping[str, tuple[str, tuple[str, ...]]] = MappingProxyType(
    {
        "T1078": ("Valid Accounts", ("TA0001", "TA0003")),
        "T1110": ("Brute Force", ("TA0006",)),
        "T1110.001": ("Brute Force: Password Guessing", ("TA0006",)),
        "T1110.003": ("Brute Force: Password Spraying", ("TA0006",)),
        "T1110.004": ("Brute Force: Credential Stuffing", ("TA0006",)),
        "T1539": ("Steal Web Session Cookie", ("TA0006",)),
        "T1550.004": ("Use Alternate Authentication Material: Web Session Cookie", ("TA0005",)),
        "T1621": ("Multi-Factor Authentication Request Generation", ("TA0006",)),
        "T1567": ("Exfiltration Over Web Service", ("TA0010",)),
        "T1119": ("Automated Collection", ("TA0009",)),
        "T1526": ("Cloud Service Discovery", ("TA0007",)),
    }
)


@dataclass(frozen=True, slots=True)
class AttackMapping:
    """The tactics and techniques (ATT&CK ids) one detector's anomalies carry."""

    tactics: tuple[str, ...]
    techniques: tuple[str, ...]


def _row(techniques: Sequence[str], tactics: Sequence[str] = ()) -> AttackMapping:
    if not tactics:
        tactics = tuple(
            dict.fromkeys(t for tech in techniques for t in TECHNIQUES.get(tech, ("", ()))[1])
        )
    return AttackMapping(tuple(tactics), tuple(techniques))


# Logging in unlike oneself: a valid account in someone else's hands.
_ACCOUNT = _row(("T1078",), ("TA0001", "TA0003"))

TABLE: Mapping[str, AttackMapping] = MappingProxyType(
    {
        "login_time": _ACCOUNT,
        "login_frequency": _ACCOUNT,
        "new_country": _ACCOUNT,
        "new_device": _ACCOUNT,
        "new_ip": _ACCOUNT,
        "impossible_travel": _ACCOUNT,
        "account_takeover": _ACCOUNT,
        "dormant_account": _ACCOUNT,
        # Several weak signals in one burst of activity (new network, device,
        # country, endpoints no peer uses): the takeover of a valid account.
        "session_risk": _ACCOUNT,
        # A session that lasts unlike the user's: someone keeping access.
        "session_duration": _row(("T1078",), ("TA0003",)),
        "failed_login_burst": _row(("T1110.001",)),
        "password_spraying": _row(("T1110.003",)),
        "credential_stuffing": _row(("T1110.004",)),
        "threshold_rules": _row(("T1110",)),
        "session_hijack": _row(("T1539", "T1550.004"), ("TA0006", "TA0005")),
        "mfa_fatigue": _row(("T1621",)),
        "data_volume": _row(("T1567",)),
        "sustained_volume": _row(("T1567",)),
        "api_rate": _row(("T1119",)),
        "api_new_endpoint": _row(("T1526",)),
        "api_error_rate": _row(("T1526",)),
        # Endpoints the user's peers never call (admin APIs): a valid account
        # used beyond its role.
        "peer_endpoint": _row(("T1078",), ("TA0004",)),
        # Model-based detectors see "unlike the user" without saying how.
        "isolation_forest": _ACCOUNT,
        "distribution_shift": _ACCOUNT,
    }
)

DEFAULT = _ACCOUNT


def from_override(override: Iterable[str]) -> AttackMapping:
    """A detector's `attack` attribute as a mapping: ids starting with "TA"
    are tactics, the others techniques."""
    items = [str(x).strip() for x in override if str(x).strip()]
    tactics = tuple(x for x in items if x.upper().startswith("TA"))
    techniques = tuple(x for x in items if not x.upper().startswith("TA"))
    return _row(techniques, tactics)


def attack_for(detector: str, override: Iterable[str] | None = None) -> AttackMapping:
    """The mapping of a detector: its override, else its table row, else DEFAULT."""
    if override is not None:
        return from_override(override)
    return TABLE.get(detector, DEFAULT)


def tactic_name(tactic_id: str) -> str:
    return TACTICS.get(tactic_id, "")


def technique_name(technique_id: str) -> str:
    entry = TECHNIQUES.get(technique_id)
    return entry[0] if entry else ""


def parse_tactic(value: str) -> str:
    """A tactic filter as an id: accepts "TA0001", "Initial Access" or
    "initial-access" (any case). Raises ValueError for an unknown one."""
    text = value.strip()
    if text.upper() in TACTICS:
        return text.upper()
    wanted = text.lower().replace("-", " ").replace("_", " ")
    for tactic_id, name in TACTICS.items():
        if name.lower() == wanted:
            return tactic_id
    raise ValueError(
        f"unknown ATT&CK tactic {value[:64]!r}; expected an id such as TA0001 or a name such as "
        f"initial-access"
    )


def describe(techniques: Iterable[str]) -> str:
    """For explanations and exports: "T1078 Valid Accounts; T1539 ..."."""
    return "; ".join(f"{t} {technique_name(t)}".strip() for t in techniques)
