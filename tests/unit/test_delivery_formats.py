"""Payload formats of alert and incident delivery: what a receiver parses.

The envelopes are built as the delivery worker builds them (domain objects ->
the API's converters -> MessageToDict), so the formats meet the true JSON
mapping: int64 values as strings, enums by name, defaults left out."""

from __future__ import annotations

import copy
import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from uba.delivery import envelope as env
from uba.delivery import samples
from uba.delivery.formats import FORMATS, RenderOptions, cef, chat, content_type, ocsf, render
from uba.domain.alerts import AlertStatus, Resolution
from uba.domain.anomalies import Severity
from uba.domain.incidents import EntityKind, IncidentStatus

SCHEMA = Path(__file__).parent.parent / "fixtures" / "ocsf" / "detection_finding-1.5.0.schema.json"
LINKS = RenderOptions(base_url="https://uba.example.com/ui/", product_version="9.8.7")
NASTY = "a|b\\c=d e=f\nsecond line\r\n<!channel> & <https://evil.example|click> São"


def alert_env(created: bool = True, anomalies: bool = True, **changes) -> env.EnvelopeDict:
    return env.alert_envelope(
        samples.alert_json(samples.new_country_alert(**changes)),
        [samples.anomaly_json(samples.new_country_anomaly())] if anomalies else [],
        created=created,
        timestamp=samples.T0,
    )


def incident_env(created: bool = True, **changes) -> env.EnvelopeDict:
    return env.incident_envelope(
        samples.incident_json(samples.spraying_incident(**changes)),
        created=created,
        timestamp=samples.T0,
    )


# -- the envelope ------------------------------------------------------------------


def test_sample_envelopes_have_the_json_mappings_shape():
    envelopes = samples.sample_envelopes()
    assert {e["type"] for e in envelopes.values()} == env.TYPES
    created = envelopes["alert.created"]
    alert = created["data"]["alert"]
    # What the formats must cope with: int64 as text, enum names, no defaults.
    assert alert["anomalyCount"] == "1" and alert["seq"] == "4711"
    assert alert["severity"] == "SEVERITY_HIGH" and "resolution" not in alert
    assert env.integer(alert, "anomalyCount") == 1 and env.severity(alert) == "HIGH"
    assert env.anomalies(created)[0]["baselineObservations"] == "412"
    for e in envelopes.values():
        assert env.validate(e) == env.kind(e)
        assert env.parse_time(e["timestamp"]).tzinfo is UTC


def test_a_new_envelope_gets_a_uuid7_id_and_the_current_time():
    before = datetime.now(UTC).replace(microsecond=0)
    e = env.test_envelope()
    assert re.fullmatch(
        r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", e["id"]
    )
    assert before <= env.parse_time(e["timestamp"]) <= datetime.now(UTC)


@pytest.mark.parametrize(
    "broken",
    [
        {"type": "test", "timestamp": "2026-03-02T03:12:07Z", "data": {}},
        {"id": "x", "type": "alert.deleted", "timestamp": "2026-03-02T03:12:07Z", "data": {}},
        {"id": "x", "type": "test", "timestamp": "2026-03-02 03:12", "data": {}},
        {"id": "x", "type": "alert.created", "timestamp": "2026-03-02T03:12:07Z", "data": {}},
    ],
)
def test_every_format_refuses_a_broken_envelope(broken):
    for name in FORMATS:
        with pytest.raises(env.EnvelopeError):
            render(name, broken)


def test_times_convert_to_epoch_milliseconds_and_back():
    moment = datetime(2026, 3, 2, 3, 12, 7, 250000, tzinfo=UTC)
    assert env.millis(moment) == 1772421127250
    assert env.format_time(moment) == "2026-03-02T03:12:07.250Z"
    assert env.parse_time("2026-03-02T04:12:07.250+01:00") == moment


# -- registry and uba JSON ------------------------------------------------------------


def test_the_registry_renders_every_sample_in_every_format():
    assert set(FORMATS) == {"uba", "ocsf", "cef", "chat"}
    for name in FORMATS:
        for e in samples.sample_envelopes().values():
            assert render(name, e, LINKS)
    assert content_type("uba") == content_type("ocsf") == "application/json"
    assert content_type("cef").startswith("text/plain")
    with pytest.raises(ValueError, match="unknown payload format"):
        render("xml", env.test_envelope())


def test_uba_json_is_the_envelope_compact_in_utf8():
    e = alert_env(note="São Paulo")
    body = render("uba", e)
    assert json.loads(body) == e
    assert "São".encode() in body  # UTF-8, not \u escapes
    assert b'": ' not in body and b'", "' not in body and b"\n" not in body  # compact


# -- OCSF ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def validator():
    jsonschema = pytest.importorskip("jsonschema")
    return jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text()))


def findings():
    yield from samples.sample_envelopes().values()
    yield alert_env(created=False, status=AlertStatus.ACKNOWLEDGED, acknowledged_by="dana")
    yield incident_env(
        entity_kind=EntityKind.USER,
        entity_id="alice@example.com",
        user_ids=["alice@example.com"],
        source_ips=[],
        status=IncidentStatus.ACKNOWLEDGED,
        acknowledged_by="dana",
    )
    yield alert_env(title=NASTY, reason=NASTY, user_id=NASTY)


def test_every_finding_is_valid_ocsf_1_5_detection_finding(validator):
    for e in findings():
        for options in (RenderOptions(), LINKS):
            document = json.loads(render("ocsf", e, options))
            errors = [
                f"{list(x.absolute_path)}: {x.message}" for x in validator.iter_errors(document)
            ]
            assert not errors, (e["type"], errors)


def test_the_ocsf_schema_check_catches_wrong_names_and_values(validator):
    good = ocsf.finding(alert_env())
    assert validator.is_valid(good)
    for breaks in (
        lambda d: d.update(user={"uid": "alice"}),  # no top-level user in 2004
        lambda d: d.update(severity_id=7),
        lambda d: d["finding_info"].pop("uid"),
        lambda d: d["finding_info"]["analytic"].pop("type_id"),
        lambda d: d["finding_info"]["attacks"].append({"version": "15"}),
        lambda d: d["anomaly_analyses"][0]["anomalies"][0].pop("observations"),
        lambda d: d["metadata"].pop("version"),
        lambda d: d.update(time="2026-03-02T03:12:07Z"),
    ):
        broken = copy.deepcopy(good)
        breaks(broken)
        assert not validator.is_valid(broken)


def test_ocsf_class_activity_and_type_follow_the_change():
    created = ocsf.finding(alert_env())
    assert (created["class_uid"], created["category_uid"]) == (2004, 2)
    assert (created["activity_id"], created["type_uid"], created["status_id"]) == (1, 200401, 1)
    assert created["is_alert"] is True
    acked = ocsf.finding(alert_env(created=False, status=AlertStatus.ACKNOWLEDGED))
    assert (acked["activity_id"], acked["type_uid"], acked["status"]) == (2, 200402, "In Progress")
    for resolution, status in (
        (Resolution.BENIGN, (3, "Suppressed")),
        (Resolution.FALSE_POSITIVE, (3, "Suppressed")),
        (Resolution.TRUE_POSITIVE, (4, "Resolved")),
    ):
        closed = ocsf.finding(
            alert_env(created=False, status=AlertStatus.RESOLVED, resolution=resolution)
        )
        assert (closed["activity_id"], closed["type_uid"]) == (3, 200403)
        assert (closed["status_id"], closed["status"]) == status
        assert closed["is_alert"] is False


@pytest.mark.parametrize(
    "severity, expected",
    [
        (Severity.LOW, (2, "Low")),
        (Severity.MEDIUM, (3, "Medium")),
        (Severity.HIGH, (4, "High")),
        (Severity.CRITICAL, (5, "Critical")),
    ],
)
def test_ocsf_severity_maps_from_uba_severity(severity, expected):
    finding = ocsf.finding(alert_env(severity=severity))
    assert (finding["severity_id"], finding["severity"]) == expected


def test_ocsf_finding_info_carries_the_alert_and_its_evidence():
    e = alert_env()
    finding = ocsf.finding(e, LINKS)
    info = finding["finding_info"]
    assert info["uid"] == e["data"]["alert"]["alertId"]
    assert info["title"] == "Login from a new country"
    assert info["desc"].startswith("first login from BR")
    assert info["analytic"] == {
        "uid": "new_country",
        "name": "new_country",
        "type_id": 2,
        "type": "Behavioral",
        "version": "1",
    }
    assert info["first_seen_time"] == env.millis(samples.T0)
    assert info["src_url"] == (
        "https://uba.example.com/ui/alerts/019c9f2a-6b10-7000-8000-00000000b001"
    )
    related = {r["uid"]: r["type"] for r in info["related_events"]}
    assert related == {
        "019c9f2a-6b10-7000-8000-00000000a001": "anomaly",
        "evt-20260302-031207-alice": "event",
    }
    assert finding["evidences"] == [
        {
            "uid": "evt-20260302-031207-alice",
            "name": "event",
            "user": {"uid": "alice@example.com", "name": "alice@example.com"},
        }
    ]
    assert (finding["risk_score"], finding["risk_level_id"], finding["risk_level"]) == (
        64,
        3,
        "High",
    )
    meta = finding["metadata"]
    assert meta["uid"] == e["id"] and meta["version"] == "1.5.0"
    assert meta["product"] == {"name": "uba", "vendor_name": "uba project", "version": "9.8.7"}
    assert meta["correlation_uid"] == e["data"]["alert"]["incidentId"]
    assert meta["sequence"] == 4711


def test_ocsf_anomaly_analysis_shows_observed_against_the_baseline():
    (analysis,) = ocsf.finding(alert_env())["anomaly_analyses"]
    assert analysis["analysis_targets"] == [{"name": "alice@example.com", "type": "User Account"}]
    observed, *features = analysis["anomalies"]
    assert observed == {
        "observation_parameter": "new_country",
        "observation_type": "Frequency Analysis",
        "observed_pattern": "UNSEEN",
        "observations": [{"value": "BR"}],
    }
    assert {f["observation_parameter"]: f["observations"][0]["value"] for f in features} == {
        "known_countries": "2",
        "peers_using": "0",  # left out of the JSON mapping as a default, still shown
        "population_using": "1",
    }
    assert analysis["baselines"][0]["observations"] == [{"value": "DE, NL", "count": 412}]
    # An update without anomalies analyses nothing.
    assert "anomaly_analyses" not in ocsf.finding(alert_env(created=False, anomalies=False))


def test_ocsf_attacks_pair_each_technique_with_its_own_tactics():
    def pairs(tactics, techniques):
        finding = ocsf.finding(alert_env(tactics=tactics, techniques=techniques))
        return [
            (
                a.get("tactic", {}).get("uid"),
                a.get("technique", {}).get("uid"),
                a.get("sub_technique", {}).get("uid"),
            )
            for a in finding["finding_info"]["attacks"]
        ]

    assert pairs(["TA0001", "TA0003"], ["T1078"]) == [
        ("TA0001", "T1078", None),
        ("TA0003", "T1078", None),
    ]
    # session_hijack's row: each technique under its own tactic, not all four pairs.
    assert pairs(["TA0006", "TA0005"], ["T1539", "T1550.004"]) == [
        ("TA0006", "T1539", None),
        ("TA0005", "T1550", "T1550.004"),
    ]
    # A row that places a technique under another tactic keeps the row's word.
    assert pairs(["TA0004"], ["T1078"]) == [("TA0004", "T1078", None)]
    assert pairs(["TA0010"], []) == [("TA0010", None, None)]
    spraying = ocsf.finding(incident_env())["finding_info"]["attacks"]
    assert spraying == [
        {
            "tactic": {"uid": "TA0006", "name": "Credential Access"},
            "technique": {"uid": "T1110", "name": "Brute Force"},
            "sub_technique": {"uid": "T1110.003", "name": "Password Spraying"},
        }
    ]


def test_ocsf_incident_applies_the_incident_profile():
    e = incident_env(
        created=False,
        status=IncidentStatus.RESOLVED,
        resolution=Resolution.TRUE_POSITIVE,
        acknowledged_by="dana",
    )
    finding = ocsf.finding(e, LINKS)
    assert finding["metadata"]["profiles"] == ["incident"]
    assert (finding["activity_id"], finding["status_id"]) == (3, 4)
    assert (finding["verdict_id"], finding["verdict"]) == (2, "True Positive")
    assert (finding["priority_id"], finding["priority"]) == (3, "High")
    assert finding["assignee"] == {"name": "dana"}
    assert finding["src_url"].endswith("/incidents/019c9f2a-6b10-7000-8000-00000000c002")
    assert finding["risk_score"] == 70
    info = finding["finding_info"]
    assert info["types"] == ["incident", "source_address"]
    assert info["analytic"]["related_analytics"][0]["uid"] == "password_spraying"
    assert info["related_events"][0]["uid"] == "019c9f2a-6b10-7000-8000-00000000b002"
    assert {"src_endpoint": {"ip": "203.0.113.8"}} in finding["evidences"]
    assert {"user": {"uid": "carol@example.com", "name": "carol@example.com"}} in finding[
        "evidences"
    ]


def test_ocsf_test_message_is_an_informational_finding():
    e = env.test_envelope("hello from uba", timestamp=samples.T0)
    finding = ocsf.finding(e)
    assert (finding["severity_id"], finding["finding_info"]["uid"]) == (1, e["id"])
    assert finding["message"] == "hello from uba"


# -- CEF --------------------------------------------------------------------------------


def parse_cef(text: str) -> tuple[list[str], dict[str, str]]:
    """A strict reader of the format: seven header fields (escapes \\| and
    \\\\ only), then key=value pairs split on unescaped '='."""
    assert text.startswith("CEF:")
    header: list[str] = []
    current: list[str] = []
    i = 4
    while len(header) < 7:
        c = text[i]
        if c == "\\":
            assert text[i + 1] in "|\\", f"bad header escape at {i}"
            current.append(text[i + 1])
            i += 2
        elif c == "|":
            header.append("".join(current))
            current = []
            i += 1
        else:
            assert c not in "\r\n"
            current.append(c)
            i += 1
    rest = text[i:]
    assert "\n" not in rest and "\r" not in rest
    equals, j = [], 0
    while j < len(rest):
        if rest[j] == "\\":
            j += 2
            continue
        if rest[j] == "=":
            equals.append(j)
        j += 1
    spans = [(rest.rfind(" ", 0, p) + 1, p) for p in equals]
    values: dict[str, str] = {}
    for n, (start, p) in enumerate(spans):
        end = spans[n + 1][0] - 1 if n + 1 < len(spans) else len(rest)
        key = rest[start:p]
        assert re.fullmatch(r"[A-Za-z0-9_]+", key) and key not in values
        values[key] = re.sub(
            r"\\(.)", lambda m: {"n": "\n", "r": "\r"}.get(m[1], m[1]), rest[p + 1 : end]
        )
    return header, values


@pytest.mark.parametrize(
    "raw, escaped",
    [
        ("plain", "plain"),
        ("a|b", "a\\|b"),
        ("back\\slash", "back\\\\slash"),
        ("\\|", "\\\\\\|"),
        ("two\nlines", "two lines"),
        ("crlf\r\nend", "crlf end"),
        ("equals=fine", "equals=fine"),
    ],
)
def test_cef_header_escaping(raw, escaped):
    assert cef.escape_header(raw) == escaped


@pytest.mark.parametrize(
    "raw, escaped",
    [
        ("plain", "plain"),
        ("a=b", "a\\=b"),
        ("back\\slash", "back\\\\slash"),
        ("\\=", "\\\\\\="),
        ("two\nlines", "two\\nlines"),
        ("cr\rhere", "cr\\rhere"),
        ("crlf\r\nend", "crlf\\nend"),
        ("pipe|stays", "pipe|stays"),
    ],
)
def test_cef_extension_value_escaping(raw, escaped):
    assert cef.escape_value(raw) == escaped


def test_cef_extension_leaves_out_empty_values_and_refuses_bad_keys():
    assert cef.extension([("a", "1"), ("b", ""), ("c", None), ("d", "x  ")]) == "a=1 d=x"
    with pytest.raises(ValueError):
        cef.extension([("bad key", "1")])
    with pytest.raises(ValueError):
        cef.line("sig", "name", 11, [], version="1")


def test_cef_alert_line_round_trips_through_a_parser():
    e = alert_env(title=NASTY, reason=NASTY, user_id=NASTY, detector="new|country")
    header, ext = parse_cef(cef.cef_line(e, LINKS))
    assert header == [
        "0",
        "uba",
        "uba",
        "9.8.7",
        "new|country",
        NASTY.replace("\r\n", " ").replace("\n", " "),
        "8",
    ]
    assert ext["msg"] == NASTY.replace("\r\n", "\n")
    assert ext["duser"] == NASTY.replace("\r\n", "\n")
    assert ext["rt"] == str(env.millis(samples.T0))
    assert ext["start"] == ext["end"] == str(env.millis(samples.T0))
    assert ext["externalId"] == "019c9f2a-6b10-7000-8000-00000000b001"
    assert (ext["cs1Label"], ext["cs1"]) == ("tactics", "TA0001 Initial Access,TA0003 Persistence")
    assert (ext["cs2Label"], ext["cs2"]) == ("techniques", "T1078 Valid Accounts")
    assert (ext["cs3Label"], ext["cs3"]) == ("incidentId", "019c9f2a-6b10-7000-8000-00000000c001")
    assert (ext["cn1Label"], ext["cn1"]) == ("userRisk", "64")
    assert (ext["cs6Label"], ext["cs6"]) == ("eventIds", "evt-20260302-031207-alice")
    assert (ext["act"], ext["cat"], ext["cs5"]) == ("alert.created", "alert", "open")
    assert ext["flexString1"] == e["id"]
    assert "outcome" not in ext and "src" not in ext


@pytest.mark.parametrize(
    "severity, cef_severity, syslog",
    [
        (Severity.LOW, "3", 5),
        (Severity.MEDIUM, "5", 4),
        (Severity.HIGH, "8", 3),
        (Severity.CRITICAL, "10", 2),
    ],
)
def test_cef_and_syslog_severity(severity, cef_severity, syslog):
    e = alert_env(severity=severity)
    assert parse_cef(cef.cef_line(e))[0][6] == cef_severity
    assert cef.syslog_severity(e) == syslog


def test_cef_incident_line_names_the_source_and_the_users():
    e = incident_env(created=False, status=IncidentStatus.RESOLVED, resolution=Resolution.BENIGN)
    header, ext = parse_cef(cef.cef_line(e))
    assert header[4] == "incident:source_address"
    assert ext["src"] == "203.0.113.7" and "duser" not in ext
    assert (ext["cs4Label"], ext["cs4"]) == ("users", "bob@example.com,carol@example.com")
    assert (ext["cn1Label"], ext["cn1"], ext["cnt"]) == ("incidentScore", "70", "14")
    assert (ext["outcome"], ext["cs5"]) == ("benign", "resolved")
    assert "cs6" not in ext and "cs6Label" not in ext


def parse_syslog_stream(stream: bytes) -> list[dict]:
    """RFC 6587 octet counting, then the RFC 5424 header."""
    messages = []
    while stream:
        length, _, rest = stream.partition(b" ")
        assert length.isdigit() and not length.startswith(b"0")
        message, stream = rest[: int(length)], rest[int(length) :]
        assert len(message) == int(length)
        head = re.match(rb"<(\d{1,3})>1 (\S+) (\S+) (\S+) (\S+) (\S+) - ", message)
        assert head, message[:80]
        pri = int(head[1])
        messages.append(
            {
                "facility": pri // 8,
                "severity": pri % 8,
                "timestamp": head[2].decode(),
                "hostname": head[3].decode(),
                "app_name": head[4].decode(),
                "procid": head[5].decode(),
                "msgid": head[6].decode(),
                "msg": message[head.end() :].decode(),
            }
        )
    return messages


def test_syslog_frames_parse_back_from_one_tcp_stream():
    sent = [alert_env(note="São Paulo", reason=NASTY), incident_env(), env.test_envelope()]
    stream = b"".join(cef.envelope_frame(e, "uba-1.example.net", procid="4242") for e in sent)
    received = parse_syslog_stream(stream)
    assert [m["msg"] for m in received] == [cef.cef_line(e) for e in sent]
    first = received[0]
    assert (first["facility"], first["severity"]) == (cef.FACILITY_AUTHPRIV, 3)
    assert first["timestamp"] == "2026-03-02T03:12:07.250Z"
    assert (first["hostname"], first["app_name"], first["procid"], first["msgid"]) == (
        "uba-1.example.net",
        "uba",
        "4242",
        "alert.created",
    )
    assert received[2]["severity"] == 6 and received[2]["msgid"] == "test"


def test_syslog_header_fields_are_printable_ascii_and_bounded():
    frame = cef.syslog_frame(
        "CEF:0|x",
        "host name é",
        app_name="",
        msgid="m" * 40,
        severity=2,
        facility=20,
        timestamp=datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
    )
    (message,) = parse_syslog_stream(frame)
    assert message["hostname"] == "host_name__" and message["app_name"] == "-"
    assert message["msgid"] == "m" * 32 and (message["facility"], message["severity"]) == (20, 2)
    assert message["timestamp"] == "2026-01-02T03:04:05.678Z"
    with pytest.raises(ValueError):
        cef.syslog_message("x", hostname="h", severity=8)


# -- chat ---------------------------------------------------------------------------------


def all_texts(payload: dict) -> list[str]:
    texts = [payload["text"]]
    for block in payload["blocks"]:
        if "text" in block:
            texts.append(block["text"]["text"])
        texts += [f["text"] for f in block.get("fields", [])]
        texts += [el["text"] for el in block.get("elements", [])]
    return texts


def test_chat_alert_message_has_the_facts_in_fields():
    payload = chat.message(alert_env(), LINKS)
    header, section, context = payload["blocks"]
    assert header == {
        "type": "header",
        "text": {"type": "plain_text", "text": "New alert: Login from a new country"},
    }
    assert payload["text"] == "New alert: HIGH Login from a new country (alice@example.com)"
    fields = [f["text"] for f in section["fields"]]
    assert fields[0] == "*User*\nalice@example.com"
    assert "*Severity*\n🟠 HIGH" in fields and "*Detector*\n`new_country`" in fields
    assert "*User risk*\n64/100" in fields and "*Tactics*\nInitial Access, Persistence" in fields
    assert context["elements"][0]["text"] == "2026-03-02T03:12:07.250Z"
    assert context["elements"][1]["text"] == (
        "<https://uba.example.com/ui/alerts/019c9f2a-6b10-7000-8000-00000000b001|Open in uba>"
    )
    assert len(chat.message(alert_env())["blocks"][2]["elements"]) == 1  # no base URL, no link


def test_chat_escapes_what_could_mention_or_link():
    payload = chat.message(alert_env(title=NASTY, reason=NASTY, user_id=NASTY))
    mrkdwn = all_texts(payload)[:1] + all_texts(payload)[2:]  # all but the plain_text header
    for text in mrkdwn:
        assert "<!channel>" not in text and "<https://evil" not in text
        assert not re.search(r"&(?!amp;|lt;|gt;)", text)
    assert (
        "&lt;!channel&gt; &amp; &lt;https://evil.example|click&gt;"
        in payload["blocks"][1]["text"]["text"]
    )
    assert len(payload["blocks"][0]["text"]["text"]) <= chat.HEADER_LIMIT


def test_chat_keeps_to_slacks_limits_with_long_values():
    long = "x" * 5000
    payload = chat.message(alert_env(title=long, reason=long), LINKS)
    assert len(payload["blocks"][0]["text"]["text"]) <= 150
    assert len(payload["blocks"][1]["text"]["text"]) <= 3000
    assert len(payload["text"]) <= chat.TEXT_LIMIT
    assert len(payload["blocks"][1]["fields"]) <= 10


def test_chat_incident_and_resolution():
    payload = chat.message(
        incident_env(created=False, status=IncidentStatus.RESOLVED, resolution=Resolution.BENIGN)
    )
    assert payload["text"].startswith("Incident resolved: HIGH 203.0.113.7")
    fields = [f["text"] for f in payload["blocks"][1]["fields"]]
    assert "*Source address*\n203.0.113.7" in fields and "*Score*\n70/100" in fields
    assert "*Users*\nbob@example.com, carol@example.com" in fields
    assert "*Status*\nresolved (benign)" in fields


def test_chat_test_message():
    payload = chat.message(env.test_envelope("a & b", timestamp=samples.T0))
    assert payload["text"] == "a &amp; b"
    assert payload["blocks"][0]["text"]["text"] == "uba test notification"
