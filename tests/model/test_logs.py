"""Every log line is one JSON object: plain messages, structured ones, and exceptions alike."""

from __future__ import annotations

import io
import json
import logging

from netwarden.platform.logs import FIELDS, configure_json_logging, fields_of, log_event


def test_plain_structured_and_exception_records_each_become_one_json_line() -> None:
    stream = io.StringIO()
    configure_json_logging("INFO", stream)
    try:
        logging.getLogger("werkzeug").info('127.0.0.1 - - "POST /signals/flows HTTP/1.1" 200 -')
        logging.getLogger("netwarden.reconciler").info(json.dumps({"event": "policy_change", "score": 12.5}))
        try:
            raise RuntimeError("first line\nsecond line")
        except RuntimeError:
            logging.getLogger("netwarden.platform.kube").exception("event not recorded")
        logging.getLogger("quiet").debug("below the level")
    finally:
        configure_json_logging("WARNING")
    lines = stream.getvalue().splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == 3
    assert records[0]["logger"] == "werkzeug" and "POST /signals/flows" in records[0]["message"]
    assert records[1]["event"] == "policy_change" and records[1]["score"] == 12.5 and "message" not in records[1]
    assert records[2]["level"] == "error" and "second line" in records[2]["exception"]


def test_an_event_logged_with_fields_is_one_json_line_with_them_and_no_message() -> None:
    stream = io.StringIO()
    configure_json_logging("INFO", stream)
    try:
        log = logging.getLogger("netwarden.reconciler")
        log_event(log, "warning", {"event": "reconcile_failed", "key": "pod/shop/web", "retry_in": 0.5})
        log_event(log, "debug", {"event": "below_the_level"})
    finally:
        configure_json_logging("WARNING")
    [record] = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert record["event"] == "reconcile_failed" and record["key"] == "pod/shop/web" and record["retry_in"] == 0.5
    assert record["level"] == "warning" and "message" not in record


def test_an_event_logged_with_exc_info_carries_its_fields_and_the_traceback() -> None:
    stream = io.StringIO()
    configure_json_logging("INFO", stream)
    try:
        try:
            raise ValueError("engine fault")
        except ValueError:
            log_event(logging.getLogger("netwarden.reconciler.sources"), "error",
                      {"event": "flow_stream_engine_error", "source": "hubble"}, exc_info=True)
    finally:
        configure_json_logging("WARNING")
    [record] = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert record["event"] == "flow_stream_engine_error" and record["source"] == "hubble"
    assert record["level"] == "error" and "ValueError: engine fault" in record["exception"]
    assert "message" not in record


def test_fields_of_reads_an_events_fields_or_a_json_message() -> None:
    structured = logging.LogRecord("x", logging.INFO, __file__, 1, "policy_change", None, None)
    structured.__dict__[FIELDS] = {"event": "policy_change", "reason": "tightened"}
    legacy = logging.LogRecord("x", logging.INFO, __file__, 1, json.dumps({"event": "old"}), None, None)
    plain = logging.LogRecord("x", logging.INFO, __file__, 1, "hello %s", ("there",), None)
    assert fields_of(structured) == {"event": "policy_change", "reason": "tightened"}
    assert fields_of(legacy) == {"event": "old"} and fields_of(plain) == {"message": "hello there"}
