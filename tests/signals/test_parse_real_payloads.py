"""Every shared real payload parses, with field values checked against the files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from netwarden.reconciler.core.types import AlertTarget
from netwarden.reconciler.signals.alertmanager import parse_alertmanager_payload
from netwarden.reconciler.signals.calico import parse_calico_record
from netwarden.reconciler.signals.common import parse_rfc3339
from netwarden.reconciler.signals.falco import parse_falco_event
from netwarden.reconciler.signals.hubble import parse_hubble_line
from netwarden.reconciler.signals.parse import detect_flow_format, parse_flow_any
from tests.support.data import PAYLOADS

DATA = PAYLOADS


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def all_files(kind: str) -> list[Path]:
    files = sorted((DATA / kind).iterdir())
    assert files, f"no shared {kind} payloads"
    return files


@pytest.mark.parametrize("path", all_files("hubble"), ids=lambda p: p.name)
def test_every_hubble_line_parses_as_hubble(path: Path) -> None:
    for record in lines(path):
        assert detect_flow_format(record) == "hubble"
        flow = parse_flow_any(record)
        assert flow.source_format == "hubble"
        assert flow.source.ip == record["flow"]["IP"]["source"]
        assert flow.destination.ip == record["flow"]["IP"]["destination"]
        assert flow.time == pytest.approx(parse_rfc3339(record["flow"]["time"]))
        assert flow.protocol == "TCP"
        assert flow.port == record["flow"]["l4"]["TCP"]["destination_port"]


def test_hubble_policy_drop_on_cilium_1_18_maps_every_field() -> None:
    (record,) = lines(DATA / "hubble/cilium-1.18.3_policy-drop_egress-denied-by.jsonl")
    flow = parse_hubble_line(record)
    assert flow.time == pytest.approx(1785494462.202450754)
    assert flow.verdict == "dropped" and flow.policy_dropped
    assert flow.source.namespace == "net-lab"
    assert flow.source.pod == "traffic-generator-9b649846d-bxqfc"
    assert flow.source.labels == {"app": "traffic-generator"}
    assert flow.destination.pod == "echo-server-65887564dc-jjw7k"
    assert flow.destination.labels == {"app": "echo-server"}
    assert (flow.port, flow.protocol, flow.reply, flow.reporter) == (80, "TCP", False, "src")
    assert not flow.source.world and not flow.destination.world


def test_hubble_bare_flow_object_parses_like_the_wrapped_line() -> None:
    (record,) = lines(DATA / "hubble/cilium-1.18.3_policy-drop_egress-denied-by.jsonl")
    assert detect_flow_format(record["flow"]) == "hubble"
    assert parse_flow_any(record["flow"]) == parse_hubble_line(record)


def test_hubble_old_reply_key_and_world_identity_are_read() -> None:
    records = lines(DATA / "hubble/hubble-otel_gke-istio_2021_l3l4_10flows.jsonl")
    flows = [parse_hubble_line(r) for r in records]
    assert [f.reply for f in flows] == [True, False, False, True, True, False, True, False, False, True]
    inbound_from_world = flows[6]
    assert inbound_from_world.source.world and inbound_from_world.source.ip == "35.246.31.234"
    assert inbound_from_world.destination.pod == "event-exporter-gke-67986489c8-svnrf"
    assert inbound_from_world.destination.labels["k8s-app"] == "event-exporter"
    to_world = flows[7]
    assert to_world.destination.world and to_world.port == 443 and not to_world.reply
    host_peer = flows[8]
    assert not host_peer.source.world and host_peer.source.pod is None and host_peer.source.labels == {}
    assert flows[2].source.labels["app"] == "prometheus"
    assert flows[2].source.labels["io.kubernetes.pod.namespace"] == "istio-system"


def test_hubble_dns_l7_flows_take_the_port_from_l4_and_is_reply() -> None:
    flows = [parse_hubble_line(r) for r in lines(DATA / "hubble/hubble-otel_gke-istio_2021_dns-l7_5flows.jsonl")]
    requests = [f for f in flows if not f.reply]
    assert len(requests) == 3 and {f.port for f in requests} == {53}
    assert all(f.source.pod == "node-local-dns-88zrp" for f in requests)
    assert all(f.destination.pod == "kube-dns-b4f5c58c7-vnx5s" for f in requests)
    assert [f.reply for f in flows] == [False, True, False, True, False]


def test_hubble_http_flow_to_world_identity_is_world_even_with_a_pod_name() -> None:
    flows = [parse_hubble_line(r) for r in lines(DATA / "hubble/hubble-otel_gke-istio_2021_http-l7_5flows.jsonl")]
    assert flows[0].destination.world and flows[0].destination.namespace is None and flows[0].port == 9990
    assert flows[1].destination.world and flows[1].destination.pod == "kube-dns-b4f5c58c7-7qmtw"
    assert flows[3].reply and flows[3].source.world


@pytest.mark.parametrize("path", [p for p in all_files("calico") if p.name.startswith("calico-enterprise")],
                         ids=lambda p: p.name)
def test_every_calico_record_parses_as_calico(path: Path) -> None:
    for record in lines(path):
        assert detect_flow_format(record) == "calico"
        flow = parse_flow_any(record)
        assert flow.source_format == "calico"
        assert flow.time == record["end_time"]
        assert flow.port == record["dest_port"]
        assert flow.bytes == record["bytes_in"] + record["bytes_out"]
        assert flow.reporter == record["reporter"]


def test_calico_deny_record_is_a_policy_drop_between_named_pods() -> None:
    (record,) = lines(DATA / "calico/calico-enterprise_flows-log-file_deny_2022.jsonl")
    flow = parse_calico_record(record)
    assert flow.verdict == "dropped" and flow.policy_dropped
    assert (flow.source.namespace, flow.source.pod, flow.source.ip) == ("default", "multitool", "10.48.116.157")
    assert flow.destination.namespace == "hipstershop"
    assert flow.destination.pod == "checkoutservice-598d5b586d-wsvmz"
    assert flow.destination.labels == {"app": "checkoutservice", "pod-template-hash": "598d5b586d", "tenant": "hipstershop"}
    assert (flow.port, flow.protocol, flow.packets, flow.bytes) == (5050, "TCP", 5, 300)


def test_calico_aggregated_record_keeps_the_name_prefix_and_no_ip() -> None:
    aggregated, src_report, dst_report = lines(DATA / "calico/calico-enterprise-docs_flow-aggregation_allow_2020.jsonl")
    flow = parse_calico_record(aggregated)
    assert flow.verdict == "forwarded" and not flow.policy_dropped
    assert flow.source.ip is None and flow.source.pod is None
    assert flow.source.pod_prefix == "access-6b687c8dcb-*"
    assert flow.destination.pod_prefix == "nginx-86c57db685-*"
    assert flow.source.labels == {"app": "access", "pod-template-hash": "6b687c8dcb"}
    assert flow.packets == 282 + 239
    assert parse_calico_record(src_report).source.pod == "access-6b687c8dcb-zn5s2"
    assert parse_calico_record(dst_report).destination.ip == "192.168.213.223"


def test_calico_public_network_peer_is_world_and_numeric_proto_is_named() -> None:
    (record,) = lines(DATA / "calico/calico-enterprise_flows-log-file_deny_2022.jsonl")
    record = dict(record, source_type="net", source_name="-", source_name_aggr="pub", source_namespace="-", proto=17)
    flow = parse_calico_record(record)
    assert flow.source.world and flow.source.pod is None and flow.source.namespace is None
    assert flow.protocol == "UDP"


FALCO_EXPECTED = {
    "falco-docs_json-output_terminal-shell_2023.json": [("Terminal shell in container", "critical", "default", "kubecon")],
    "falcosidekick_webhook-post-body_terminal-shell_2024.json": [
        ("Terminal shell in container", "notice", "ingress-nginx", "ingress-nginx-controller-slszv")
    ],
    "falco-blog-2021_json-output_k8s-meta.jsonl": [
        ("Terminal shell in container", "notice", "default", "alpine"),
        ("Contact K8S API Server From Container", "notice", "openfaas-fn", "falco-pod-delete-7dc9f5fbb8-gbfk7"),
    ],
    "falco-0.37plus_event-generator_no-k8s_2024.jsonl": [
        ("Read sensitive file untrusted", "warning", None, None),
        ("System user interactive", "informational", None, None),
        ("Run shell untrusted", "notice", None, None),
    ],
    "falco-k8saudit-ovh_mks-audit-logs_blog-2025.jsonl": [
        ("Disallowed K8s User", "warning", None, None),
        ("Disallowed K8s User", "warning", None, None),
        ("Disallowed K8s User", "warning", None, None),
        ("Attach/Exec Pod", "notice", "hello-app", "nginx-676b6c5bbc-4xc6t"),
    ],
}


def test_k8s_audit_alerts_carry_their_target() -> None:
    """k8s_audit alerts name no k8s.pod.name: `ka.target.*` is what they are about."""
    alerts = [parse_falco_event(r) for r in lines(DATA / "falco/falco-k8saudit-ovh_mks-audit-logs_blog-2025.jsonl")]
    assert [(a.target.resource, a.target.name) for a in alerts if a.target] == [
        ("volumeattachments", "csi-6afb06dce281b86b7bab718b5d966dc261b2b1554941ae449519a128cb2e3fb3"),
        ("events", "my-pool-1.18051c0a88716868"), ("nodepools", "my-pool-1"), ("pods", "nginx-676b6c5bbc-4xc6t")]
    syscall = parse_falco_event(json.loads((DATA / "falco/falco-docs_json-output_terminal-shell_2023.json").read_text()))
    assert syscall.target is None


@pytest.mark.parametrize("path", all_files("falco"), ids=lambda p: p.name)
def test_every_falco_alert_parses_with_rule_priority_and_pod(path: Path) -> None:
    records = lines(path)
    alerts = [parse_falco_event(r) for r in records]
    assert [(a.rule, a.priority, a.namespace, a.pod) for a in alerts] == FALCO_EXPECTED[path.name]
    for alert, record in zip(alerts, records):
        assert alert.time == pytest.approx(parse_rfc3339(record["time"]))
        assert alert.tags == tuple(record.get("tags", ()))
        assert alert.output == record["output"]


def test_falco_priority_is_case_insensitive_and_na_pod_is_none() -> None:
    record = json.loads((DATA / "falco/falco-docs_json-output_terminal-shell_2023.json").read_text())
    record = dict(record, priority="CRITICAL", output_fields=dict(record["output_fields"], **{"k8s.pod.name": "<NA>"}))
    alert = parse_falco_event(record)
    assert alert.priority == "critical" and alert.pod is None and alert.namespace == "default"
    assert alert.time == pytest.approx(1685022245.478445995)


@pytest.mark.parametrize("path", all_files("alertmanager"), ids=lambda p: p.name)
def test_every_alertmanager_alert_becomes_a_metric_alert(path: Path) -> None:
    body = json.loads(path.read_text())
    alerts = parse_alertmanager_payload(body)
    assert len(alerts) == len(body["alerts"])
    for alert, raw in zip(alerts, body["alerts"]):
        assert alert.firing == (raw["status"] == "firing")
        assert alert.alertname == raw["labels"]["alertname"]
        assert alert.severity == raw["labels"]["severity"]
        assert alert.fingerprint == raw["fingerprint"]
        assert alert.summary == raw["annotations"]["summary"]
        assert alert.starts_at == pytest.approx(parse_rfc3339(raw["startsAt"]))
        if alert.firing:
            assert alert.ends_at is None and alert.time == alert.starts_at
        else:
            assert alert.time == alert.ends_at == pytest.approx(parse_rfc3339(raw["endsAt"]))
        named = raw["labels"].get("deployment")
        assert alert.target == (AlertTarget("deployments", named) if named else None)


def test_alertmanager_pod_alerts_carry_namespace_and_pod() -> None:
    body = json.loads((DATA / "alertmanager/am_kube-prometheus_3-pods_grouped-by-namespace.json").read_text())
    alerts = parse_alertmanager_payload(body)
    assert [a.pod for a in alerts] == [
        "deployment-4583-dhnhlbyg-56469f6fc8-7vxqv",
        "deployment-4583-dhnhlbyg-56469f6fc8-cgldb",
        "deployment-4583-dhnhlbyg-56469f6fc8-w7njg",
    ]
    assert {a.namespace for a in alerts} == {"jb8ppchug27a2uhoyre7efcfbok2w0ct-4583"}
    assert alerts[1].time == pytest.approx(1775009716.098)
    assert alerts[0].description.startswith("Pod deployment-4583-dhnhlbyg-56469f6fc8-7vxqv")


def test_alertmanager_resolved_alert_is_timed_at_its_end() -> None:
    body = json.loads((DATA / "alertmanager/am_docker-compose_empty-grouplabels_pretty.json").read_text())
    body["status"] = "resolved"
    body["alerts"][0] = dict(body["alerts"][0], status="resolved", endsAt="2022-10-04T13:42:56.014Z")
    (alert,) = parse_alertmanager_payload(body)
    assert not alert.firing and alert.namespace is None
    assert alert.time == alert.ends_at == pytest.approx(parse_rfc3339("2022-10-04T13:42:56.014Z"))
