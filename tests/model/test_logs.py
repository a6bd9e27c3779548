"""Every log line is one JSON object: plain messages, structured ones, and exceptions alike."""

from __future__ import annotations

import io
import json
import logging

from netwarden.logs import configure_json_logging


def test_plain_structured_and_exception_records_each_become_one_json_line() -> None:
    stream = io.StringIO()
    configure_json_logging("INFO", stream)
    try:
        logging.getLogger("werkzeug").info('127.0.0.1 - - "POST /signals/flows HTTP/1.1" 200 -')
        logging.getLogger("netwarden.reconciler").info(json.dumps({"event": "policy_change", "score": 12.5}))
        try:
            raise RuntimeError("first line\nsecond line")
        except RuntimeError:
            logging.getLogger("netwarden.kube").exception("event not recorded")
        logging.getLogger("quiet").debug("below the level")
    finally:
        configure_json_logging("WARNING")
    lines = stream.getvalue().splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == 3
    assert records[0]["logger"] == "werkzeug" and "POST /signals/flows" in records[0]["message"]
    assert records[1]["event"] == "policy_change" and records[1]["score"] == 12.5 and "message" not in records[1]
    assert records[2]["level"] == "error" and "second line" in records[2]["exception"]
