"""OCSF Detection Finding (class 2004, category 2 Findings), schema 1.5.0:
the first version with `anomaly_analyses`, which carries what uba explains
best (observed against the user's baseline).

One finding per envelope: an alert or an incident (its `finding_info.uid`
is the alert or incident id, so a SIEM sees Create, Update, ... Close of
one finding); a test message is an Informational finding of its own.
Incidents apply the `incident` profile (priority, verdict, assignee); the
affected user goes into `resources`, `evidences` and the analysis targets,
since class 2004 has no top-level user in 1.5.0. docs/integrations.md has
the whole mapping.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from uba.delivery import envelope as env
from uba.delivery.formats.options import DEFAULT, RenderOptions
from uba.delivery.formats.uba_json import dumps
from uba.domain import attack as attack_table

CONTENT_TYPE = "application/json"
OCSF_VERSION = "1.5.0"
CLASS_UID = 2004
CLASS_NAME = "Detection Finding"
CATEGORY_UID = 2
CATEGORY_NAME = "Findings"
PRODUCT_NAME = "uba"
VENDOR_NAME = "uba project"

ACTIVITY_CREATE, ACTIVITY_UPDATE, ACTIVITY_CLOSE = 1, 2, 3
ACTIVITIES = {ACTIVITY_CREATE: "Create", ACTIVITY_UPDATE: "Update", ACTIVITY_CLOSE: "Close"}

# uba severity -> severity_id; 1 Informational is the test message's.
SEVERITY_IDS = {"LOW": 2, "MEDIUM": 3, "HIGH": 4, "CRITICAL": 5}
SEVERITIES = {0: "Unknown", 1: "Informational", 2: "Low", 3: "Medium", 4: "High", 5: "Critical"}

# status_id: a benign or false-positive resolution is what OCSF calls
# Suppressed ("reviewed, determined to be benign or a false positive").
STATUSES = {1: "New", 2: "In Progress", 3: "Suppressed", 4: "Resolved"}
_SUPPRESSING = frozenset({"BENIGN", "FALSE_POSITIVE"})

# risk_level_id from a 0..100 score, in quarters.
RISK_LEVELS = {0: "Info", 1: "Low", 2: "Medium", 3: "High", 4: "Critical"}

# Incident profile.
PRIORITY_IDS = {"LOW": 1, "MEDIUM": 2, "HIGH": 3, "CRITICAL": 4}
PRIORITIES = {1: "Low", 2: "Medium", 3: "High", 4: "Critical"}
VERDICT_IDS = {"FALSE_POSITIVE": 1, "TRUE_POSITIVE": 2, "BENIGN": 5}
VERDICTS = {1: "False Positive", 2: "True Positive", 5: "Benign"}

# analytic.type_id: 1 Rule, 2 Behavioral, 3 Statistical, 4 Learning (ML/DL),
# 99 Other. Every uba detector judges an account against a baseline, so a
# detector not listed (a plug-in) reads as Behavioral.
ANALYTIC_TYPES = {1: "Rule", 2: "Behavioral", 3: "Statistical", 4: "Learning (ML/DL)", 99: "Other"}
DETECTOR_ANALYTIC = {
    "failed_login_burst": 1,
    "password_spraying": 1,
    "credential_stuffing": 1,
    "threshold_rules": 1,
    "impossible_travel": 1,
    "mfa_fatigue": 1,
    "session_hijack": 1,
    "login_time": 3,
    "login_frequency": 3,
    "data_volume": 3,
    "sustained_volume": 3,
    "api_rate": 3,
    "api_error_rate": 3,
    "session_duration": 3,
    "distribution_shift": 3,
    "isolation_forest": 4,
}
DEFAULT_ANALYTIC = 2
# An incident's analytic: the correlation of its member alerts.
INCIDENT_ANALYTIC = "incident_correlation"

# anomaly_analyses: (observation_type, observed_pattern) by detector, in the
# vocabulary of OCSF's own examples; detectors not listed leave both out.
DETECTOR_ANALYSIS = {
    "login_time": ("Time Pattern Analysis", "UNUSUAL_TIME"),
    "new_country": ("Frequency Analysis", "UNSEEN"),
    "new_device": ("Frequency Analysis", "UNSEEN"),
    "new_ip": ("Frequency Analysis", "UNSEEN"),
    "api_new_endpoint": ("Frequency Analysis", "UNSEEN"),
    "peer_endpoint": ("Frequency Analysis", "RARE"),
    "login_frequency": ("Frequency Analysis", "FREQUENT"),
    "failed_login_burst": ("Frequency Analysis", "FREQUENT"),
    "mfa_fatigue": ("Frequency Analysis", "FREQUENT"),
    "api_rate": ("Volume Analysis", "SURGE"),
    "data_volume": ("Volume Analysis", "HIGH_VOLUME"),
    "sustained_volume": ("Volume Analysis", "HIGH_VOLUME"),
    "distribution_shift": ("Distribution Analysis", ""),
    "session_duration": ("Time Pattern Analysis", ""),
}

# Bounds on repeated parts, so one payload stays a few kB.
MAX_EVIDENCES = 50
MAX_RELATED = 100


def render(envelope: env.Envelope, options: RenderOptions = DEFAULT) -> bytes:
    return dumps(finding(envelope, options))


def finding(envelope: env.Envelope, options: RenderOptions = DEFAULT) -> dict[str, Any]:
    """The Detection Finding of an envelope, as a dict."""
    what = env.validate(envelope)
    if what == "test":
        return _test_finding(envelope, options)
    item = env.subject(envelope)
    activity = activity_id(envelope)
    sev = env.severity(item)
    severity_id = SEVERITY_IDS.get(sev, 0)
    status_id = status_id_of(item)
    risk = _risk(item, what)
    created_time = env.time_field(item, "createdAt")
    modified_time = env.time_field(item, "updatedAt")
    first, last = env.time_field(item, "firstSeenAt"), env.time_field(item, "lastSeenAt")
    link = options.link(what, env.subject_id(envelope))
    incident_id = str(item.get("incidentId", "")) if what == "alert" else env.subject_id(envelope)

    info: dict[str, Any] = {
        "uid": env.subject_id(envelope),
        "title": item.get("title", ""),
        "desc": item.get("reason", "") if what == "alert" else _incident_desc(item),
        "types": [what, str(item.get("detector", ""))]
        if what == "alert"
        else [what, env.entity_kind(item).lower()],
        "analytic": _alert_analytic(item, env.anomalies(envelope))
        if what == "alert"
        else _incident_analytic(item),
        "attacks": attacks(item) if what == "alert" else _incident_attacks(item),
        "first_seen_time": _ms(first),
        "last_seen_time": _ms(last),
        "created_time": _ms(created_time),
        "modified_time": _ms(modified_time),
        "related_events": _alert_related(envelope) if what == "alert" else _incident_related(item),
        "src_url": link,
    }
    result: dict[str, Any] = {
        "activity_id": activity,
        "activity_name": ACTIVITIES[activity],
        "category_uid": CATEGORY_UID,
        "category_name": CATEGORY_NAME,
        "class_uid": CLASS_UID,
        "class_name": CLASS_NAME,
        "type_uid": CLASS_UID * 100 + activity,
        "type_name": f"{CLASS_NAME}: {ACTIVITIES[activity]}",
        "time": env.millis(env.parse_time(envelope["timestamp"])),
        "severity_id": severity_id,
        "severity": SEVERITIES[severity_id],
        "status_id": status_id,
        "status": STATUSES[status_id],
        "is_alert": activity != ACTIVITY_CLOSE,
        "message": item.get("title", ""),
        "comment": item.get("note", ""),
        "count": env.integer(item, "anomalyCount"),
        "start_time": _ms(first),
        "end_time": _ms(last),
        "risk_score": risk,
        "risk_level_id": risk_level_id(risk),
        "risk_level": RISK_LEVELS[risk_level_id(risk)],
        "finding_info": info,
        "resources": [_user_resource(u) for u in _users(item, what)[:MAX_EVIDENCES]],
        "evidences": _evidences(envelope, item, what),
        "anomaly_analyses": [_anomaly_analysis(a) for a in env.anomalies(envelope)],
        "metadata": _metadata(envelope, options, incident_id, item),
    }
    if what == "incident":
        result.update(_incident_profile(item, link))
    return _prune(result)


# -- mappings ---------------------------------------------------------------------


def activity_id(envelope: env.Envelope) -> int:
    """Create for *.created; for an update, Close once resolved, else Update."""
    if env.is_created(envelope):
        return ACTIVITY_CREATE
    if env.status(env.subject(envelope)) == "RESOLVED":
        return ACTIVITY_CLOSE
    return ACTIVITY_UPDATE


def status_id_of(item: Mapping[str, Any]) -> int:
    status = env.status(item)
    if status == "ACKNOWLEDGED":
        return 2
    if status == "RESOLVED":
        return 3 if env.resolution(item) in _SUPPRESSING else 4
    return 1


def risk_level_id(score: int) -> int:
    """0 Info for 0; then Low, Medium, High, Critical by quarters of 0..100."""
    if score <= 0:
        return 0
    return min(1 + score // 25, 4)


def attacks(item: Mapping[str, Any]) -> list[dict[str, Any]]:
    """OCSF attack objects of one detector's tactics and techniques: one per
    (tactic, technique) pair. A technique pairs with the listed tactics it
    belongs to by ATT&CK (uba.domain.attack), or with all of them when it
    belongs to none (a detector's row may place it elsewhere); a tactic no
    technique took stands alone."""
    tactics = env.attack_pairs(item, "tactics", "tacticId")
    techniques = env.attack_pairs(item, "techniques", "techniqueId")
    out: list[dict[str, Any]] = []
    paired: set[str] = set()
    for technique_id, name in techniques:
        own = attack_table.TECHNIQUES.get(technique_id, ("", ()))[1]
        matching = [t for t in tactics if t[0] in own] or tactics
        for tactic in matching or [("", "")]:
            out.append(_attack(tactic, technique_id, name))
            paired.add(tactic[0])
    for tactic in tactics:
        if tactic[0] not in paired:
            out.append(_attack(tactic, "", ""))
    return out


def _attack(tactic: tuple[str, str], technique_id: str, name: str) -> dict[str, Any]:
    entry: dict[str, Any] = {}
    if tactic[0]:
        entry["tactic"] = {"uid": tactic[0], "name": tactic[1]}
    if technique_id:
        parent, _, sub = technique_id.partition(".")
        parent_name, _, sub_name = name.partition(": ")
        if sub:
            entry["technique"] = {
                "uid": parent,
                "name": parent_name if sub_name else attack_table.technique_name(parent),
            }
            entry["sub_technique"] = {"uid": technique_id, "name": sub_name or name}
        else:
            entry["technique"] = {"uid": technique_id, "name": name}
    return entry


def _incident_attacks(incident: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Pairs from each member signal (its detector's row), then whatever of
    the incident's own union no entry says yet (signals past the list's
    bound); an entry already said, or said more fully, is not repeated."""
    out: list[dict[str, Any]] = []
    for source in [*(incident.get("signals") or []), incident]:
        for entry in attacks(source):
            if not any(_covers(have, entry) for have in out):
                out.append(entry)
    return out


def _covers(have: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    return all(have.get(k) == v for k, v in new.items())


def _risk(item: Mapping[str, Any], what: str) -> int:
    if what == "alert":
        return max(0, min(env.integer(item, "userRisk"), 100))
    return max(0, min(round(env.number(item, "score")), 100))


def _alert_analytic(alert: Mapping[str, Any], anomalies: list[Mapping[str, Any]]) -> dict[str, Any]:
    return _analytic(
        str(alert.get("detector", "")),
        next((str(a["detectorVersion"]) for a in anomalies if a.get("detectorVersion")), ""),
    )


def _analytic(detector: str, version: str = "") -> dict[str, Any]:
    type_id = DETECTOR_ANALYTIC.get(detector, DEFAULT_ANALYTIC)
    return {
        "uid": detector,
        "name": detector,
        "type_id": type_id,
        "type": ANALYTIC_TYPES[type_id],
        "version": version,
    }


def _incident_analytic(incident: Mapping[str, Any]) -> dict[str, Any]:
    detectors = dict.fromkeys(str(s.get("detector", "")) for s in incident.get("signals") or [])
    return {
        "uid": INCIDENT_ANALYTIC,
        "name": INCIDENT_ANALYTIC,
        "type_id": 99,
        "type": "Correlation",
        "related_analytics": [_analytic(d) for d in detectors if d],
    }


def _incident_desc(incident: Mapping[str, Any]) -> str:
    """The member signals in one line: "Password spraying (HIGH, 14 anomalies); ..."."""
    parts = []
    for s in incident.get("signals") or []:
        count = env.integer(s, "anomalyCount")
        parts.append(f"{s.get('title') or s.get('detector', '')} ({env.severity(s)}, {count})")
    return "; ".join(parts)


def _alert_related(envelope: env.Envelope) -> list[dict[str, Any]]:
    """The anomalies of this change, then the events they concern."""
    out: list[dict[str, Any]] = []
    for a in env.anomalies(envelope):
        severity_id = SEVERITY_IDS.get(env.severity(a), 0)
        occurred = _ms(env.time_field(a, "occurredAt"))
        out.append(
            {
                "uid": str(a.get("anomalyId", "")),
                "type": "anomaly",
                "title": a.get("reason", ""),
                "severity_id": severity_id,
                "severity": SEVERITIES[severity_id],
                "first_seen_time": occurred,
                "created_time": _ms(env.time_field(a, "detectedAt")),
                "attacks": attacks(a),
            }
        )
    for a in env.anomalies(envelope):
        for event_id in env.strings(a, "eventIds"):
            out.append({"uid": event_id, "type": "event"})
    return out[:MAX_RELATED]


def _incident_related(incident: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Its member alerts, with their part in the story."""
    out = []
    for s in (incident.get("signals") or [])[:MAX_RELATED]:
        severity_id = SEVERITY_IDS.get(env.severity(s), 0)
        out.append(
            {
                "uid": str(s.get("alertId", "")),
                "type": "alert",
                "title": s.get("title", ""),
                "severity_id": severity_id,
                "severity": SEVERITIES[severity_id],
                "count": env.integer(s, "anomalyCount"),
                "first_seen_time": _ms(env.time_field(s, "firstSeenAt")),
                "last_seen_time": _ms(env.time_field(s, "lastSeenAt")),
                "attacks": attacks(s),
            }
        )
    return out


def _users(item: Mapping[str, Any], what: str) -> list[str]:
    if what == "alert":
        return [str(item.get("userId", ""))] if item.get("userId") else []
    users = env.strings(item, "userIds")
    if not users and env.entity_kind(item) == "USER" and item.get("entityId"):
        users = [str(item["entityId"])]
    return users


def _user(user_id: str) -> dict[str, Any]:
    return {"uid": user_id, "name": user_id}


def _user_resource(user_id: str) -> dict[str, Any]:
    return {"uid": user_id, "name": user_id, "type": "User"}


def _evidences(envelope: env.Envelope, item: Mapping[str, Any], what: str) -> list[dict]:
    """The events behind an alert's change (each with its user); an
    incident's users and, for a source address, its addresses."""
    out: list[dict[str, Any]] = []
    if what == "alert":
        user = _user(str(item.get("userId", "")))
        for a in env.anomalies(envelope):
            events = env.strings(a, "eventIds")
            out.extend({"uid": e, "name": "event", "user": user} for e in events)
        if not out and item.get("userId"):
            out.append({"user": user})
        return out[:MAX_EVIDENCES]
    if env.entity_kind(item) == "SOURCE_ADDRESS":
        addresses = env.strings(item, "sourceIps") or [str(item.get("entityId", ""))]
        out.extend({"src_endpoint": {"ip": ip}} for ip in addresses if ip)
    out.extend({"user": _user(u)} for u in _users(item, what))
    return out[:MAX_EVIDENCES]


def _anomaly_analysis(anomaly: Mapping[str, Any]) -> dict[str, Any]:
    """One anomaly: what was observed against what the baseline expected,
    and the features behind the decision."""
    detector = str(anomaly.get("detector", ""))
    observation_type, pattern = DETECTOR_ANALYSIS.get(detector, ("", ""))
    observed: dict[str, Any] = {
        "observation_parameter": detector,
        "observation_type": observation_type,
        "observed_pattern": pattern,
        "observations": [{"value": str(anomaly.get("observed", ""))}],
    }
    features = [
        {
            "observation_parameter": str(f.get("name", "")),
            "observations": [{"value": _number_text(f.get("value", 0.0))}],
        }
        for f in anomaly.get("features") or []
    ]
    baselines = []
    if anomaly.get("expected") or anomaly.get("baselineObservations"):
        baselines.append(
            {
                "observation_parameter": detector,
                "observation_type": observation_type,
                "observations": [
                    {
                        "value": str(anomaly.get("expected", "")),
                        "count": env.integer(anomaly, "baselineObservations"),
                    }
                ],
            }
        )
    return {
        "analysis_targets": [{"name": str(anomaly.get("userId", "")), "type": "User Account"}],
        "anomalies": [observed, *features],
        "baselines": baselines,
    }


def _number_text(value: object) -> str:
    number = float(value) if isinstance(value, int | float | str) else 0.0
    return str(int(number)) if number.is_integer() else repr(number)


def _metadata(
    envelope: env.Envelope, options: RenderOptions, incident_id: str, item: Mapping[str, Any]
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "version": OCSF_VERSION,
        "product": {"name": PRODUCT_NAME, "vendor_name": VENDOR_NAME, "version": options.version},
        "uid": str(envelope["id"]),
        "correlation_uid": incident_id,
        "event_code": str(envelope["type"]),
        "sequence": env.integer(item, "seq"),
    }
    if env.kind(envelope) == "incident":
        meta["profiles"] = ["incident"]
    return meta


def _incident_profile(incident: Mapping[str, Any], link: str) -> dict[str, Any]:
    out: dict[str, Any] = {"src_url": link}
    priority = PRIORITY_IDS.get(env.severity(incident))
    if priority:
        out["priority_id"], out["priority"] = priority, PRIORITIES[priority]
    verdict = VERDICT_IDS.get(env.resolution(incident))
    if verdict:
        out["verdict_id"], out["verdict"] = verdict, VERDICTS[verdict]
    if incident.get("acknowledgedBy"):
        out["assignee"] = {"name": str(incident["acknowledgedBy"])}
    return out


def _test_finding(envelope: env.Envelope, options: RenderOptions) -> dict[str, Any]:
    now = env.millis(env.parse_time(envelope["timestamp"]))
    text = env.message(envelope) or "uba test notification"
    return _prune(
        {
            "activity_id": ACTIVITY_CREATE,
            "activity_name": ACTIVITIES[ACTIVITY_CREATE],
            "category_uid": CATEGORY_UID,
            "category_name": CATEGORY_NAME,
            "class_uid": CLASS_UID,
            "class_name": CLASS_NAME,
            "type_uid": CLASS_UID * 100 + ACTIVITY_CREATE,
            "type_name": f"{CLASS_NAME}: {ACTIVITIES[ACTIVITY_CREATE]}",
            "time": now,
            "severity_id": 1,
            "severity": SEVERITIES[1],
            "status_id": 1,
            "status": STATUSES[1],
            "is_alert": False,
            "message": text,
            "finding_info": {
                "uid": str(envelope["id"]),
                "title": "uba test notification",
                "desc": text,
                "types": ["test"],
                "created_time": now,
            },
            "metadata": {
                "version": OCSF_VERSION,
                "product": {
                    "name": PRODUCT_NAME,
                    "vendor_name": VENDOR_NAME,
                    "version": options.version,
                },
                "uid": str(envelope["id"]),
                "event_code": env.TEST,
            },
        }
    )


def _ms(moment: Any) -> int | None:
    return env.millis(moment) if moment is not None else None


def _prune(value: Any) -> Any:
    """Leaves out what is unknown: None, "" and empty lists or objects (OCSF
    reads an absent attribute as unknown; an empty one would claim a value)."""
    if isinstance(value, dict):
        pruned = {k: _prune(v) for k, v in value.items()}
        return {k: v for k, v in pruned.items() if not _empty(v)}
    if isinstance(value, list):
        return [v for v in (_prune(x) for x in value) if not _empty(v)]
    return value


def _empty(value: Any) -> bool:
    return value is None or value == "" or (isinstance(value, list | dict) and not value)
