"""Calico Open Source 3.32 Whisker/Goldmane flow records (real ones, tests/data/calico), records of
schemas netwarden does not read (named, not a field error), and the typed bytes path agreeing with
the dict path."""

from __future__ import annotations

import copy
import json

import pytest

from netwarden.reconciler.core.types import SignalError
from netwarden.reconciler.signals.common import parse_rfc3339
from netwarden.reconciler.signals.goldmane import parse_goldmane_flow
from netwarden.reconciler.signals.parse import detect_flow_format, flow_from_json, parse_flow_any
from tests.support.data import PAYLOADS

RAW = (PAYLOADS / "calico/calico-3.32.2_whisker-flows_aggregated_3records.jsonl").read_bytes().splitlines()
DENIED, ISOLATED, ALLOWED = (json.loads(line) for line in RAW)


def reason_of(value: object) -> str:
    with pytest.raises(SignalError) as caught:
        parse_flow_any(value)
    return caught.value.reason


def test_every_whisker_record_is_detected_as_goldmane_and_parsed() -> None:
    for record in (DENIED, ISOLATED, ALLOWED):
        assert detect_flow_format(record) == "goldmane"
        assert parse_flow_any(record).source_format == "goldmane"


def test_denied_record_maps_times_verdict_reporter_prefixes_and_labels() -> None:
    flow = parse_flow_any(DENIED)
    assert flow.time == parse_rfc3339("2026-09-27T11:32:30Z")
    assert (flow.verdict, flow.policy_dropped, flow.reporter) == ("dropped", True, "dst")
    assert (flow.protocol, flow.port, flow.packets, flow.bytes) == ("TCP", 80, 8, 592)
    assert (flow.source.namespace, flow.source.pod, flow.source.pod_prefix) == ("storefront", None, "scraper-655c844475-*")
    assert flow.destination.pod_prefix == "web-574ff6d9fd-*" and flow.destination.ip is None
    assert flow.source.labels == {"app": "scraper", "pod-template-hash": "655c844475",
                                  "projectcalico.org/namespace": "storefront", "team": "storefront"}
    assert not flow.source.world and not flow.destination.world


def test_allowed_udp_record_across_namespaces() -> None:
    flow = parse_flow_any(ALLOWED)
    assert (flow.verdict, flow.policy_dropped, flow.protocol, flow.port) == ("forwarded", False, "UDP", 53)
    assert (flow.destination.namespace, flow.destination.labels) == ("kube-system", {"k8s-app": "kube-dns"})
    assert (flow.packets, flow.bytes) == (4, 453)


def test_networks_are_world_and_a_plain_name_with_a_namespace_is_a_pod() -> None:
    public = dict(ALLOWED, dest_name="PUBLIC NETWORK", dest_namespace="", dest_labels="")
    assert parse_flow_any(public).destination.world
    assert parse_flow_any(dict(ALLOWED, dest_name="pvt", dest_namespace="-")).destination.world
    plain = parse_flow_any(dict(ALLOWED, source_name="scraper-655c844475-x2x9k"))
    assert (plain.source.pod, plain.source.pod_prefix) == ("scraper-655c844475-x2x9k", None)
    host = parse_flow_any(dict(ALLOWED, source_name="kind-worker", source_namespace=""))
    assert (host.source.pod, host.source.namespace, host.source.world) == (None, None, False)


def test_a_goldmane_looking_record_of_another_shape_is_named_not_a_field_error() -> None:
    numeric = dict(DENIED, start_time=1790508735, end_time=1790508750)  # Enterprise-style times, Whisker labels
    error = pytest.raises(SignalError, parse_flow_any, numeric).value
    assert error.reason == "unsupported-schema:calico-goldmane"
    assert "looks like a Calico Goldmane/Whisker flow of an unsupported version" in str(error)
    no_action = {k: v for k, v in DENIED.items() if k != "action"}
    assert reason_of(no_action) == "unsupported-schema:calico-goldmane"
    assert reason_of(dict(DENIED, dest_port=70000)) == "bad-port"
    assert reason_of(dict(DENIED, end_time="yesterday")) == "bad-timestamp"


def test_records_of_other_schemas_are_rejected_naming_the_schema() -> None:
    event = {"apiVersion": "v1", "kind": "Event", "metadata": {"name": "web.1", "namespace": "shop"},
             "involvedObject": {"kind": "Pod", "name": "web"}, "reason": "Started", "type": "Normal"}
    error = pytest.raises(SignalError, parse_flow_any, event).value
    assert (error.reason, str(error)) == ("unsupported-schema:kubernetes-event", "looks like a Kubernetes Event, not a flow")
    assert reason_of({"apiVersion": "v1", "kind": "Pod", "metadata": {}}) == "unsupported-schema:kubernetes-object"
    protojson = {"id": "7", "flow": {"key": {"source_name": "web-*", "proto": "tcp", "action": "Allow"},
                                     "start_time": "1790508735"}}
    assert reason_of(protojson) == "unsupported-schema:calico-goldmane-protojson"
    assert reason_of({"rule": "Terminal shell", "priority": "Notice", "output": "x"}) == "unsupported-schema:falco-alert"
    assert reason_of({"version": "4", "alerts": []}) == "unsupported-schema:alertmanager"
    assert reason_of({"hello": "world"}) == "unknown-format"


def test_bytes_path_agrees_with_the_dict_path_on_every_real_flow_record() -> None:
    for path in sorted((PAYLOADS / "hubble").glob("*.jsonl")) + sorted((PAYLOADS / "calico").glob("*.jsonl")):
        for raw in path.read_bytes().splitlines():
            result, fmt = flow_from_json(raw)
            assert result == parse_flow_any(json.loads(raw)), path.name
            assert fmt == result.source_format


def test_bytes_path_gives_the_dict_paths_reasons_for_bad_records() -> None:
    hubble = json.loads((PAYLOADS / "hubble/cilium-1.18.3_policy-drop_egress-denied-by.jsonl").read_text())
    cases = []
    for mutate in (lambda r: r["flow"].pop("IP"), lambda r: r["flow"]["l4"]["TCP"].update(destination_port=70000),
                   lambda r: r["flow"].update(time="soon"), lambda r: r["flow"]["source"].update(labels=[1]),
                   lambda r: r.update(flow=None), lambda r: r.update(flow={"key": {"source_name": "x"}})):
        record = copy.deepcopy(hubble)
        mutate(record)
        cases.append(record)
    for record in cases:
        result, _ = flow_from_json(json.dumps(record).encode())
        with pytest.raises(SignalError) as caught:
            parse_flow_any(record)
        assert isinstance(result, SignalError) and result.reason == caught.value.reason
    assert flow_from_json(b'{"flow": "\\ud800"}')[0].reason == "bad-encoding"
    assert flow_from_json(b"{not json")[0].reason == "bad-json"


def test_parse_goldmane_flow_rejects_non_objects() -> None:
    with pytest.raises(SignalError) as caught:
        parse_goldmane_flow([DENIED])
    assert caught.value.reason == "not-an-object"
