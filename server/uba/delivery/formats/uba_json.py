"""The envelope itself as JSON: uba's own format and the default."""

from __future__ import annotations

import json

from uba.delivery import envelope as env
from uba.delivery.formats.options import DEFAULT, RenderOptions

CONTENT_TYPE = "application/json"


def dumps(document: object) -> bytes:
    """Compact UTF-8 JSON, the bytes every JSON format sends and signs."""
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def render(envelope: env.Envelope, options: RenderOptions = DEFAULT) -> bytes:
    env.validate(envelope)
    return dumps(envelope)
