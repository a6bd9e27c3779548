"""Bad records are rejected with a specific reason, and nothing else ever escapes a parser."""

from __future__ import annotations

import copy
import io
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netwarden.reconciler.core.types import SignalError
from netwarden.reconciler.signals.alertmanager import parse_alertmanager_payload
from netwarden.reconciler.signals.calico import parse_calico_record
from netwarden.reconciler.signals.common import parse_rfc3339
from netwarden.reconciler.signals.falco import parse_falco_event
from netwarden.reconciler.signals.generic import parse_generic_flow
from netwarden.reconciler.signals.hubble import parse_hubble_line
from netwarden.reconciler.signals.parse import detect_flow_format, parse_flow_any
from netwarden.reconciler.signals.streams import SignalCounters, iter_json_lines, iter_parsed
from tests.support.data import PAYLOADS

DATA = PAYLOADS
HUBBLE_DROP = json.loads((DATA / "hubble/cilium-1.18.3_policy-drop_egress-denied-by.jsonl").read_text())
CALICO_DENY = json.loads((DATA / "calico/calico-enterprise_flows-log-file_deny_2022.jsonl").read_text())
FALCO = json.loads((DATA / "falco/falcosidekick_webhook-post-body_terminal-shell_2024.json").read_text())
ALERTMANAGER = json.loads((DATA / "alertmanager/am_docker-compose_empty-grouplabels_pretty.json").read_text())


def reason_of(parse, obj) -> str:
    with pytest.raises(SignalError) as caught:
        parse(obj)
    return caught.value.reason


def test_non_object_records_are_rejected_as_not_an_object() -> None:
    for parse in (parse_hubble_line, parse_calico_record, parse_generic_flow, parse_falco_event,
                  parse_alertmanager_payload, parse_flow_any, detect_flow_format):
        assert reason_of(parse, [1, 2]) == "not-an-object"


def test_hubble_flow_without_ip_is_missing_field_flow_ip() -> None:
    record = copy.deepcopy(HUBBLE_DROP)
    del record["flow"]["IP"]
    assert reason_of(parse_hubble_line, record) == "missing-field:flow.IP"


def test_hubble_flow_with_bad_time_is_bad_timestamp() -> None:
    record = copy.deepcopy(HUBBLE_DROP)
    record["flow"]["time"] = "yesterday"
    assert reason_of(parse_hubble_line, record) == "bad-timestamp"
    record["flow"]["time"] = "2021-02-30T00:00:00Z"
    assert reason_of(parse_hubble_line, record) == "bad-timestamp"


def test_hubble_port_out_of_range_is_bad_port() -> None:
    record = copy.deepcopy(HUBBLE_DROP)
    record["flow"]["l4"]["TCP"]["destination_port"] = 70000
    assert reason_of(parse_hubble_line, record) == "bad-port"


def test_hubble_icmp_flow_has_no_port() -> None:
    record = copy.deepcopy(HUBBLE_DROP)
    record["flow"]["l4"] = {"ICMPv4": {"type": 8}}
    flow = parse_hubble_line(record)
    assert flow.protocol == "ICMP" and flow.port is None


def test_hubble_lost_events_line_is_not_a_flow() -> None:
    assert reason_of(parse_hubble_line, {"lost_events": {"num_events_lost": 3}, "node_name": "n"}) == "not-a-flow"


def test_hubble_policy_denied_without_explicit_rule_is_a_policy_drop() -> None:
    record = copy.deepcopy(HUBBLE_DROP)
    record["flow"]["drop_reason_desc"] = "POLICY_DENIED"
    assert parse_hubble_line(record).policy_dropped
    record["flow"]["drop_reason_desc"] = "CT_MAP_INSERTION_FAILED"
    flow = parse_hubble_line(record)
    assert flow.verdict == "dropped" and not flow.policy_dropped


def test_calico_record_without_proto_is_missing_field() -> None:
    record = dict(CALICO_DENY)
    del record["proto"]
    assert reason_of(parse_calico_record, record) == "missing-field:proto"
    assert reason_of(parse_calico_record, dict(CALICO_DENY, end_time="soon")) == "bad-timestamp"


def test_unknown_flow_shape_is_unknown_format() -> None:
    assert reason_of(parse_flow_any, {"hello": "world"}) == "unknown-format"


def test_generic_flow_round_trip_and_required_fields() -> None:
    record = {
        "time": "2024-05-01T12:00:00.5Z",
        "src": {"ip": "10.0.0.5", "namespace": "shop", "pod": "web-7d9c-abcde"},
        "dst": {"ip": "203.0.113.9", "world": True},
        "port": 443,
        "protocol": "tcp",
        "bytes": 1200,
    }
    assert detect_flow_format(record) == "generic"
    flow = parse_flow_any(record)
    assert flow.time == pytest.approx(1714564800.5)
    assert (flow.source.pod, flow.destination.world, flow.port, flow.protocol, flow.verdict) == (
        "web-7d9c-abcde", True, 443, "TCP", "forwarded")
    assert parse_generic_flow(dict(record, time=1714564800, policy_dropped=True)).verdict == "dropped"
    assert reason_of(parse_generic_flow, {k: v for k, v in record.items() if k != "src"}) == "missing-field:src"
    assert reason_of(parse_generic_flow, dict(record, port=-1)) == "bad-port"
    assert reason_of(parse_generic_flow, dict(record, verdict=["x"])) == "bad-field:verdict"


def test_falco_unknown_priority_is_bad_priority() -> None:
    assert reason_of(parse_falco_event, dict(FALCO, priority="Loud")) == "bad-priority"
    assert reason_of(parse_falco_event, {k: v for k, v in FALCO.items() if k != "rule"}) == "missing-field:rule"


def test_alertmanager_other_versions_are_rejected() -> None:
    assert reason_of(parse_alertmanager_payload, dict(ALERTMANAGER, version="3")) == "bad-version"
    assert reason_of(parse_alertmanager_payload, {k: v for k, v in ALERTMANAGER.items() if k != "version"}) == "bad-version"


def test_rfc3339_accepts_nanoseconds_and_offsets() -> None:
    assert parse_rfc3339("1970-01-01T00:00:01.000000001Z") == pytest.approx(1.000000001)
    assert parse_rfc3339("1970-01-01T01:00:00+01:00") == 0.0


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=6),
    max_leaves=30,
)
field_names = st.sampled_from([
    "flow", "IP", "source", "destination", "l4", "TCP", "UDP", "ICMPv4", "time", "verdict", "labels",
    "identity", "pod_name", "namespace", "is_reply", "reply", "drop_reason_desc", "destination_port",
    "start_time", "end_time", "proto", "dest_port", "action", "reporter", "source_type", "source_labels",
    "src", "dst", "port", "protocol", "bytes", "rule", "priority", "output_fields", "tags", "version",
    "alerts", "status", "startsAt", "endsAt", "lost_events",
])
shaped_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
    | st.sampled_from(["4", "firing", "FORWARDED", "DROPPED", "tcp", "wep", "net", "2024-01-01T00:00:00Z", "Notice"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(field_names, inner, max_size=8),
    max_leaves=40,
)
PARSERS = (parse_hubble_line, parse_calico_record, parse_generic_flow, parse_falco_event,
           parse_alertmanager_payload, parse_flow_any)


@settings(max_examples=400)
@given(st.one_of(json_values, shaped_values))
def test_arbitrary_json_never_raises_anything_but_signal_error(value: object) -> None:
    for parse in PARSERS:
        try:
            parse(value)
        except SignalError as err:
            assert err.reason and " " not in err.reason


@settings(max_examples=200)
@given(st.lists(st.sampled_from(["flow", "IP", "l4", "TCP", "source", "destination", "time"]), max_size=3), shaped_values)
def test_mutated_real_hubble_record_never_raises_anything_but_signal_error(path: list[str], value: object) -> None:
    record = copy.deepcopy(HUBBLE_DROP)
    target = record
    for key in path[:-1]:
        if not isinstance(target.get(key), dict):
            break
        target = target[key]
    target[path[-1] if path else "flow"] = value
    try:
        parse_hubble_line(record)
    except SignalError:
        pass


def test_json_lines_reader_numbers_lines_and_skips_blanks() -> None:
    text = '{"a": 1}\n\n   \n[1]\nnot json\n{"b": 2}'
    out = list(iter_json_lines(io.StringIO(text)))
    assert [n for n, _ in out] == [1, 4, 5, 6]
    assert out[0][1] == {"a": 1} and out[3][1] == {"b": 2}
    assert [r.reason for _, r in out if isinstance(r, SignalError)] == ["not-an-object", "bad-json"]


def test_json_lines_reader_rejects_long_lines_without_losing_the_next_one() -> None:
    data = b'{"a": "' + b"x" * 5000 + b'"}\n{"b": 2}\n\xff\n'
    out = list(iter_json_lines(io.BytesIO(data), max_line=1000))
    assert out[0][0] == 1 and isinstance(out[0][1], SignalError) and out[0][1].reason == "line-too-long"
    assert out[1] == (2, {"b": 2})
    assert out[2][0] == 3 and out[2][1].reason == "bad-encoding"


def test_counters_count_accepted_and_rejected_by_reason() -> None:
    counters = SignalCounters()
    hubble_file = DATA / "hubble/hubble-otel_gke-istio_2021_l3l4_10flows.jsonl"
    with hubble_file.open("rb") as handle:
        body = handle.read() + b"\n[]\n{\"flow\": {}}\n"
    results = list(iter_parsed(iter_json_lines(io.BytesIO(body)), parse_hubble_line, "hubble", counters))
    assert len(results) == 12
    assert counters.accepted == {"hubble": 10}
    assert counters.rejected == {("hubble", "not-an-object"): 1, ("hubble", "missing-field:flow.IP"): 1}
    samples = counters.samples()
    assert ("netwarden_signals_total", {"format": "hubble"}, 10) in samples
    assert ("netwarden_signals_rejected_total", {"format": "hubble", "reason": "not-an-object"}, 1) in samples


def test_counters_collector_exports_prometheus_text() -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from netwarden.reconciler.signals.streams import SignalCountersCollector

    counters = SignalCounters()
    counters.record_ok("calico", 3)
    counters.record_error("falco", SignalError("bad-priority", "x"))
    registry = CollectorRegistry()
    registry.register(SignalCountersCollector(counters))
    text = generate_latest(registry).decode()
    assert 'netwarden_signals_total{format="calico"} 3.0' in text
    assert 'netwarden_signals_rejected_total{format="falco",reason="bad-priority"} 1.0' in text
