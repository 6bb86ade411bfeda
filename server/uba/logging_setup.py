"""The server's own logging set-up: one event per line on stderr, plain or
JSON. (The users' activity log is uba.domain.logs.)"""

from __future__ import annotations

import json
import logging
import sys
import time

from uba.observability.tracing import trace_id


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts (UTC), level, logger, msg, exc, and
    trace_id when the record was logged inside a traced span."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if tid := trace_id():
            entry["trace_id"] = tid
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(level: str = "info", as_json: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if as_json:
        handler.setFormatter(JsonFormatter())
    else:
        formatter = logging.Formatter(
            "%(asctime)s.%(msecs)03dZ %(levelname)s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S"
        )
        formatter.converter = time.gmtime
        handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Migrations narrate every step at INFO; only their problems matter here.
    logging.getLogger("alembic").setLevel(max(root.level, logging.WARNING))
