"""A chat message for a Slack-compatible incoming webhook (Slack; Mattermost
and Rocket.Chat read the same `text`, and Slack's `blocks`).

`text` is the notification's fallback (what a phone shows); `blocks` are a
header, a section with the facts as fields and a context line with the time
(and a link when a base URL is configured). Every value from an alert or an
incident is escaped (`&`, `<`, `>`), so a user name or a reason can neither
mention a channel nor forge a link.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from uba.delivery import envelope as env
from uba.delivery.formats.options import DEFAULT, RenderOptions
from uba.delivery.formats.uba_json import dumps

CONTENT_TYPE = "application/json"

# Slack's limits: header text 150 characters, a section text 3000 and a
# field 2000 (ours are short: names, ids, numbers), at most 10 fields;
# `text` is kept to what a notification shows.
HEADER_LIMIT = 150
SECTION_LIMIT = 2000  # before escaping, which may lengthen it
TEXT_LIMIT = 300

SEVERITY_MARK = {"LOW": "🔵", "MEDIUM": "🟡", "HIGH": "🟠", "CRITICAL": "🔴"}
_CHANGES = {
    env.ALERT_CREATED: "New alert",
    env.ALERT_UPDATED: "Alert updated",
    env.INCIDENT_CREATED: "New incident",
    env.INCIDENT_UPDATED: "Incident updated",
}


def escape(text: object) -> str:
    """Slack's three control characters, as its formatting reference asks."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def render(envelope: env.Envelope, options: RenderOptions = DEFAULT) -> bytes:
    return dumps(message(envelope, options))


def message(envelope: env.Envelope, options: RenderOptions = DEFAULT) -> dict[str, Any]:
    what = env.validate(envelope)
    when = env.format_time(env.parse_time(envelope["timestamp"]))
    if what == "test":
        text = env.message(envelope) or "uba test notification"
        return {
            "text": escape(_cut(text, TEXT_LIMIT)),
            "blocks": [
                _header("uba test notification"),
                _section(escape(text), []),
                _context(when, ""),
            ],
        }
    item = env.subject(envelope)
    sev = env.severity(item)
    title = str(item.get("title", "")) or what
    change = _change(envelope, item)
    link = options.link(what, env.subject_id(envelope))
    if what == "alert":
        users = [str(item.get("userId", ""))]
        detail = str(item.get("reason", ""))
        fields = [
            ("User", escape(users[0])),
            ("Severity", f"{SEVERITY_MARK.get(sev, '')} {sev or 'UNKNOWN'}".strip()),
            ("Detector", f"`{escape(item.get('detector', ''))}`"),
            ("User risk", f"{env.integer(item, 'userRisk')}/100"),
        ]
    else:
        users = env.strings(item, "userIds")
        detail = "; ".join(
            f"{s.get('title') or s.get('detector', '')} ({env.severity(s)})"
            for s in item.get("signals") or []
        )
        entity = str(item.get("entityId", ""))
        by_address = env.entity_kind(item) == "SOURCE_ADDRESS"
        fields = [
            ("Source address" if by_address else "User", escape(entity)),
            ("Severity", f"{SEVERITY_MARK.get(sev, '')} {sev or 'UNKNOWN'}".strip()),
            ("Score", f"{round(env.number(item, 'score'))}/100"),
            ("Users", escape(_list(users, 5))),
        ]
    tactics = [n or i for i, n in env.attack_pairs(item, "tactics", "tacticId")]
    if tactics:
        fields.append(("Tactics", escape(", ".join(tactics))))
    if env.status(item) != "OPEN":
        state = env.status(item).lower()
        if env.resolution(item):
            state += f" ({env.resolution(item).lower().replace('_', ' ')})"
        fields.append(("Status", escape(state)))
    subject = users[0] if what == "alert" else str(item.get("entityId", ""))
    text = f"{change}: {sev or 'UNKNOWN'} {title} ({subject})"
    return {
        "text": escape(_cut(text, TEXT_LIMIT)),
        "blocks": [
            _header(f"{change}: {title}"),
            _section(escape(_cut(detail, SECTION_LIMIT)), fields),
            _context(when, link),
        ],
    }


def _change(envelope: env.Envelope, item: Mapping[str, Any]) -> str:
    if env.status(item) == "RESOLVED" and not env.is_created(envelope):
        return f"{env.kind(envelope).capitalize()} resolved"
    return _CHANGES[str(envelope["type"])]


def _header(text: str) -> dict[str, Any]:
    # plain_text shows its characters as they are: no escaping there.
    return {"type": "header", "text": {"type": "plain_text", "text": _cut(text, HEADER_LIMIT)}}


def _section(text: str, fields: list[tuple[str, str]]) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "section", "text": {"type": "mrkdwn", "text": text or " "}}
    if fields:
        block["fields"] = [
            {"type": "mrkdwn", "text": f"*{name}*\n{value}"} for name, value in fields[:10]
        ]
    return block


def _context(when: str, link: str) -> dict[str, Any]:
    elements = [{"type": "mrkdwn", "text": when}]
    if link:
        # The link's own `<`, `>` and `|` are percent-encoded by the
        # options; `&` in a URL is escaped like any text.
        elements.append({"type": "mrkdwn", "text": f"<{escape(link)}|Open in uba>"})
    return {"type": "context", "elements": elements}


def _list(items: list[str], limit: int) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
