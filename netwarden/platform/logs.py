"""Structured logs: one JSON object per line, for every process netwarden runs.

Components log an event with structured fields (`log_event(log, "info", {"event": ..., ...})`, the
fields travel on the record, never encoded into the message) or a plain message; the one formatter
writes either as one JSON object, so a shipper parses every line the same way. Library loggers
(werkzeug's access log, the kubernetes client, gunicorn) come out as JSON too. A message that is itself
a JSON object is still merged (code not yet moved to log_event).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import datetime, timezone
from typing import Any, Mapping, TextIO

import orjson

#: The LogRecord attribute that carries an event's structured fields (set through `extra`).
FIELDS = "netwarden_fields"

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def log_event(logger: logging.Logger, level: str, fields: Mapping[str, Any], *, exc_info: bool = False) -> None:
    """Log one event as structured fields (an "event" key names it); the formatter writes them as the line.
    `exc_info=True` (inside an except block) adds the traceback, as `logger.exception` would."""
    number = _LEVELS[level]
    if logger.isEnabledFor(number):
        logger.log(number, str(fields.get("event", "event")), exc_info=exc_info, extra={FIELDS: dict(fields)})


def fields_of(record: logging.LogRecord) -> dict[str, Any]:
    """What a record says as structured fields (its event's, or a JSON message's; else {"message": ...})."""
    fields = getattr(record, FIELDS, None)
    if isinstance(fields, dict):
        return dict(fields)
    message = record.getMessage()
    return _json_object(message) or {"message": message}


class JsonLogFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
        }
        fields = getattr(record, FIELDS, None)
        message = record.getMessage()
        structured = fields if isinstance(fields, dict) else _json_object(message)
        if structured is not None:
            payload.update(structured)
        else:
            payload["message"] = message
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json_line(payload)


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


#: This process's id, read again in a forked child (gunicorn's workers): not a syscall per line.
_PID = [os.getpid()]
os.register_at_fork(after_in_child=lambda: _PID.__setitem__(0, os.getpid()))


#: Keys and values as `json.dumps(default=str)` writes them: dataclasses and datetimes by their str().
_AS_JSON_DOES = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME


def json_line(record: dict[str, Any]) -> str:
    """`record` as one line of JSON: orjson (the webhook writes one per review), `json` for what orjson
    refuses (non-string keys, integers past 64 bits), anything else as its str()."""
    try:
        return orjson.dumps(record, default=str, option=_AS_JSON_DOES).decode()
    except (TypeError, orjson.JSONEncodeError):
        return json.dumps(record, default=str)


def log_json(event: str, level: str = "info", stream: TextIO | None = None, **fields: Any) -> None:
    """One JSON line without the logging machinery (for code that runs before logging is configured)."""
    record = {"ts": datetime.now(timezone.utc).isoformat(), "level": level, "event": event, "pid": _PID[0]}
    record.update(fields)
    out = stream or sys.stderr
    out.write(json_line(record) + "\n")
    out.flush()
