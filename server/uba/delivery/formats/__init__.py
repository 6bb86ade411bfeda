"""Payload formats by name: each renders a notification envelope as the
bytes a destination receives, with their content type.

    uba    the envelope itself as JSON (default)
    ocsf   OCSF 1.5.0 Detection Finding (class 2004) JSON
    cef    one ArcSight CEF:0 line (frame it with cef.syslog_frame for syslog)
    chat   Slack-compatible incoming-webhook JSON
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from uba.delivery import envelope as env
from uba.delivery.formats import cef, chat, ocsf, uba_json
from uba.delivery.formats.options import DEFAULT, RenderOptions

__all__ = ["DEFAULT_FORMAT", "FORMATS", "Format", "RenderOptions", "content_type", "render"]


@dataclass(frozen=True, slots=True)
class Format:
    name: str
    content_type: str
    render: Callable[[env.Envelope, RenderOptions], bytes]


DEFAULT_FORMAT = "uba"
FORMATS: Mapping[str, Format] = MappingProxyType(
    {
        "uba": Format("uba", uba_json.CONTENT_TYPE, uba_json.render),
        "ocsf": Format("ocsf", ocsf.CONTENT_TYPE, ocsf.render),
        "cef": Format("cef", cef.CONTENT_TYPE, cef.render),
        "chat": Format("chat", chat.CONTENT_TYPE, chat.render),
    }
)


def _get(name: str) -> Format:
    try:
        return FORMATS[name]
    except KeyError:
        known = ", ".join(FORMATS)
        raise ValueError(f"unknown payload format {name!r}; expected one of {known}") from None


def render(name: str, envelope: env.Envelope, options: RenderOptions = DEFAULT) -> bytes:
    """The envelope in format `name`. Raises ValueError for an unknown format
    and envelope.EnvelopeError for an envelope no format can render."""
    return _get(name).render(envelope, options)


def content_type(name: str) -> str:
    return _get(name).content_type
