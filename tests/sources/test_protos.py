"""The .proto subsets keep the upstream wire contract, and the committed stubs are what they generate."""

from __future__ import annotations

import filecmp
from pathlib import Path

import pytest

from netwarden.reconciler.sources.proto import flow_pb2, goldmane_pb2, observer_pb2

ROOT = Path(__file__).resolve().parents[2]

#: Field numbers copied by hand from cilium's api/v1/flow/flow.proto and api/v1/observer/observer.proto
#: (v1.20) and from projectcalico/calico's goldmane/proto/api.proto: the public wire contract.
UPSTREAM_NUMBERS = {
    flow_pb2.Flow: {"time": 1, "uuid": 34, "verdict": 2, "drop_reason": 3, "IP": 5, "l4": 6, "source": 8,
                    "destination": 9, "Type": 10, "node_name": 11, "reply": 16, "event_type": 19,
                    "traffic_direction": 22, "drop_reason_desc": 25, "is_reply": 26},
    flow_pb2.Endpoint: {"ID": 1, "identity": 2, "namespace": 3, "labels": 4, "pod_name": 5, "workloads": 6},
    flow_pb2.Layer4: {"TCP": 1, "UDP": 2, "ICMPv4": 3, "ICMPv6": 4, "SCTP": 5},
    flow_pb2.FlowFilter: {"source_ip": 1, "source_pod": 2, "destination_ip": 3, "destination_pod": 4, "verdict": 5,
                          "event_type": 6, "source_label": 10, "destination_label": 11, "protocol": 12, "reply": 15,
                          "node_name": 24, "traffic_direction": 30},
    flow_pb2.LostEvent: {"source": 1, "num_events_lost": 2, "cpu": 3},
    observer_pb2.GetFlowsRequest: {"number": 1, "first": 9, "follow": 3, "blacklist": 5, "whitelist": 6, "since": 7,
                                   "until": 8, "field_mask": 10, "experimental": 999},
    observer_pb2.GetFlowsRequest.Experimental: {"field_mask": 1},
    observer_pb2.GetFlowsResponse: {"flow": 1, "lost_events": 3, "node_name": 1000, "time": 1001},
    goldmane_pb2.FlowStreamRequest: {"start_time_gte": 1, "filter": 2, "aggregation_interval": 3},
    goldmane_pb2.FlowListRequest: {"start_time_gte": 1, "start_time_lt": 2, "page": 3, "page_size": 4, "filter": 6,
                                   "aggregation_interval": 7},
    goldmane_pb2.FlowResult: {"id": 1, "flow": 2},
    goldmane_pb2.FlowKey: {"source_name": 1, "source_namespace": 2, "source_type": 3, "dest_name": 4,
                           "dest_namespace": 5, "dest_type": 6, "dest_port": 7, "dest_service_name": 8,
                           "dest_service_namespace": 9, "dest_service_port_name": 10, "dest_service_port": 11,
                           "proto": 12, "reporter": 13, "action": 14},
    goldmane_pb2.Flow: {"Key": 1, "start_time": 2, "end_time": 3, "source_labels": 4, "dest_labels": 5,
                        "packets_in": 6, "packets_out": 7, "bytes_in": 8, "bytes_out": 9,
                        "num_connections_started": 10, "num_connections_completed": 11, "num_connections_live": 12},
}


@pytest.mark.parametrize("message", list(UPSTREAM_NUMBERS), ids=lambda m: m.DESCRIPTOR.full_name)
def test_field_numbers_are_upstream(message) -> None:
    numbers = {f.name: f.number for f in message.DESCRIPTOR.fields}
    assert numbers == UPSTREAM_NUMBERS[message]


def test_enum_numbers_are_upstream() -> None:
    assert {v.name: v.number for v in flow_pb2.Verdict.DESCRIPTOR.values} == {
        "VERDICT_UNKNOWN": 0, "FORWARDED": 1, "DROPPED": 2, "ERROR": 3, "AUDIT": 4, "REDIRECTED": 5, "TRACED": 6,
        "TRANSLATED": 7}
    assert flow_pb2.POLICY_DENIED == 133 and flow_pb2.POLICY_DENY == 181
    assert (flow_pb2.INGRESS, flow_pb2.EGRESS) == (1, 2)
    assert (goldmane_pb2.Allow, goldmane_pb2.Deny, goldmane_pb2.Pass) == (1, 2, 3)
    assert (goldmane_pb2.WorkloadEndpoint, goldmane_pb2.Network, goldmane_pb2.Src, goldmane_pb2.Dst) == (1, 4, 1, 2)


def test_method_paths_are_the_servers() -> None:
    """gRPC routes by package.Service/Method: the packages must be cilium's and Calico's own."""
    observer = observer_pb2.DESCRIPTOR.services_by_name["Observer"].methods_by_name["GetFlows"]
    flows = goldmane_pb2.DESCRIPTOR.services_by_name["Flows"]
    assert f"/{observer.containing_service.full_name}/{observer.name}" == "/observer.Observer/GetFlows"
    assert observer.server_streaming
    assert [f"/{flows.full_name}/{m.name}" for m in flows.methods] == ["/goldmane.Flows/List", "/goldmane.Flows/Stream"]
    assert flow_pb2.Flow.DESCRIPTOR.full_name == "flow.Flow"


def test_committed_stubs_are_what_grpcio_tools_generates(tmp_path: Path) -> None:
    from netwarden.reconciler.sources.protogen import generate

    written = generate(tmp_path)
    assert len(written) == 8
    for path in written:
        committed = ROOT / path.relative_to(tmp_path)
        assert committed.exists(), f"{committed} is not committed: run python -m netwarden.reconciler.sources.protogen"
        assert filecmp.cmp(path, committed, shallow=False), (
            f"{committed.relative_to(ROOT)} differs from what its .proto generates: run python -m netwarden.reconciler.sources.protogen")
