"""Structured logs: one JSON object per line, for every process netwarden runs.

Components log either plain messages or a JSON object as the message (`log.info(json.dumps({...}))`);
the formatter merges the latter into the line, so a shipper parses every line the same way. Library
loggers (werkzeug's access log, the kubernetes client, gunicorn) come out as JSON too.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import datetime, timezone
from typing import Any, TextIO


class JsonLogFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
        }
        message = record.getMessage()
        structured = _json_object(message)
        if structured is not None:
            payload.update(structured)
        else:
            payload["message"] = message
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


def _json_object(text: str) -> dict[str, Any] | None:
    if not text.startswith("{"):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def configure_json_logging(level: int | str = logging.INFO, stream: TextIO | None = None) -> None:
    """Route every logger through one JSON handler (replaces any earlier configuration)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonLogFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def log_json(event: str, level: str = "info", stream: TextIO | None = None, **fields: Any) -> None:
    """One JSON line without the logging machinery (for code that runs before logging is configured)."""
    record = {"ts": datetime.now(timezone.utc).isoformat(), "level": level, "event": event, "pid": os.getpid()}
    record.update(fields)
    out = stream or sys.stderr
    out.write(json.dumps(record, default=str) + "\n")
    out.flush()
