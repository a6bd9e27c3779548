"""gRPC messages -> the records the flow parsers read, and the requests netwarden sends. Pure.

A Hubble `GetFlowsResponse` becomes the dict `hubble observe -o json` prints for it, and a Goldmane
`FlowResult` the Calico flow log record it stands for; reconciler/signals/parse.py then makes the
same `Flow` out of either as out of a file or a POST. One mapping of each source's meaning (verdicts,
world identities, drop reasons, aggregated names) therefore serves every way a flow arrives.
"""

from __future__ import annotations

import time
from typing import Any

from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.timestamp_pb2 import Timestamp

from reconciler.core.types import SignalError
from reconciler.sources.proto import flow_pb2, goldmane_pb2, observer_pb2

# --- Hubble -----------------------------------------------------------------------------------

#: The Flow fields netwarden scores (reconciler/signals/parse.py:parse_hubble_line reads these and
#: nothing else); the field mask asks Relay to send only them. Paths use the proto field names.
HUBBLE_FIELD_MASK = (
    "time", "uuid", "verdict", "drop_reason", "drop_reason_desc", "IP.source", "IP.destination", "l4",
    "source.identity", "source.namespace", "source.labels", "source.pod_name",
    "destination.identity", "destination.namespace", "destination.labels", "destination.pod_name",
    "traffic_direction", "is_reply", "reply",
)


def _enum_names(enum: Any) -> dict[int, str]:
    return {value.number: value.name for value in enum.DESCRIPTOR.values}


_VERDICTS = _enum_names(flow_pb2.Verdict)
_DROP_REASONS = _enum_names(flow_pb2.DropReason)
_DIRECTIONS = _enum_names(flow_pb2.TrafficDirection)
_PORTED = ("TCP", "UDP", "SCTP")


def rfc3339(stamp: Timestamp) -> str:
    """A protobuf Timestamp as Hubble's JSON writes it (UTC, nanoseconds)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(stamp.seconds)) + f".{stamp.nanos:09d}Z"


def stamp_ns(stamp: Timestamp) -> int:
    return stamp.seconds * 1_000_000_000 + stamp.nanos


def _endpoint(ep: flow_pb2.Endpoint) -> dict[str, Any]:
    return {"identity": ep.identity, "namespace": ep.namespace, "labels": list(ep.labels), "pod_name": ep.pod_name}


def hubble_record(response: observer_pb2.GetFlowsResponse) -> dict[str, Any]:
    """One GetFlowsResponse -> its `hubble observe -o json` line; lost events and node status are
    not flows (SignalError `not-a-flow`, counted like any rejected record)."""
    if response.WhichOneof("response_types") != "flow":
        raise SignalError("not-a-flow", "Hubble event that is not a flow (lost events or node status)")
    f = response.flow
    flow: dict[str, Any] = {
        "verdict": _VERDICTS.get(f.verdict, f.verdict),
        "source": _endpoint(f.source),
        "destination": _endpoint(f.destination),
    }
    if f.HasField("time"):
        flow["time"] = rfc3339(f.time)
    if f.HasField("IP"):
        flow["IP"] = {"source": f.IP.source, "destination": f.IP.destination}
    layer = f.l4.WhichOneof("protocol")
    if layer in _PORTED:
        flow["l4"] = {layer: {"destination_port": getattr(f.l4, layer).destination_port}}
    elif layer is not None:
        flow["l4"] = {layer: {}}
    if f.drop_reason_desc:
        flow["drop_reason_desc"] = _DROP_REASONS.get(f.drop_reason_desc, f.drop_reason_desc)
    elif f.drop_reason:
        flow["drop_reason"] = f.drop_reason
    if f.traffic_direction:
        flow["traffic_direction"] = _DIRECTIONS.get(f.traffic_direction, f.traffic_direction)
    if f.HasField("is_reply"):
        flow["is_reply"] = f.is_reply.value
    elif f.reply:
        flow["reply"] = True
    record: dict[str, Any] = {"flow": flow, "node_name": response.node_name}
    if response.HasField("time"):
        record["time"] = rfc3339(response.time)
    return record


def flow_time_ns(response: observer_pb2.GetFlowsResponse) -> int | None:
    """When the flow happened (the flow's time, else the response's), for resuming and lag."""
    if response.WhichOneof("response_types") == "flow" and response.flow.HasField("time"):
        return stamp_ns(response.flow.time)
    if response.HasField("time"):
        return stamp_ns(response.time)
    return None


def hubble_request(*, since_ns: int | None, whitelist: list[flow_pb2.FlowFilter] | None = None,
                   blacklist: list[flow_pb2.FlowFilter] | None = None,
                   field_mask: tuple[str, ...] = HUBBLE_FIELD_MASK) -> observer_pb2.GetFlowsRequest:
    """GetFlows with follow, from `since_ns` (None: only flows from now on). The mask goes both where
    cilium 1.16+ reads it and where 1.14/1.15 did (experimental); each ignores the other's field."""
    request = observer_pb2.GetFlowsRequest(follow=True, whitelist=whitelist or default_whitelist(),
                                           blacklist=blacklist or default_blacklist())
    if since_ns is not None:
        request.since.FromNanoseconds(since_ns)
    if field_mask:
        request.field_mask.CopyFrom(FieldMask(paths=list(field_mask)))
        request.experimental.field_mask.CopyFrom(FieldMask(paths=list(field_mask)))
    return request


#: Cilium's monitor message type of L7 (proxy access log) records.
L7_EVENT_TYPE = 129


def default_whitelist() -> list[flow_pb2.FlowFilter]:
    """Flows with a verdict netwarden scores: forwarded, dropped, or dropped-in-audit-mode."""
    return [flow_pb2.FlowFilter(verdict=[flow_pb2.FORWARDED, flow_pb2.DROPPED, flow_pb2.AUDIT])]


def default_blacklist() -> list[flow_pb2.FlowFilter]:
    """L7 records repeat the connection their L3/L4 flows already showed; they stay on the node."""
    return [flow_pb2.FlowFilter(event_type=[flow_pb2.EventTypeFilter(type=L7_EVENT_TYPE)])]


# --- Goldmane ---------------------------------------------------------------------------------

_CALICO_TYPES = {goldmane_pb2.WorkloadEndpoint: "wep", goldmane_pb2.HostEndpoint: "hep",
                 goldmane_pb2.NetworkSet: "ns", goldmane_pb2.Network: "net"}
_CALICO_ACTIONS = {goldmane_pb2.Allow: "allow", goldmane_pb2.Deny: "deny", goldmane_pb2.Pass: "pass"}
_CALICO_REPORTERS = {goldmane_pb2.Src: "src", goldmane_pb2.Dst: "dst"}


def _calico_side(record: dict[str, Any], side: str, name: str, namespace: str, kind: int,
                 labels: list[str]) -> None:
    calico_type = _CALICO_TYPES.get(kind, "-")
    record[f"{side}_type"] = calico_type
    record[f"{side}_namespace"] = namespace or "-"
    # Goldmane names a workload endpoint by its pods' shared prefix ("frontend-5d8f9c7b4-*"): the
    # flow log's aggregated form. Other kinds carry a real name (host endpoint, network set, pub/pvt).
    record[f"{side}_name"] = "-" if calico_type == "wep" else (name or "-")
    record[f"{side}_name_aggr"] = name or "-"
    record[f"{side}_labels"] = {"labels": labels}


def goldmane_record(result: goldmane_pb2.FlowResult) -> dict[str, Any]:
    """One Goldmane FlowResult -> the Calico flow log record (aggregated by pod prefix) it stands for."""
    f = result.flow
    if not result.HasField("flow") or not f.HasField("Key"):
        raise SignalError("missing-field:flow.Key", "Goldmane result has no flow key")
    key = f.Key
    record: dict[str, Any] = {
        "start_time": f.start_time, "end_time": f.end_time,
        "proto": key.proto or "-", "dest_port": key.dest_port or None,
        "action": _CALICO_ACTIONS.get(key.action, "-"), "reporter": _CALICO_REPORTERS.get(key.reporter, "-"),
        "bytes_in": f.bytes_in, "bytes_out": f.bytes_out, "packets_in": f.packets_in, "packets_out": f.packets_out,
        "num_flows_started": f.num_connections_started, "num_flows_completed": f.num_connections_completed,
    }
    _calico_side(record, "source", key.source_name, key.source_namespace, key.source_type, list(f.source_labels))
    _calico_side(record, "dest", key.dest_name, key.dest_namespace, key.dest_type, list(f.dest_labels))
    if key.dest_service_name:
        record.update(dest_service_name=key.dest_service_name, dest_service_namespace=key.dest_service_namespace,
                      dest_service_port=key.dest_service_port_name or str(key.dest_service_port))
    return record


def goldmane_identity(result: goldmane_pb2.FlowResult) -> tuple[int, bytes]:
    """(start time, key bytes): the same aggregated flow re-sent after a reconnect has the same one."""
    return result.flow.start_time, result.flow.Key.SerializeToString(deterministic=True)
